// The CUDA RMSNorm kernels, written against kernels/simt.h: compiled by nvcc in
// kernels/rmsnorm.cu and by the host compiler over the CPU emulation in
// kernels/rmsnorm_emulated.cpp (so this body runs in CI). Per-row math: kernels/rmsnorm_row.h.
//
// A row belongs to a group of threads that keeps the row's elements in registers (read once):
//   narrow rows (cols <= 128: the per-head q/k norms, head_dim 64/128): a warp per row, 4 columns
//     per lane, 8 rows per 256-thread block; the row's sum is 5 xor-shuffles, no shared memory;
//   wide rows (up to kRmsNormMaxCols = 6,144; the hidden size, 5,120 at 32B): a block per row,
//     up to 16 columns per thread (5,120: 320 threads), shuffles within each warp, then the
//     warps' sums through shared memory, added by every thread in one fixed order.
// Thread t of a group owns columns t, t + group, ... (consecutive threads, consecutive columns:
// coalesced). Groups stride over rows: group g takes rows g, g + groups, ...
//
// dweight without float atomics: each group adds dy n of its rows into its own registers and
// writes them once to its row of `partials` [groups, cols]; a second kernel sums the groups'
// rows per column in a fixed order, in double. The backward's grid is a constant
// (kRmsNormBackwardBlocks), not the device's SM count, so dweight is the same bits on every run
// and every GPU; atomics would make its last bits depend on timing.
#pragma once

#include "kernels/rmsnorm.h"
#include "kernels/rmsnorm_row.h"
#include "kernels/rope_swiglu.cuh"  // load_element / store_element over fp32 and bf16 bits
#include "kernels/simt.h"

namespace exatrain::kernels {

inline constexpr int kRmsNormNarrowPer = 4, kRmsNormWidePer = 16;
inline constexpr int kRmsNormNarrowThreads = 256;
inline constexpr int64_t kRmsNormBackwardBlocks = 256, kRmsNormForwardMaxBlocks = int64_t{1} << 20;

struct RmsNormLaunch {
  bool narrow = true;
  int threads = 0, group = 0;  // per block; threads per row
  int64_t blocks = 0, groups = 0;
  int shared_bytes = 0;  // the warps' sums of a wide row
};

// `max_blocks` > 0 caps the grid below the GPU's (the emulation: so that groups take several
// rows and the stride loop, the reuse of the shared sums and the partials of several rows run).
inline RmsNormLaunch rmsnorm_launch(int64_t rows, int64_t cols, bool backward, int64_t max_blocks = 0) {
  RmsNormLaunch l;
  l.narrow = cols <= int64_t{simt::kWarpSize} * kRmsNormNarrowPer;
  if (l.narrow) {
    l.threads = kRmsNormNarrowThreads;
    l.group = simt::kWarpSize;
  } else {
    const int64_t warps = ((cols + kRmsNormWidePer - 1) / kRmsNormWidePer + simt::kWarpSize - 1) / simt::kWarpSize;
    l.threads = l.group = static_cast<int>(warps) * simt::kWarpSize;
    l.shared_bytes = static_cast<int>(warps * sizeof(float));
  }
  const int64_t per_block = l.threads / l.group;
  const int64_t cap = max_blocks > 0 ? max_blocks : backward ? kRmsNormBackwardBlocks : kRmsNormForwardMaxBlocks;
  const int64_t blocks = (rows + per_block - 1) / per_block;
  l.blocks = blocks < 1 ? 1 : (blocks > cap ? cap : blocks);
  l.groups = l.blocks * per_block;
  return l;
}

// The sum of `v` over the thread group of a row, the same value in every thread of the group.
// Every thread of the group must call it (warp shuffles; a block barrier for wide rows).
SIMT_DEVICE float rms_group_sum(float v, int group, float* warp_sums) {
  for (int mask = simt::kWarpSize / 2; mask > 0; mask /= 2) v += simt::shfl_xor(v, mask);
  if (group == simt::kWarpSize) return v;
  if (simt::lane() == 0) warp_sums[simt::thread_x() / simt::kWarpSize] = v;
  simt::sync_block();
  float total = 0;
  for (int w = 0; w < group / simt::kWarpSize; ++w) total += warp_sums[w];
  simt::sync_block();  // every thread has read the sums before the next row writes them
  return total;
}

// The group of this thread (its index in the grid) and its place in the group.
struct RmsNormThread {
  int64_t group;
  int t;
};
SIMT_DEVICE RmsNormThread rms_thread(const RmsNormLaunch& l) {
  const int tid = simt::thread_x();
  return RmsNormThread{static_cast<int64_t>(simt::block_x()) * (l.threads / l.group) + tid / l.group, tid % l.group};
}

// Forward: inv[row] = 1 / rms, y = weight * n (n rounded to bf16 for a bf16 x).
// static: nvcc's host stubs and the emulation's plain functions share these names; internal
// linkage keeps the two apart when both are linked into one binary (as kernels/adamw.cuh).
template <class Tx, class Ty, int kPer>
static SIMT_KERNEL void rmsnorm_fwd_kernel(const RmsNormParams p, const RmsNormLaunch l) {
  const RmsNormThread me = rms_thread(l);
  constexpr bool round = sizeof(Tx) == 2;
  const int64_t cols = p.cols;
  for (int64_t row = me.group; row < p.rows; row += l.groups) {
    const Tx* x = static_cast<const Tx*>(p.x) + row * cols;
    float xv[kPer];
    float sum_sq = 0;
    for (int k = 0; k < kPer; ++k) {
      const int64_t c = me.t + int64_t{k} * l.group;
      xv[k] = c < cols ? load_element<Tx>(x, c) : 0.f;
      sum_sq += xv[k] * xv[k];
    }
    sum_sq = rms_group_sum(sum_sq, l.group, simt::dynamic_shared<float>());
    const float s = rms_inverse(sum_sq, cols, p.eps);
    if (me.t == 0) p.inv[row] = s;
    Ty* y = static_cast<Ty*>(p.y) + row * cols;
    for (int k = 0; k < kPer; ++k) {
      const int64_t c = me.t + int64_t{k} * l.group;
      if (c < cols) store_element<Ty>(y, c, p.weight[c] * rms_normalized(xv[k], s, round));
    }
  }
}

// Backward: dx of each row from x, dy and the saved inv; the group's dy n summed over its rows
// into partials[group, :].
template <class Tx, class Ty, int kPer>
static SIMT_KERNEL void rmsnorm_bwd_kernel(const RmsNormParams p, const RmsNormLaunch l) {
  const RmsNormThread me = rms_thread(l);
  constexpr bool round = sizeof(Tx) == 2;
  const int64_t cols = p.cols;
  float dw[kPer];
  for (int k = 0; k < kPer; ++k) dw[k] = 0.f;
  for (int64_t row = me.group; row < p.rows; row += l.groups) {
    const Tx* x = static_cast<const Tx*>(p.x) + row * cols;
    const Ty* dy = static_cast<const Ty*>(p.dy) + row * cols;
    const float s = p.inv[row];
    float xv[kPer], dn[kPer];
    float dot = 0;
    for (int k = 0; k < kPer; ++k) {
      const int64_t c = me.t + int64_t{k} * l.group;
      xv[k] = dn[k] = 0.f;
      if (c < cols) {
        xv[k] = load_element<Tx>(x, c);
        const float g = load_element<Ty>(dy, c);
        dn[k] = rms_grad_normalized(g, p.weight[c], round);
        dw[k] += g * rms_normalized(xv[k], s, round);
      }
      dot += dn[k] * xv[k];
    }
    dot = rms_group_sum(dot, l.group, simt::dynamic_shared<float>());
    const float coef = rms_backward_coefficient(dot, s, cols);
    Tx* dx = static_cast<Tx*>(p.dx) + row * cols;
    for (int k = 0; k < kPer; ++k) {
      const int64_t c = me.t + int64_t{k} * l.group;
      if (c < cols) store_element<Tx>(dx, c, rms_grad_input(dn[k], xv[k], s, coef));
    }
  }
  float* part = p.partials + me.group * cols;
  for (int k = 0; k < kPer; ++k) {
    const int64_t c = me.t + int64_t{k} * l.group;
    if (c < cols) part[c] = dw[k];
  }
}

// dweight[c] = the sum of partials[0 .. groups, c], in double, groups in order; a thread per
// column, kRmsNormReduceThreads per block.
inline constexpr int kRmsNormReduceThreads = 256;
static SIMT_KERNEL void rmsnorm_dweight_kernel(const RmsNormParams p, const int64_t groups) {
  const int64_t c = static_cast<int64_t>(simt::block_x()) * simt::block_dim_x() + simt::thread_x();
  if (c >= p.cols) return;
  double acc = 0;
  for (int64_t g = 0; g < groups; ++g) acc += p.partials[g * p.cols + c];
  p.dweight[c] = static_cast<float>(acc);
}

// Calls f(RmsNormTypes<Tx, Ty, kPer>{}) for the params' element types and the launch's row kind.
template <class Tx_, class Ty_, int kPer_>
struct RmsNormTypes {
  using Tx = Tx_;
  using Ty = Ty_;
  static constexpr int kPer = kPer_;
};
template <class F>
void rmsnorm_dispatch(const RmsNormParams& p, const RmsNormLaunch& l, const F& f) {
  if (!p.x_bf16) {  // fp32 x: the output is fp32 whatever the weight (torch's promotion)
    if (l.narrow) f(RmsNormTypes<float, float, kRmsNormNarrowPer>{});
    else f(RmsNormTypes<float, float, kRmsNormWidePer>{});
  } else if (!p.y_bf16) {
    if (l.narrow) f(RmsNormTypes<uint16_t, float, kRmsNormNarrowPer>{});
    else f(RmsNormTypes<uint16_t, float, kRmsNormWidePer>{});
  } else {
    if (l.narrow) f(RmsNormTypes<uint16_t, uint16_t, kRmsNormNarrowPer>{});
    else f(RmsNormTypes<uint16_t, uint16_t, kRmsNormWidePer>{});
  }
}

inline int64_t rmsnorm_reduce_blocks(int64_t cols) { return (cols + kRmsNormReduceThreads - 1) / kRmsNormReduceThreads; }

}  // namespace exatrain::kernels
