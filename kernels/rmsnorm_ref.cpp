#include "kernels/rmsnorm.h"

namespace exatrain::kernels {

// Emulates one thread block per row: every lane's partial sum, the tree reduction in the
// kernel's order, then every lane's share of the output.
void rmsnorm_forward_cpu(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps) {
  float sums[kRmsNormLanes];
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    for (int lane = 0; lane < kRmsNormLanes; ++lane) sums[lane] = rms_partial_sum(xr, cols, lane, kRmsNormLanes);
    for (int stride = kRmsNormLanes / 2; stride > 0; stride /= 2)
      for (int lane = 0; lane < stride; ++lane) tree_reduce_step(sums, lane, stride);
    const float inv = rms_inverse(sums[0], cols, eps);
    for (int lane = 0; lane < kRmsNormLanes; ++lane) rms_scale_row(xr, weight, y + r * cols, cols, inv, lane, kRmsNormLanes);
  }
}

#if !defined(EXATRAIN_HAVE_CUDA)
bool cuda_device_available() { return false; }
int rmsnorm_forward_cuda(const float*, const float*, float*, int64_t, int64_t, float, void*) { return 1; }
#endif

}  // namespace exatrain::kernels
