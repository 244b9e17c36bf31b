#include <cuda_runtime.h>

#include "kernels/rmsnorm.h"

namespace exatrain::kernels {

namespace {

// One block of kRmsNormLanes threads per row: [rows, cols] -> [rows, cols].
__global__ void rmsnorm_forward_kernel(const float* x, const float* weight, float* y, int64_t cols, float eps) {
  __shared__ float sums[kRmsNormLanes];
  const int lane = static_cast<int>(threadIdx.x);
  const float* xr = x + blockIdx.x * cols;
  sums[lane] = rms_partial_sum(xr, cols, lane, kRmsNormLanes);
  __syncthreads();
  for (int stride = kRmsNormLanes / 2; stride > 0; stride /= 2) {
    tree_reduce_step(sums, lane, stride);
    __syncthreads();
  }
  const float inv = rms_inverse(sums[0], cols, eps);
  rms_scale_row(xr, weight, y + blockIdx.x * cols, cols, inv, lane, kRmsNormLanes);
}

}  // namespace

int rmsnorm_forward_cuda(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps,
                         void* stream) {
  if (rows == 0) return 0;
  rmsnorm_forward_kernel<<<static_cast<unsigned>(rows), kRmsNormLanes, 0, static_cast<cudaStream_t>(stream)>>>(
      x, weight, y, cols, eps);
  return static_cast<int>(cudaGetLastError());
}

bool cuda_device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

}  // namespace exatrain::kernels
