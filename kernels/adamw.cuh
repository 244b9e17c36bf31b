// The AdamW kernel body (kernels/adamw.h), one source for nvcc (kernels/adamw.cu) and the CPU
// emulation (kernels/adamw_emulated.cpp). Grid: x strides over a run's elements, y picks the
// run; each thread updates elements i = x * blockDim + thread, then every blocks_x * blockDim.
// Memory-bound: 16 bytes read and 12 (+2 with the bf16 copy) written per element; the H100
// roofline is in docs/kernels.md.
#pragma once

#include "kernels/adamw.h"
#include "kernels/simt.h"

namespace exatrain::kernels {

inline constexpr int kAdamWThreads = 256;
inline constexpr int kAdamWMaxRuns = 128;  // per launch: the parameters below stay under 4 KB

struct AdamWLaunch {
  AdamWRun runs[kAdamWMaxRuns];
  int run_count = 0;
  int blocks_x = 1;
  float* param = nullptr;
  const float* grad = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  AdamWStep step;
};

// static: nvcc's host stub for this kernel and the emulation's plain function share one name;
// internal linkage keeps the two apart when both are linked into one binary.
static SIMT_KERNEL void adamw_kernel(const AdamWLaunch p) {
  const AdamWRun run = p.runs[simt::block_y()];
  const float decay = adamw_decay_factor(p.step, run);
  const int64_t stride = static_cast<int64_t>(p.blocks_x) * simt::block_dim_x();
  for (int64_t i = static_cast<int64_t>(simt::block_x()) * simt::block_dim_x() + simt::thread_x(); i < run.length;
       i += stride) {
    const int64_t e = run.begin + i;
    float m = p.exp_avg[e], v = p.exp_avg_sq[e];
    const float w = adamw_update(p.param[e], p.grad[e], m, v, decay, p.step);
    p.param[e] = w;
    p.exp_avg[e] = m;
    p.exp_avg_sq[e] = v;
    if (run.out) run.out[i] = simt::bf16_bits(w);
  }
}

// Fills a launch with runs [first, first + count) (count <= kAdamWMaxRuns).
inline AdamWLaunch adamw_launch(const AdamWRun* runs, int64_t first, int count, float* param, const float* grad,
                                float* exp_avg, float* exp_avg_sq, const AdamWStep& step, int max_blocks_x) {
  AdamWLaunch l;
  int64_t longest = 0;
  for (int k = 0; k < count; ++k) {
    l.runs[k] = runs[first + k];
    longest = longest > runs[first + k].length ? longest : runs[first + k].length;
  }
  l.run_count = count;
  const int64_t blocks = (longest + kAdamWThreads - 1) / kAdamWThreads;
  l.blocks_x = static_cast<int>(blocks < 1 ? 1 : (blocks > max_blocks_x ? max_blocks_x : blocks));
  l.param = param;
  l.grad = grad;
  l.exp_avg = exp_avg;
  l.exp_avg_sq = exp_avg_sq;
  l.step = step;
  return l;
}

}  // namespace exatrain::kernels
