// Rotary position embeddings as transformers computes them: inverse frequencies (optionally
// with Llama 3.1 scaling), cos/sin tables in the half-rotation layout, and their application.
#pragma once

#include <ATen/core/Tensor.h>

#include "trainer/core/config.h"

namespace exatrain {

// [head_dim / 2] fp32 inverse frequencies, mirroring transformers' float32 arithmetic.
at::Tensor rope_inverse_frequencies(const ModelConfig& config);

struct RopeTables {
  at::Tensor cos;  // [seq, head_dim]
  at::Tensor sin;  // [seq, head_dim]
};
// Tables for positions 0 .. seq_len-1 (emb = cat(freqs, freqs)).
RopeTables rope_tables(const at::Tensor& inv_freq, int64_t seq_len);

// x: [batch, heads, seq, head_dim]; returns x * cos + rotate_half(x) * sin.
at::Tensor apply_rope(const at::Tensor& x, const RopeTables& tables);

}  // namespace exatrain
