// Tensor-parallel regions as paired autograd operators (Megatron's mappings). Each does nothing
// when the group has one rank.
//   copy_to_tp:     forward identity,             backward all-reduce   (enter a TP region)
//   reduce_from_tp: forward all-reduce,           backward identity     (leave a row-parallel layer)
//   gather_from_tp: forward all-gather(dim),      backward take own part
//   scatter_to_tp:  forward take own part(dim),   backward all-gather
// and, for sequence parallelism (activations outside the TP regions split along the sequence):
//   gather_from_sp:       forward all-gather(dim),      backward reduce-scatter(dim)  (enter)
//   reduce_scatter_to_sp: forward reduce-scatter(dim),  backward all-gather(dim)      (leave)
// and the vocab-parallel cross-entropy, which never gathers full-vocabulary logits.
#pragma once

#include <ATen/core/Tensor.h>

#include "kernels/ops.h"

namespace exatrain {

class Communicator;

at::Tensor copy_to_tp(const at::Tensor& x, const Communicator& tp);
at::Tensor reduce_from_tp(const at::Tensor& x, const Communicator& tp);
at::Tensor gather_from_tp(const at::Tensor& x, const Communicator& tp, int64_t dim);
at::Tensor scatter_to_tp(const at::Tensor& x, const Communicator& tp, int64_t dim);

at::Tensor gather_from_sp(const at::Tensor& x, const Communicator& tp, int64_t dim);
at::Tensor reduce_scatter_to_sp(const at::Tensor& x, const Communicator& tp, int64_t dim);

// Cross-entropy of each row [rows]: `local_logits` [rows, vocab/tp] hold this rank's vocabulary
// slice [vocab_start, vocab_start + vocab/tp); `targets` [rows] are global ids (-100: ignored,
// loss 0). fp32. Three all-reduces of [rows] either way (max, sum of exp, target logit):
//   reference: Megatron's, in ATen (the judge; keeps an fp32 softmax [rows, vocab/tp]);
//   cpu, cuda: ops::cross_entropy, the fused kernels (keep the logits and two floats per row).
at::Tensor vocab_parallel_cross_entropy(const at::Tensor& local_logits, const at::Tensor& targets,
                                        int64_t vocab_start, const Communicator& tp,
                                        ops::Impl impl = ops::Impl::Reference);

}  // namespace exatrain
