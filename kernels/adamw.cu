#include <cuda_runtime.h>

#include "kernels/adamw.cuh"

namespace exatrain::kernels {

int adamw_step_cuda(const AdamWRun* runs, int64_t run_count, float* param, const float* grad, float* exp_avg,
                    float* exp_avg_sq, const AdamWStep& step, void* stream) {
  // Enough blocks in x to cover the longest run about 4 times over the SMs' threads; each thread
  // strides over the rest (132 SMs x 2048 threads on an H100 = 1,056 blocks of 256).
  constexpr int kMaxBlocksX = 1024;
  for (int64_t first = 0; first < run_count; first += kAdamWMaxRuns) {
    const int count = static_cast<int>(run_count - first < kAdamWMaxRuns ? run_count - first : kAdamWMaxRuns);
    const AdamWLaunch l =
        adamw_launch(runs, first, count, param, grad, exp_avg, exp_avg_sq, step, kMaxBlocksX);
    adamw_kernel<<<dim3(static_cast<unsigned>(l.blocks_x), static_cast<unsigned>(count)), kAdamWThreads, 0,
                   static_cast<cudaStream_t>(stream)>>>(l);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return static_cast<int>(err);
  }
  return 0;
}

}  // namespace exatrain::kernels
