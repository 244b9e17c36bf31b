// The tensor-core flash attention, forward and backward (kernels/flash_attention_{fwd,bwd}.cuh),
// behind a C-style interface: on a GPU (built with CUDA), and the same kernel body under the CPU emulation of
// kernels/simt.h (always built; what the tests and `selftest --kernels` run here).
#pragma once

#include "kernels/flash_attention_bwd.cuh"
#include "kernels/flash_attention_fwd.cuh"

namespace exatrain::kernels {

// Head dims the kernel is instantiated for.
bool flash_fwd_supports_head_dim(int head_dim);

// Runs the kernel body on the CPU, every block's 128 threads as real threads.
void flash_attention_forward_emulated(const FlashFwdParams& p, int head_dim);
void flash_attention_backward_emulated(const FlashBwdParams& p, int head_dim);

#if defined(EXATRAIN_HAVE_CUDA)
// Launches on `stream` (a cudaStream_t); pointers are device memory. Returns a cudaError_t as
// int (0 = success).
int flash_attention_forward_cuda(const FlashFwdParams& p, int head_dim, void* stream);
int flash_attention_backward_cuda(const FlashBwdParams& p, int head_dim, void* stream);
#endif

}  // namespace exatrain::kernels
