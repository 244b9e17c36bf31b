// The fused CPU RMSNorm (kernels/rmsnorm.h): one pass over a row for the sum of squares, one to
// write it; the backward recomputes the normalised row from x and the saved 1/rms instead of
// keeping it. Built once per instruction set with GCC's target_clones (the loader picks the best
// copy this CPU runs); the loops are written for the vectoriser: 8 independent partial sums. The
// per-element math is kernels/rmsnorm_row.h's, which the CUDA kernels run too.
#include "kernels/rmsnorm.h"
#include "kernels/cpu_clones.h"

namespace exatrain::kernels {

namespace {

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
    const float s = rms_inverse(sum_of_squares(xr, cols), cols, eps);
    inv[r] = s;
    // two loops, so each vectorises without a test per element
    if (round_to_bf16)
      for (int64_t i = 0; i < cols; ++i) yr[i] = weight[i] * rms_normalized(xr[i], s, true);
    else
      for (int64_t i = 0; i < cols; ++i) yr[i] = weight[i] * rms_normalized(xr[i], s, false);
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
    if (round_to_bf16)  // the gradient of the cast to the input dtype is cast too
      for (int64_t i = 0; i < cols; ++i) dn[i] = rms_grad_normalized(gr[i], weight[i], true);
    else
      for (int64_t i = 0; i < cols; ++i) dn[i] = rms_grad_normalized(gr[i], weight[i], false);
    // n = x s; dx = s (dn - n mean(dn n)) = s (dn - x c), c = s^2 mean(dn x)
    const float c = rms_backward_coefficient(dot(dn, xr, cols), s, cols);
    for (int64_t i = 0; i < cols; ++i) dxr[i] = rms_grad_input(dn[i], xr[i], s, c);
    // dweight sums over every row of the batch: in double, so a 65,536-row sum (the q/k norms of
    // a 4,096-token batch) stays at fp32 rounding (fp32 accumulation measured 3e-6 there)
    if (round_to_bf16)
      for (int64_t i = 0; i < cols; ++i) dweight[i] += static_cast<double>(gr[i] * rms_normalized(xr[i], s, true));
    else
      for (int64_t i = 0; i < cols; ++i) dweight[i] += static_cast<double>(gr[i] * rms_normalized(xr[i], s, false));
  }
}

}  // namespace exatrain::kernels
