// The measured GEMM peak that MFU is relative to (model FLOPs: trainer/plan/cost_model.h).
#pragma once

#include <cstdint>

#include "trainer/core/config.h"

namespace exatrain {

// fp32 matrix-multiply throughput of this machine with the current thread count: repeated
// n x n at::mm for about `seconds`, best of the runs. The denominator of CPU MFU.
double measure_gemm_peak_flops(double seconds = 0.5, int64_t n = 1024);

}  // namespace exatrain
