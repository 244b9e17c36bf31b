// Rotary position embeddings as transformers computes them: inverse frequencies (optionally
// with Llama 3.1 scaling), cos/sin tables in the half-rotation layout, and their application.
#pragma once

#include <ATen/core/Tensor.h>

#include "kernels/ops.h"
#include "trainer/core/config.h"

namespace exatrain {

// [head_dim / 2] fp32 inverse frequencies, mirroring transformers' float32 arithmetic.
at::Tensor rope_inverse_frequencies(const ModelConfig& config);

// cos, sin: fp32 [seq, head_dim], or [batch, 1, seq, head_dim] per-token positions (the operator
// layer's type: ops::rope applies them).
using RopeTables = ops::RopeTables;
// Tables for positions 0 .. seq_len-1 (emb = cat(freqs, freqs)).
RopeTables rope_tables(const at::Tensor& inv_freq, int64_t seq_len);

// Per-token positions [batch, seq] (int) -> tables [batch, 1, seq, head_dim], which apply_rope
// broadcasts over the heads (document masks: positions restart in each document).
RopeTables rope_tables(const at::Tensor& inv_freq, const at::Tensor& positions);
// Position of each token within its document: segments [batch, seq] (non-decreasing document ids
// per row) -> [batch, seq] int64, 0 at each document's first token.
at::Tensor document_positions(const at::Tensor& segments);

// x: [batch, heads, seq, head_dim]; returns x * cos + rotate_half(x) * sin: ops::rope's reference
// implementation (the model calls ops::rope with the implementation train.kernels picks).
at::Tensor apply_rope(const at::Tensor& x, const RopeTables& tables);

}  // namespace exatrain
