// The tensor-core flash attention forward for sm_80 / sm_90a: the kernel body of
// flash_attention_fwd.cuh, instantiated per head_dim and launched on a stream.
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

}  // namespace

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
