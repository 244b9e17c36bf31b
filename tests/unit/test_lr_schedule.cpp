// Learning-rate schedules against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>

#include "trainer/optim/lr_schedule.h"

namespace exatrain {
namespace {

TEST(LrSchedule, WarmupThenCosine) {
  ScheduleConfig s;
  s.type = ScheduleKind::Cosine;
  s.warmup_steps = 10;
  s.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(learning_rate(s, 1.0, 0, 110), 0.1);  // (0 + 1) / 10
  EXPECT_DOUBLE_EQ(learning_rate(s, 1.0, 9, 110), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, 1.0, 10, 110), 1.0);  // cosine starts at the peak
  // Half-way through the 99 post-warm-up steps: (1 + cos(pi/2)) / 2 -> 0.1 + 0.9 * 0.5.
  const double mid = learning_rate(s, 1.0, 10 + 99 / 2, 110);
  EXPECT_NEAR(mid, 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 49.0 / 99.0)), 1e-12);
  EXPECT_DOUBLE_EQ(learning_rate(s, 1.0, 109, 110), 0.1);  // the last step reaches the minimum
}

TEST(LrSchedule, WarmupStableDecay) {
  ScheduleConfig s;
  s.type = ScheduleKind::WSD;
  s.warmup_steps = 0;
  s.min_lr_ratio = 0.0;
  s.decay_fraction = 0.2;  // 100 steps: decay over the last 20
  EXPECT_DOUBLE_EQ(learning_rate(s, 2.0, 0, 100), 2.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, 2.0, 79, 100), 2.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, 2.0, 80, 100), 2.0 * (1 - 1.0 / 20));
  EXPECT_DOUBLE_EQ(learning_rate(s, 2.0, 89, 100), 2.0 * (1 - 10.0 / 20));
  EXPECT_DOUBLE_EQ(learning_rate(s, 2.0, 99, 100), 0.0);
}

TEST(LrSchedule, Constant) {
  ScheduleConfig s;
  s.type = ScheduleKind::Constant;
  s.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(learning_rate(s, 3.0, 1, 50), 1.5);
  EXPECT_DOUBLE_EQ(learning_rate(s, 3.0, 30, 50), 3.0);
}

}  // namespace
}  // namespace exatrain
