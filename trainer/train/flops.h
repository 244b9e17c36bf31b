// Model FLOPs (PaLM convention) and the measured GEMM peak that MFU is relative to.
#pragma once

#include <cstdint>

#include "trainer/core/config.h"

namespace exatrain {

// Training FLOPs per token: 6 * N_matmul + 12 * sum over layers of (heads * head_dim * context),
// where N_matmul counts every weight used in a matrix multiply (all linears and lm_head; not
// the embedding lookup) and context is seq_len for global layers, min(seq_len, window) for
// sliding ones (PaLM's 12·L·H·Q·T, with each layer's own attention span).
double train_flops_per_token(const ModelConfig& config, int64_t seq_len);

// fp32 matrix-multiply throughput of this machine with the current thread count: repeated
// n x n at::mm for about `seconds`, best of the runs. The denominator of CPU MFU.
double measure_gemm_peak_flops(double seconds = 0.5, int64_t n = 1024);

}  // namespace exatrain
