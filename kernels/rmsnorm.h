// RMSNorm with a C-style interface: raw pointers, sizes, a stream. The row computation is a
// __host__ __device__ function shared by the CUDA kernel and the CPU reference, so its logic
// is tested on the CPU in CI (tests/unit/test_kernels.cpp); the GPU test skips without a GPU.
#pragma once

#include <cstdint>

#include "kernels/rmsnorm_row.h"

namespace exatrain::kernels {

// CPU reference: y[r, :] = weight * x[r, :] / sqrt(mean(x[r, :]^2) + eps), fp32.
void rmsnorm_forward_cpu(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps);

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

// CUDA: same computation, one block per row. Returns a cudaError_t as int (0 = success);
// `stream` is a cudaStream_t. Defined only when built with CUDA (EXATRAIN_HAVE_CUDA).
int rmsnorm_forward_cuda(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps,
                         void* stream);

// Whether a CUDA device is present at run time (false in builds without CUDA).
bool cuda_device_available();

}  // namespace exatrain::kernels
