// The tensor-core flash attention for sm_80 / sm_90a: the kernel bodies of
// flash_attention_{fwd,bwd}.cuh, instantiated per head_dim and launched on a stream.
#include <cuda_runtime.h>

#include "kernels/flash_attention_cuda.h"

namespace exatrain::kernels {

namespace {

template <int D>
cudaError_t launch(const FlashFwdParams& p, cudaStream_t stream) {
  const dim3 grid((p.seq + kFwdRows - 1) / kFwdRows, p.batch * p.heads);
  flash_attention_fwd_kernel<D><<<grid, kFwdThreads, flash_fwd_shared_bytes(D), stream>>>(p);
  return cudaGetLastError();
}

// The backward stages four [64][D] tiles and dSᵀ: 72.5 KiB at head_dim 128, above the 48 KiB a
// kernel gets without opting in (sm_80 allows up to 163 KiB).
template <int D>
cudaError_t launch_backward(const FlashBwdParams& p, cudaStream_t stream) {
  const int bytes = flash_bwd_shared_bytes(D);
  if (bytes > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(flash_attention_bwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (e != cudaSuccess) return e;
  }
  const dim3 grid((p.seq + kBwdKeys - 1) / kBwdKeys, p.batch * p.heads);
  flash_attention_bwd_kernel<D><<<grid, kBwdThreads, bytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

int flash_attention_backward_cuda(const FlashBwdParams& p, int head_dim, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (head_dim) {
    case 32: return static_cast<int>(launch_backward<32>(p, s));
    case 64: return static_cast<int>(launch_backward<64>(p, s));
    case 128: return static_cast<int>(launch_backward<128>(p, s));
    default: break;
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int flash_attention_forward_cuda(const FlashFwdParams& p, int head_dim, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (head_dim) {
    case 32: return static_cast<int>(launch<32>(p, s));
    case 64: return static_cast<int>(launch<64>(p, s));
    case 128: return static_cast<int>(launch<128>(p, s));
    default: break;
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace exatrain::kernels
