// RoPE and SwiGLU compiled by the host compiler: the CUDA kernel bodies of rope_swiglu.cuh over
// the CPU emulation of kernels/simt.h, the same grid and block as rope_swiglu.cu launches.
#include <stdexcept>

#include "kernels/rope_swiglu.cuh"

namespace exatrain::kernels {

namespace {

template <class Body>
void launch(int64_t items, const Body& body) {
  if (items == 0) return;
  const int64_t blocks = elementwise_blocks(items);
  if (blocks > (int64_t{1} << 30)) throw std::invalid_argument("rope/swiglu emulation: too many blocks");
  simt::launch(simt::Dim2{static_cast<int>(blocks), 1}, kElementwiseThreads, 0, body);
}

}  // namespace

void rope_emulated(const RopeParams& p, bool backward) {
  launch(rope_pairs(p), [&] {
    if (p.bf16)
      rope_kernel<uint16_t>(p, backward);
    else
      rope_kernel<float>(p, backward);
  });
}

void swiglu_emulated(const SwigluParams& p, bool backward) {
  launch(p.n, [&] {
    if (p.bf16)
      swiglu_kernel<uint16_t>(p, backward);
    else
      swiglu_kernel<float>(p, backward);
  });
}

}  // namespace exatrain::kernels
