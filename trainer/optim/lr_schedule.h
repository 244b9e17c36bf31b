// Learning-rate schedules: linear warm-up, then constant, cosine, or warmup-stable-decay.
#pragma once

#include <cstdint>

#include "trainer/core/config.h"

namespace exatrain {

// The learning rate for optimizer step `step` (0-based) of `total_steps`.
//   warm-up:  lr * (step + 1) / warmup_steps for step < warmup_steps
//   cosine:   min + (lr - min) * (1 + cos(pi * t)) / 2, t from 0 to 1 over the remaining steps
//   wsd:      lr until the last decay_fraction of the steps, then linear to min
// where min = lr * min_lr_ratio.
double learning_rate(const ScheduleConfig& schedule, double peak_lr, int64_t step, int64_t total_steps);

}  // namespace exatrain
