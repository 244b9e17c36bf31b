// The tensor-core flash attention forward compiled by the host compiler: the kernel body of
// flash_attention_fwd.cuh over the CPU emulation of kernels/simt.h.
#include <stdexcept>
#include <string>

#include "kernels/flash_attention_cuda.h"

namespace exatrain::kernels {

bool flash_fwd_supports_head_dim(int head_dim) {
  return head_dim == 32 || head_dim == 64 || head_dim == 128;
}

namespace {

template <int D>
void run(const FlashFwdParams& p) {
  const simt::Dim2 grid{(p.seq + kFwdRows - 1) / kFwdRows, p.batch * p.heads};
  simt::launch(grid, kFwdThreads, static_cast<size_t>(flash_fwd_shared_bytes(D)),
               [&] { flash_attention_fwd_kernel<D>(p); });
}

}  // namespace

void flash_attention_forward_emulated(const FlashFwdParams& p, int head_dim) {
  switch (head_dim) {
    case 32: return run<32>(p);
    case 64: return run<64>(p);
    case 128: return run<128>(p);
    default: break;
  }
  throw std::invalid_argument("flash attention (tensor cores): head_dim " + std::to_string(head_dim) +
                              " is not one of 32, 64, 128");
}

}  // namespace exatrain::kernels
