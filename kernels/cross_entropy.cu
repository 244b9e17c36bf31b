// The cross-entropy kernels (kernels/cross_entropy_kernel.cuh) launched on a CUDA stream.
#include <cuda_runtime.h>

#include "kernels/cross_entropy_kernel.cuh"

namespace exatrain::kernels {

int cross_entropy_forward_cuda(const CrossEntropyParams& p, void* stream) {
  if (p.rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.bf16)
    cross_entropy_fwd_kernel<uint16_t><<<static_cast<unsigned>(p.rows), kXentThreads, kXentSharedBytes, s>>>(p);
  else
    cross_entropy_fwd_kernel<float><<<static_cast<unsigned>(p.rows), kXentThreads, kXentSharedBytes, s>>>(p);
  return static_cast<int>(cudaGetLastError());
}

int cross_entropy_backward_cuda(const CrossEntropyParams& p, void* stream) {
  if (p.rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.bf16)
    cross_entropy_bwd_kernel<uint16_t><<<static_cast<unsigned>(p.rows), kXentThreads, 0, s>>>(p);
  else
    cross_entropy_bwd_kernel<float><<<static_cast<unsigned>(p.rows), kXentThreads, 0, s>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace exatrain::kernels
