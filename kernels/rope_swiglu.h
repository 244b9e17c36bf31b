// Fused RoPE and SwiGLU with a C-style interface: raw pointers, sizes, a stream. One source of
// per-element math (kernels/rope_swiglu.cuh) serves the fused CPU kernel, the CUDA kernels and
// their CPU emulation; kernels/ops.cpp wraps them as autograd functions.
// Elements are fp32 or bf16 (`bf16`: pointers hold uint16_t bf16 bits), math is fp32.
#pragma once

#include <cstdint>

namespace exatrain::kernels {

// RoPE in the half-rotation layout (transformers' rotate_half):
//   forward:  y = x * cos + cat(-x2, x1) * sin
//   backward: x is the output's gradient, y receives the input's (the transposed rotation).
// x, y: [batch, heads, seq, head_dim], last dimension contiguous, other strides as given (in
// elements); cos, sin: [table_batch, seq, head_dim] contiguous, in x's element type, table_batch
// 1 (table_stride_b 0: one table for every row) or batch (document masks: per-token positions).
struct RopeParams {
  const void* x;
  void* y;
  const void* cos;
  const void* sin;
  int64_t batch, heads, seq, head_dim;  // head_dim even
  int64_t x_stride[3];                  // batch, head, position
  int64_t y_stride[3];
  int64_t table_stride_b;
  bool bf16;
};

// SwiGLU, elementwise over n elements of contiguous tensors:
//   forward:  out = silu(gate) * up
//   backward: dgate, dup from gate, up and dout (nothing else is kept between the two).
struct SwigluParams {
  const void* gate;
  const void* up;
  void* out;         // forward
  const void* dout;  // backward
  void* dgate;
  void* dup;
  int64_t n;
  bool bf16;
};

// The fused CPU kernel: rows [begin, end) of the flattened [batch, heads, seq] (RoPE), elements
// [begin, end) (SwiGLU); callers spread ranges over threads. Built per instruction set
// (target_clones); rope_swiglu_cpu_isa() names the copy this CPU runs.
void rope_rows_cpu(const RopeParams& p, bool backward, int64_t begin, int64_t end);
void swiglu_cpu(const SwigluParams& p, bool backward, int64_t begin, int64_t end);
const char* rope_swiglu_cpu_isa();

// The CUDA kernels' bodies under the CPU emulation of kernels/simt.h (each block's threads as
// real threads): what the tests and `selftest --kernels` run without a GPU.
void rope_emulated(const RopeParams& p, bool backward);
void swiglu_emulated(const SwigluParams& p, bool backward);

#if defined(EXATRAIN_HAVE_CUDA)
// Launches on `stream` (a cudaStream_t); pointers are device memory. Returns a cudaError_t as
// int (0 = success).
int rope_cuda(const RopeParams& p, bool backward, void* stream);
int swiglu_cuda(const SwigluParams& p, bool backward, void* stream);
#endif

}  // namespace exatrain::kernels
