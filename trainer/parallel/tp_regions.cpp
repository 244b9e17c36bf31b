#include "trainer/parallel/tp_regions.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "trainer/parallel/comm.h"

namespace exatrain {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const Communicator* comm_of(AutogradContext* ctx) {
  return reinterpret_cast<const Communicator*>(ctx->saved_data["comm"].toInt());
}
int64_t address(const Communicator& c) { return reinterpret_cast<int64_t>(&c); }

struct CopyToTp : torch::autograd::Function<CopyToTp> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t comm) {
    ctx->saved_data["comm"] = comm;
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    at::Tensor grad = g[0].contiguous().clone();
    comm_of(ctx)->all_reduce(grad);
    return {grad, at::Tensor()};
  }
};

struct ReduceFromTp : torch::autograd::Function<ReduceFromTp> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x, int64_t comm) {
    at::Tensor out = x.contiguous().clone();
    reinterpret_cast<const Communicator*>(comm)->all_reduce(out);
    return out;
  }
  static variable_list backward(AutogradContext*, variable_list g) { return {g[0], at::Tensor()}; }
};

at::Tensor own_part(const at::Tensor& x, const Communicator& c, int64_t dim) {
  return x.chunk(c.size(), dim)[static_cast<size_t>(c.rank())].contiguous();
}

struct GatherFromTp : torch::autograd::Function<GatherFromTp> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t comm, int64_t dim) {
    ctx->saved_data["comm"] = comm;
    ctx->saved_data["dim"] = dim;
    return reinterpret_cast<const Communicator*>(comm)->all_gather(x, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {own_part(g[0], *comm_of(ctx), ctx->saved_data["dim"].toInt()), at::Tensor(), at::Tensor()};
  }
};

struct ScatterToTp : torch::autograd::Function<ScatterToTp> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t comm, int64_t dim) {
    ctx->saved_data["comm"] = comm;
    ctx->saved_data["dim"] = dim;
    return own_part(x, *reinterpret_cast<const Communicator*>(comm), dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {comm_of(ctx)->all_gather(g[0], ctx->saved_data["dim"].toInt()), at::Tensor(), at::Tensor()};
  }
};

struct GatherFromSp : torch::autograd::Function<GatherFromSp> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t comm, int64_t dim) {
    ctx->saved_data["comm"] = comm;
    ctx->saved_data["dim"] = dim;
    return reinterpret_cast<const Communicator*>(comm)->all_gather(x, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {comm_of(ctx)->reduce_scatter(g[0], ctx->saved_data["dim"].toInt()), at::Tensor(), at::Tensor()};
  }
};

struct ReduceScatterToSp : torch::autograd::Function<ReduceScatterToSp> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t comm, int64_t dim) {
    ctx->saved_data["comm"] = comm;
    ctx->saved_data["dim"] = dim;
    return reinterpret_cast<const Communicator*>(comm)->reduce_scatter(x, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {comm_of(ctx)->all_gather(g[0].contiguous(), ctx->saved_data["dim"].toInt()), at::Tensor(), at::Tensor()};
  }
};

// loss_i = log(sum_v exp(z_iv - max_i)) - (z_i,target - max_i), reduced over the vocabulary
// slices with three all-reduces of [rows] (max, sum of exp, target logit).
struct VocabParallelCrossEntropy : torch::autograd::Function<VocabParallelCrossEntropy> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits_in, const at::Tensor& targets,
                            int64_t vocab_start, int64_t comm_address) {
    const auto& comm = *reinterpret_cast<const Communicator*>(comm_address);
    at::Tensor logits = logits_in.to(at::kFloat);  // [rows, V/tp]
    const int64_t local_vocab = logits.size(1);
    at::Tensor max = std::get<0>(logits.max(1));  // [rows]
    comm.all_reduce(max, ReduceOp::Max);
    at::Tensor shifted = logits - max.unsqueeze(1);
    at::Tensor exp = shifted.exp();
    at::Tensor sum_exp = exp.sum(1);
    comm.all_reduce(sum_exp);
    at::Tensor local_target = targets - vocab_start;
    at::Tensor mine = (local_target >= 0).logical_and(local_target < local_vocab);
    at::Tensor safe_target = at::where(mine, local_target, at::zeros_like(local_target));
    at::Tensor target_logit = shifted.gather(1, safe_target.unsqueeze(1)).squeeze(1) * mine.to(at::kFloat);
    comm.all_reduce(target_logit);
    // An ignored token (target -100, on no rank) has loss 0 and no gradient, as on one rank.
    const at::Tensor counted = (targets != -100).to(at::kFloat);
    at::Tensor loss = (sum_exp.log() - target_logit) * counted;  // [rows]
    at::Tensor softmax = exp / sum_exp.unsqueeze(1);
    ctx->save_for_backward({softmax, safe_target, mine, counted});
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits_in.scalar_type());
    return loss;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    auto saved = ctx->get_saved_variables();
    at::Tensor grad = saved[0].clone();  // softmax - onehot(target) on the owning rank
    grad.scatter_add_(1, saved[1].unsqueeze(1), -saved[2].to(at::kFloat).unsqueeze(1));
    grad.mul_((g[0] * saved[3]).unsqueeze(1));
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {grad.to(dtype), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor copy_to_tp(const at::Tensor& x, const Communicator& tp) {
  return tp.size() == 1 ? x : CopyToTp::apply(x, address(tp));
}
at::Tensor reduce_from_tp(const at::Tensor& x, const Communicator& tp) {
  return tp.size() == 1 ? x : ReduceFromTp::apply(x, address(tp));
}
at::Tensor gather_from_tp(const at::Tensor& x, const Communicator& tp, int64_t dim) {
  return tp.size() == 1 ? x : GatherFromTp::apply(x, address(tp), dim);
}
at::Tensor scatter_to_tp(const at::Tensor& x, const Communicator& tp, int64_t dim) {
  return tp.size() == 1 ? x : ScatterToTp::apply(x, address(tp), dim);
}

at::Tensor gather_from_sp(const at::Tensor& x, const Communicator& tp, int64_t dim) {
  return tp.size() == 1 ? x : GatherFromSp::apply(x, address(tp), dim);
}
at::Tensor reduce_scatter_to_sp(const at::Tensor& x, const Communicator& tp, int64_t dim) {
  return tp.size() == 1 ? x : ReduceScatterToSp::apply(x, address(tp), dim);
}

at::Tensor vocab_parallel_cross_entropy(const at::Tensor& local_logits, const at::Tensor& targets, int64_t vocab_start,
                                        const Communicator& tp, ops::Impl impl) {
  if (impl == ops::Impl::Reference) return VocabParallelCrossEntropy::apply(local_logits, targets, vocab_start, address(tp));
  // The fused kernels with the same three all-reduces of [rows] fp32 as the reference (so the
  // bytes counted for tp.all_reduce and the cost model's "tp.*" are unchanged): max, then the
  // sums of exp rescaled to it, then the target logits.
  ops::RowAllReduce across;
  if (tp.size() > 1) {
    across.max = [&tp](at::Tensor& t) { tp.all_reduce(t, ReduceOp::Max); };
    across.sum = [&tp](at::Tensor& t) { tp.all_reduce(t); };
  }
  return ops::cross_entropy(local_logits, targets, impl, vocab_start, across);
}

}  // namespace exatrain
