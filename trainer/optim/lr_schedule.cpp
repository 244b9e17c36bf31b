#include "trainer/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace exatrain {

double learning_rate(const ScheduleConfig& s, double peak, int64_t step, int64_t total) {
  if (step < s.warmup_steps) return peak * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
  const double min_lr = peak * s.min_lr_ratio;
  const int64_t after = step - s.warmup_steps;                  // steps since warm-up ended
  const int64_t span = std::max<int64_t>(1, total - s.warmup_steps - 1);  // last step reaches min
  switch (s.type) {
    case ScheduleKind::Constant:
      return peak;
    case ScheduleKind::Cosine: {
      const double t = std::min(1.0, static_cast<double>(after) / static_cast<double>(span));
      return min_lr + (peak - min_lr) * 0.5 * (1.0 + std::cos(M_PI * t));
    }
    case ScheduleKind::WSD: {
      const int64_t decay_steps = static_cast<int64_t>(std::ceil(s.decay_fraction * static_cast<double>(total)));
      const int64_t decay_start = total - decay_steps;
      if (step < decay_start || decay_steps == 0) return peak;
      const double t = std::min(1.0, static_cast<double>(step - decay_start + 1) / static_cast<double>(decay_steps));
      return peak + (min_lr - peak) * t;
    }
  }
  return peak;
}

}  // namespace exatrain
