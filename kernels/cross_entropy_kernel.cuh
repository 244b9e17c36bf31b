// The CUDA cross-entropy kernels, written against kernels/simt.h: compiled by nvcc in
// kernels/cross_entropy.cu and by the host compiler over the CPU emulation in
// kernels/cross_entropy_emulated.cpp (so this body runs in CI). One block of kXentThreads
// threads per row (grid.x = rows); T is float or uint16_t (bf16 bits).
#pragma once

#include "kernels/cross_entropy.h"
#include "kernels/simt.h"

namespace exatrain::kernels {

// Forward: each thread folds its strided share of the row into an online-softmax pair (one read
// of each logit, one exp), the block combines the pairs by halving in shared memory (fixed
// order: the result does not depend on timing), thread 0 writes the row's (max, sum) and the
// target's logit.
template <class T>
SIMT_KERNEL void cross_entropy_fwd_kernel(CrossEntropyParams p) {
  const int tid = simt::thread_x(), threads = simt::block_dim_x();
  const int64_t row = simt::block_x();
  const T* z = static_cast<const T*>(p.logits) + row * p.cols;
  float m = -__builtin_huge_valf();
  double s = 0;
  for (int64_t i = tid; i < p.cols; i += threads) xent_push(m, s, xent_load(z, i));
  double* sums = simt::dynamic_shared<double>();                // [threads]
  float* maxes = reinterpret_cast<float*>(sums + threads);      // [threads]
  maxes[tid] = m;
  sums[tid] = s;
  simt::sync_block();
  for (int stride = threads / 2; stride > 0; stride /= 2) {
    if (tid < stride) {
      float mm = maxes[tid];
      double ss = sums[tid];
      xent_merge(mm, ss, maxes[tid + stride], sums[tid + stride]);
      maxes[tid] = mm;
      sums[tid] = ss;
    }
    simt::sync_block();
  }
  if (tid == 0) {
    p.row_max[row] = maxes[0];
    p.row_sum[row] = static_cast<float>(sums[0]);
    const int64_t t = xent_local_target(p.targets[row], p.vocab_start, p.cols);
    p.target_logit[row] = t >= 0 ? xent_load(z, t) : 0.f;
  }
}

// Backward: every thread writes its strided share of the row's gradient; nothing to combine.
template <class T>
SIMT_KERNEL void cross_entropy_bwd_kernel(CrossEntropyParams p) {
  const int tid = simt::thread_x(), threads = simt::block_dim_x();
  const int64_t row = simt::block_x();
  const T* z = static_cast<const T*>(p.logits) + row * p.cols;
  T* dz = static_cast<T*>(p.dlogits) + row * p.cols;
  const int64_t target = p.targets[row];
  const int64_t t = xent_local_target(target, p.vocab_start, p.cols);
  const float max = p.max[row], log_sum = p.log_sum[row];
  const float g = target == kIgnoreTarget ? 0.f : p.grad[row];
  for (int64_t i = tid; i < p.cols; i += threads) xent_store(dz, i, xent_grad(xent_load(z, i), max, log_sum, i == t, g));
}

}  // namespace exatrain::kernels
