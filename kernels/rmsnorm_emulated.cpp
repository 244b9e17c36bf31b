// The CUDA RMSNorm kernels compiled by the host compiler: the kernel bodies of
// kernels/rmsnorm_kernel.cuh over the CPU emulation of kernels/simt.h, the blocks
// kernels/rmsnorm.cu launches, in a grid of at most kEmulatedBlocks (emulated blocks run one
// after another): a few rows already make groups loop over several rows, as the GPU's capped
// backward grid does at real sizes. The partials fit in rmsnorm_partial_count's (the GPU's).
#include <stdexcept>

#include "kernels/rmsnorm_kernel.cuh"

namespace exatrain::kernels {

int64_t rmsnorm_partial_count(int64_t rows, int64_t cols) { return rmsnorm_launch(rows, cols, true).groups * cols; }

namespace {

constexpr int64_t kEmulatedBlocks = 3;

void check(const RmsNormParams& p) {
  if (p.cols > kRmsNormMaxCols) throw std::invalid_argument("rmsnorm emulation: rows wider than kRmsNormMaxCols");
  if (!p.x_bf16 && p.y_bf16) throw std::invalid_argument("rmsnorm emulation: a bf16 output needs a bf16 input");
}

}  // namespace

void rmsnorm_forward_emulated(const RmsNormParams& p) {
  if (p.rows == 0 || p.cols == 0) return;
  check(p);
  const RmsNormLaunch l = rmsnorm_launch(p.rows, p.cols, /*backward=*/false, kEmulatedBlocks);
  rmsnorm_dispatch(p, l, [&](auto types) {
    using K = decltype(types);
    simt::launch({static_cast<int>(l.blocks), 1}, l.threads, static_cast<size_t>(l.shared_bytes),
                 [&] { rmsnorm_fwd_kernel<typename K::Tx, typename K::Ty, K::kPer>(p, l); });
  });
}

void rmsnorm_backward_emulated(const RmsNormParams& p) {
  if (p.cols == 0) return;
  check(p);
  const RmsNormLaunch l = rmsnorm_launch(p.rows, p.cols, /*backward=*/true, kEmulatedBlocks);
  rmsnorm_dispatch(p, l, [&](auto types) {
    using K = decltype(types);
    simt::launch({static_cast<int>(l.blocks), 1}, l.threads, static_cast<size_t>(l.shared_bytes),
                 [&] { rmsnorm_bwd_kernel<typename K::Tx, typename K::Ty, K::kPer>(p, l); });
  });
  simt::launch({static_cast<int>(rmsnorm_reduce_blocks(p.cols)), 1}, kRmsNormReduceThreads, 0,
               [&] { rmsnorm_dweight_kernel(p, l.groups); });
}

#if !defined(EXATRAIN_HAVE_CUDA)
bool cuda_device_available() { return false; }
int rmsnorm_forward_cuda(const RmsNormParams&, void*) { return 1; }
int rmsnorm_backward_cuda(const RmsNormParams&, void*) { return 1; }
#endif

}  // namespace exatrain::kernels
