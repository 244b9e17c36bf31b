// RoPE and SwiGLU for sm_80 / sm_90a: the kernel bodies of rope_swiglu.cuh, instantiated for fp32
// and bf16 elements and launched on a stream.
#include <cuda_runtime.h>

#include "kernels/rope_swiglu.cuh"

namespace exatrain::kernels {

namespace {

unsigned grid_of(int64_t items) { return static_cast<unsigned>(elementwise_blocks(items)); }

}  // namespace

int rope_cuda(const RopeParams& p, bool backward, void* stream) {
  const int64_t pairs = rope_pairs(p);
  if (pairs == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.bf16)
    rope_kernel<uint16_t><<<grid_of(pairs), kElementwiseThreads, 0, s>>>(p, backward);
  else
    rope_kernel<float><<<grid_of(pairs), kElementwiseThreads, 0, s>>>(p, backward);
  return static_cast<int>(cudaGetLastError());
}

int swiglu_cuda(const SwigluParams& p, bool backward, void* stream) {
  if (p.n == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.bf16)
    swiglu_kernel<uint16_t><<<grid_of(p.n), kElementwiseThreads, 0, s>>>(p, backward);
  else
    swiglu_kernel<float><<<grid_of(p.n), kElementwiseThreads, 0, s>>>(p, backward);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace exatrain::kernels
