// The CPU AdamW kernel (kernels/adamw.h): one pass over the owned slice, reading weights,
// gradients and both moments once and writing them (and the bf16 copy) once. Built once per
// instruction set with GCC's target_clones, as kernels/rmsnorm_cpu.cpp; the inner loop is
// adamw_update, the element function the CUDA kernel runs too.
#include <algorithm>

#include "kernels/adamw.h"
#include "kernels/cpu_clones.h"

namespace exatrain::kernels {

namespace {

EXATRAIN_CLONES void update_range(float* __restrict p, const float* __restrict g, float* __restrict m,
                                  float* __restrict v, int64_t n, float decay, const AdamWStep& s) {
  for (int64_t i = 0; i < n; ++i) p[i] = adamw_update(p[i], g[i], m[i], v[i], decay, s);
}

EXATRAIN_CLONES void to_bf16(const float* __restrict p, uint16_t* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = simt::bf16_bits(p[i]);
}

}  // namespace

void adamw_step_cpu(const AdamWRun* runs, int64_t run_count, float* param, const float* grad, float* exp_avg,
                    float* exp_avg_sq, const AdamWStep& step, int64_t begin, int64_t end) {
  for (int64_t r = 0; r < run_count; ++r) {
    const int64_t a = std::max(begin, runs[r].begin), b = std::min(end, runs[r].begin + runs[r].length);
    if (a >= b) continue;
    // In cache-sized pieces, so the bf16 copy reads the weights just written from L1/L2.
    constexpr int64_t kPiece = 4096;
    for (int64_t i = a; i < b; i += kPiece) {
      const int64_t n = std::min(kPiece, b - i);
      update_range(param + i, grad + i, exp_avg + i, exp_avg_sq + i, n, adamw_decay_factor(step, runs[r]), step);
      if (runs[r].out) to_bf16(param + i, runs[r].out + (i - runs[r].begin), n);
    }
  }
}

}  // namespace exatrain::kernels
