// The per-row pieces of RMSNorm, compiled for host and device. A row is reduced in `lanes`
// strided partial sums (a thread block's threads on the GPU, a loop on the CPU), then combined
// in a fixed tree order so both give the same rounding.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define EXATRAIN_HD __host__ __device__
#else
#define EXATRAIN_HD
#endif

namespace exatrain::kernels {

// Sum of squares of x[lane], x[lane + lanes], ... (one thread's share of a row).
EXATRAIN_HD inline float rms_partial_sum(const float* x, int64_t cols, int lane, int lanes) {
  float acc = 0.f;
  for (int64_t i = lane; i < cols; i += lanes) acc += x[i] * x[i];
  return acc;
}

// Combines partial sums in place by halving (lanes must be a power of two); result in sums[0].
EXATRAIN_HD inline void tree_reduce_step(float* sums, int lane, int stride) {
  if (lane < stride) sums[lane] += sums[lane + stride];
}

EXATRAIN_HD inline float rms_inverse(float sum_sq, int64_t cols, float eps) {
  return 1.f / sqrtf(sum_sq / static_cast<float>(cols) + eps);
}

EXATRAIN_HD inline void rms_scale_row(const float* x, const float* weight, float* y, int64_t cols, float inv, int lane,
                                      int lanes) {
  for (int64_t i = lane; i < cols; i += lanes) y[i] = weight[i] * (x[i] * inv);
}

constexpr int kRmsNormLanes = 256;

}  // namespace exatrain::kernels
