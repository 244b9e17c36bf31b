// RMSNorm with a C-style interface: raw pointers, sizes, a stream. The row computation is a
// __host__ __device__ function shared by the CUDA kernel and the CPU reference, so its logic
// is tested on the CPU in CI (tests/unit/test_kernels.cpp); the GPU test skips without a GPU.
#pragma once

#include <cstdint>

#include "kernels/rmsnorm_row.h"

namespace exatrain::kernels {

// CPU reference: y[r, :] = weight * x[r, :] / sqrt(mean(x[r, :]^2) + eps), fp32.
void rmsnorm_forward_cpu(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps);

// CUDA: same computation, one block per row. Returns a cudaError_t as int (0 = success);
// `stream` is a cudaStream_t. Defined only when built with CUDA (EXATRAIN_HAVE_CUDA).
int rmsnorm_forward_cuda(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps,
                         void* stream);

// Whether a CUDA device is present at run time (false in builds without CUDA).
bool cuda_device_available();

}  // namespace exatrain::kernels
