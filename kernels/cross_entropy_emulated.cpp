// The CUDA cross-entropy kernels compiled by the host compiler: the kernel bodies of
// kernels/cross_entropy_kernel.cuh over the CPU emulation of kernels/simt.h, one emulated block
// of kXentThreads threads per row (blocks run one after another).
#include "kernels/cross_entropy_kernel.cuh"

namespace exatrain::kernels {

void cross_entropy_forward_emulated(const CrossEntropyParams& p) {
  if (p.rows == 0) return;
  simt::launch({static_cast<int>(p.rows), 1}, kXentThreads, kXentSharedBytes, [&] {
    if (p.bf16)
      cross_entropy_fwd_kernel<uint16_t>(p);
    else
      cross_entropy_fwd_kernel<float>(p);
  });
}

void cross_entropy_backward_emulated(const CrossEntropyParams& p) {
  if (p.rows == 0) return;
  simt::launch({static_cast<int>(p.rows), 1}, kXentThreads, 0, [&] {
    if (p.bf16)
      cross_entropy_bwd_kernel<uint16_t>(p);
    else
      cross_entropy_bwd_kernel<float>(p);
  });
}

#if !defined(EXATRAIN_HAVE_CUDA)
int cross_entropy_forward_cuda(const CrossEntropyParams&, void*) { return 1; }
int cross_entropy_backward_cuda(const CrossEntropyParams&, void*) { return 1; }
#endif

}  // namespace exatrain::kernels
