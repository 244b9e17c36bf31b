// The CUDA AdamW kernel body (kernels/adamw.cuh) compiled by the host compiler over the CPU
// emulation of kernels/simt.h: the code nvcc builds, run in CI.
#include "kernels/adamw.cuh"

namespace exatrain::kernels {

void adamw_step_emulated(const AdamWRun* runs, int64_t run_count, float* param, const float* grad, float* exp_avg,
                         float* exp_avg_sq, const AdamWStep& step) {
  // Two blocks in x at most, so a run longer than 512 elements exercises the stride loop.
  for (int64_t first = 0; first < run_count; first += kAdamWMaxRuns) {
    const int count = static_cast<int>(run_count - first < kAdamWMaxRuns ? run_count - first : kAdamWMaxRuns);
    const AdamWLaunch l = adamw_launch(runs, first, count, param, grad, exp_avg, exp_avg_sq, step, 2);
    simt::launch(simt::Dim2{l.blocks_x, count}, kAdamWThreads, 0, [&] { adamw_kernel(l); });
  }
}

}  // namespace exatrain::kernels
