// RMSNorm with a C-style interface: raw pointers, sizes, a stream. One source of per-row math
// (kernels/rmsnorm_row.h) serves the fused CPU kernel and the CUDA kernels
// (kernels/rmsnorm_kernel.cuh), which also run under the CPU emulation of kernels/simt.h;
// kernels/ops.cpp wraps them as autograd functions (ops::rms_norm).
#pragma once

#include <cstdint>

#include "kernels/rmsnorm_row.h"

namespace exatrain::kernels {

// The fused CPU RMSNorm of the model (kernels/rmsnorm_cpu.cpp), fp32 rows of `cols`, rows
// [begin, end) (callers spread row ranges over threads):
//   forward:  inv[r] = 1 / sqrt(mean(x[r]^2) + eps); y[r] = weight * n, n = x[r] inv[r], rounded
//             to bf16 first when `round_to_bf16` (transformers' Exaone4RMSNorm casts the
//             normalised row back to a bf16 input's dtype before the weight);
//   backward: dx[r] = inv (dn - n mean(dn n)) with dn = dy weight (rounded to bf16 likewise);
//             dweight += dy n, in double (the caller gives each thread its own and sums them);
//             `scratch` holds `cols` floats per thread.
void rmsnorm_forward_rows(const float* x, const float* weight, float* y, float* inv, int64_t cols, float eps,
                          bool round_to_bf16, int64_t begin, int64_t end);
void rmsnorm_backward_rows(const float* x, const float* weight, const float* inv, const float* dy, float* dx,
                           double* dweight, float* scratch, int64_t cols, bool round_to_bf16, int64_t begin,
                           int64_t end);

// The CUDA kernels' view: rows of `cols` contiguous elements. x (and dx) fp32 or bf16 (`x_bf16`:
// uint16_t bf16 bits); y and dy in the output's dtype (`y_bf16`: bf16 only when x and the weight
// are both bf16, as torch promotes); the weight, inv and dweight fp32. With a bf16 x the kernels
// round where the CPU kernel does (round_to_bf16 above).
struct RmsNormParams {
  const void* x = nullptr;
  bool x_bf16 = false, y_bf16 = false;
  const float* weight = nullptr;  // [cols]
  int64_t rows = 0, cols = 0;
  float eps = 0;
  // forward outputs
  void* y = nullptr;
  float* inv = nullptr;  // [rows]: 1 / rms, saved for backward
  // backward: inputs x, weight, inv, dy; outputs dx and dweight (summed over the rows)
  const void* dy = nullptr;
  void* dx = nullptr;
  float* dweight = nullptr;   // [cols]
  float* partials = nullptr;  // scratch, rmsnorm_partial_count(rows, cols) floats
};

// The widest row the CUDA kernels take: each thread keeps its 16 columns in registers, and the
// wide backward's 147-152 registers per thread (ptxas, sm_80 / sm_90a) leave room for 13 warps of
// a block in an SM's 64 K registers; 6,144 columns are 12 warps. Wider rows run the reference.
inline constexpr int64_t kRmsNormMaxCols = 6144;
// Floats of scratch the backward needs for its per-group dweight partials.
int64_t rmsnorm_partial_count(int64_t rows, int64_t cols);

// The CUDA kernels' bodies under the CPU emulation (each block's threads as real threads): what
// the tests and `selftest --kernels` run without a GPU. Small shapes: every emulated block is
// up to 1,024 real threads.
void rmsnorm_forward_emulated(const RmsNormParams& p);
void rmsnorm_backward_emulated(const RmsNormParams& p);

// On the GPU, on `stream` (a cudaStream_t), pointers in device memory: returns a cudaError_t as
// int (0: launched). Builds without CUDA return 1.
int rmsnorm_forward_cuda(const RmsNormParams& p, void* stream);
int rmsnorm_backward_cuda(const RmsNormParams& p, void* stream);

// Whether a CUDA device is present at run time (false in builds without CUDA).
bool cuda_device_available();

}  // namespace exatrain::kernels
