// The fused CPU RMSNorm (kernels/rmsnorm.h): one pass over a row for the sum of squares, one to
// write it; the backward recomputes the normalised row from x and the saved 1/rms instead of
// keeping it. Built once per instruction set with GCC's target_clones (the loader picks the best
// copy this CPU runs); the loops are written for the vectoriser: 8 independent partial sums.
#include "kernels/rmsnorm.h"
#include "kernels/cpu_clones.h"

#include <cmath>
#include <cstring>

namespace exatrain::kernels {

namespace {

// float -> bf16 -> float, round to nearest even (as at::BFloat16's constructor; no NaN inputs
// reach here from finite activations, and a NaN stays a NaN).
inline float round_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return f;  // inf, NaN
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float sum_of_squares(const float* x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += x[i + l] * x[i + l];
  for (; i < n; ++i) acc[0] += x[i] * x[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

}  // namespace

EXATRAIN_CLONES
void rmsnorm_forward_rows(const float* x, const float* weight, float* y, float* inv, int64_t cols, float eps,
                          bool round_to_bf16, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    const float s = 1.f / std::sqrt(sum_of_squares(xr, cols) / static_cast<float>(cols) + eps);
    inv[r] = s;
    if (round_to_bf16)
      for (int64_t i = 0; i < cols; ++i) yr[i] = weight[i] * round_bf16(xr[i] * s);
    else
      for (int64_t i = 0; i < cols; ++i) yr[i] = weight[i] * (xr[i] * s);
  }
}

EXATRAIN_CLONES
void rmsnorm_backward_rows(const float* x, const float* weight, const float* inv, const float* dy, float* dx,
                           double* dweight, float* scratch, int64_t cols, bool round_to_bf16, int64_t begin,
                           int64_t end) {
  float* dn = scratch;  // [cols]: the gradient reaching the normalised row
  for (int64_t r = begin; r < end; ++r) {
    const float* xr = x + r * cols;
    const float* gr = dy + r * cols;
    float* dxr = dx + r * cols;
    const float s = inv[r];
    for (int64_t i = 0; i < cols; ++i) dn[i] = gr[i] * weight[i];
    if (round_to_bf16)  // the gradient of the cast to the input dtype is cast too
      for (int64_t i = 0; i < cols; ++i) dn[i] = round_bf16(dn[i]);
    // n = x s; dx = s (dn - n mean(dn n)) = s dn - x s^3 mean(dn x)
    const float c = dot(dn, xr, cols) * s * s / static_cast<float>(cols);
    for (int64_t i = 0; i < cols; ++i) dxr[i] = s * (dn[i] - xr[i] * c);
    // dweight sums over every row of the batch: in double, so a 65,536-row sum (the q/k norms of
    // a 4,096-token batch) stays at fp32 rounding (fp32 accumulation measured 3e-6 there)
    if (round_to_bf16)
      for (int64_t i = 0; i < cols; ++i) dweight[i] += static_cast<double>(gr[i] * round_bf16(xr[i] * s));
    else
      for (int64_t i = 0; i < cols; ++i) dweight[i] += static_cast<double>(gr[i] * (xr[i] * s));
  }
}

}  // namespace exatrain::kernels
