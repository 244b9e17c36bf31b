// Fused softmax cross-entropy with a C-style interface: raw pointers, sizes, a stream. One row
// per token, over this rank's slice of the vocabulary, columns [vocab_start, vocab_start + cols)
// of the full vocabulary (all of it on one rank).
//   forward:  per row, in ONE pass over the logits, the slice's max m, its sum of exp(z - m)
//             and the target's logit (0 where the target is in another slice or ignored). The
//             caller combines the slices' pairs across ranks and keeps the row's global max M
//             and log S: loss = log S - (z_target - M).
//   backward: per row, in one pass, dz = (softmax(z) - onehot(target)) g from (M, log S) and the
//             row's incoming gradient g (dloss times the token's weight); 0 for ignored rows.
// No [rows, cols] float tensor besides the logits and their gradient exists. Logits and
// gradients fp32 or bf16 (bits, round to nearest even), exponentials and sums in double, per-row
// results fp32. Row math: cross_entropy_row.h.
#pragma once

#include <cstdint>

#include "kernels/cross_entropy_row.h"

namespace exatrain::kernels {

struct CrossEntropyParams {
  const void* logits = nullptr;  // [rows, cols] fp32 or bf16 (bf16 = true), rows contiguous
  bool bf16 = false;
  const int64_t* targets = nullptr;  // [rows] ids in the whole vocabulary; kIgnoreTarget: ignored
  int64_t rows = 0, cols = 0, vocab_start = 0;
  // forward outputs, [rows] each
  float* row_max = nullptr;
  float* row_sum = nullptr;
  float* target_logit = nullptr;
  // backward inputs [rows] each, and the output [rows, cols] in the logits' dtype
  const float* max = nullptr;
  const float* log_sum = nullptr;
  const float* grad = nullptr;
  void* dlogits = nullptr;
};

// The fused CPU kernel (kernels/cross_entropy_cpu.cpp) on rows [begin, end): callers spread
// row ranges over threads.
void cross_entropy_forward_rows(const CrossEntropyParams& p, int64_t begin, int64_t end);
void cross_entropy_backward_rows(const CrossEntropyParams& p, int64_t begin, int64_t end);
// Which copy target_clones picked (for the selftest's rows): "avx512f", "avx2" or "default".
const char* cross_entropy_cpu_isa();

// The CUDA kernel (kernels/cross_entropy_kernel.cuh): one block of kXentThreads threads per row.
inline constexpr int kXentThreads = 256;
inline constexpr int kXentSharedBytes = kXentThreads * (8 + 4);  // (double sum, float max) per thread
// On the GPU, on `stream` (a cudaStream_t): returns a cudaError_t as int (0: launched). Builds
// without CUDA return 1.
int cross_entropy_forward_cuda(const CrossEntropyParams& p, void* stream);
int cross_entropy_backward_cuda(const CrossEntropyParams& p, void* stream);
// The same kernel bodies under the CPU emulation of kernels/simt.h (tests, selftest).
void cross_entropy_forward_emulated(const CrossEntropyParams& p);
void cross_entropy_backward_emulated(const CrossEntropyParams& p);

}  // namespace exatrain::kernels
