// The tensor-core flash attention compiled by the host compiler: the kernel bodies of
// flash_attention_{fwd,bwd}.cuh over the CPU emulation of kernels/simt.h.
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

template <int D>
void run_backward(const FlashBwdParams& p) {
  const simt::Dim2 grid{(p.seq + kBwdKeys - 1) / kBwdKeys, p.batch * p.heads};
  simt::launch(grid, kBwdThreads, static_cast<size_t>(flash_bwd_shared_bytes(D)),
               [&] { flash_attention_bwd_kernel<D>(p); });
}

[[noreturn]] void unsupported(int head_dim) {
  throw std::invalid_argument("flash attention (tensor cores): head_dim " + std::to_string(head_dim) +
                              " is not one of 32, 64, 128");
}

}  // namespace

void flash_attention_backward_emulated(const FlashBwdParams& p, int head_dim) {
  switch (head_dim) {
    case 32: return run_backward<32>(p);
    case 64: return run_backward<64>(p);
    case 128: return run_backward<128>(p);
    default: break;
  }
  unsupported(head_dim);
}

void flash_attention_forward_emulated(const FlashFwdParams& p, int head_dim) {
  switch (head_dim) {
    case 32: return run<32>(p);
    case 64: return run<64>(p);
    case 128: return run<128>(p);
    default: break;
  }
  unsupported(head_dim);
}

}  // namespace exatrain::kernels
