#include "trainer/optim/distributed_optimizer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>

#if defined(EXATRAIN_HAVE_CUDA)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "kernels/adamw.h"
#include "kernels/ops.h"

#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"
#include "trainer/parallel/comm.h"

namespace exatrain {

DistributedOptimizer::DistributedOptimizer(const Exaone4Model& model, const OptimizerConfig& config,
                                           OptimizerGroups groups, int zero_stage, bool sequence_parallel,
                                           GradReduceOptions reduce, at::ScalarType weights)
    : model_(model), config_(config), groups_(groups), zero_(zero_stage), sequence_parallel_(sequence_parallel),
      weights_(weights) {
  EXATRAIN_CHECK(weights_ == at::kFloat || weights_ == at::kBFloat16, "internal: weights held in fp32 or bf16, not {}",
                 c10::toString(weights_));
  const auto& params = model.params();
  // Only trainable parameters have a place in the flat buffers (gradients, master weights,
  // moments); frozen ones (LoRA's base, train.freeze) get -1 and cost nothing here.
  for (size_t i = 0; i < params.size(); ++i) {
    const bool trainable = model.specs()[i].trainable;
    offsets_.push_back(trainable ? total_ : -1);
    if (trainable) total_ += params[i].numel();
  }
  const int dp = groups_.dp ? groups_.dp->size() : 1, dp_rank = groups_.dp ? groups_.dp->rank() : 0;
  padded_ = (total_ + dp - 1) / dp * dp;
  if (zero_ == 1) {
    lo_ = padded_ / dp * dp_rank;
    hi_ = lo_ + padded_ / dp;
  } else {
    lo_ = 0;
    hi_ = padded_;
  }

  const at::TensorOptions fp32 = at::TensorOptions().dtype(at::kFloat).device(model.device());  // the bucket lives with the parameters
  at::Tensor flat = at::zeros({padded_}, fp32);
  for (size_t i = 0; i < params.size(); ++i) {
    if (offsets_[i] < 0) {
      frozen_.push_back(FrozenParam{i, model.canonical(i) && dp_rank == 0});
      continue;
    }
    flat.narrow(0, offsets_[i], params[i].numel()).copy_(params[i].detach().reshape({-1}));
    const int64_t a = std::max(offsets_[i], lo_), b = std::min(offsets_[i] + params[i].numel(), hi_);
    if (a >= b) continue;
    segments_.push_back(Segment{i, a - offsets_[i], a - lo_, b - a});
    // Counted in the global norm: elements of parameters whose copy here is the canonical one
    // (Exaone4Model::canonical: a TP shard once per replica group, a replicated parameter on TP
    // rank 0, a tied embedding on the first stage).
    segment_in_norm_.push_back(model.canonical(i));
    // zero 1: each DP rank stores its own slice; zero 0: every DP rank holds everything, DP rank 0 stores it.
    segment_canonical_.push_back(model.canonical(i) && (zero_ == 1 || dp_rank == 0));
    // The AdamW kernel's runs: consecutive segments with one weight decay make one run, except
    // when the kernel writes bf16 weights straight into the parameters (one run per parameter).
    const double decay = applies_weight_decay(model.specs()[i], config_) ? config_.weight_decay : 0.0;
    const bool per_param = weights_ == at::kBFloat16 && !gathers();
    if (!per_param && !runs_.empty() && runs_.back().weight_decay == decay &&
        runs_.back().begin + runs_.back().length == a - lo_)
      runs_.back().length += b - a;
    else
      runs_.push_back(kernels::AdamWRun{a - lo_, b - a, decay, nullptr});
  }
  master_ = flat.narrow(0, lo_, hi_ - lo_).clone();
  flat = at::Tensor();
  // fp32 weights that are not all-gathered: the parameters become views of the master weights
  // (set_data swaps the storage under every handle of a parameter, as hold_weights_in does), so
  // the update writes them in place and no second fp32 copy exists: 16 bytes per trained element
  // instead of 20.
  if (aliases_params()) {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i)
      if (offsets_[i] >= 0) {
        EXATRAIN_CHECK(params[i].is_contiguous(), "internal: parameter '{}' is not contiguous", model.specs()[i].name);
        params[i].set_data(master_.narrow(0, offsets_[i] - lo_, params[i].numel()).view(params[i].sizes()));
      }
  }
  exp_avg_ = at::zeros_like(master_);
  exp_avg_sq_ = at::zeros_like(master_);
  // bf16 weights under ZeRO-1: the kernel writes the owned slice's bf16 copy, which is all-gathered
  // (half the bytes of fp32) and copied into the parameters. Without ZeRO-1 it writes the bf16
  // parameters themselves (step()), with no copy at all.
  if (weights_ == at::kBFloat16 && gathers()) {
    weights_copy_ = master_.to(at::kBFloat16);
    auto* bits = reinterpret_cast<uint16_t*>(weights_copy_.mutable_data_ptr<at::BFloat16>());
    for (auto& run : runs_) run.out = bits + run.begin;
  }
  const GradReduceGroups reduce_groups{groups_.tp_gradients ? groups_.tp_gradients : groups_.tp,
                                       model.groups().kv_replicas, groups_.dp, groups_.tied_embedding};
  buckets_ = std::make_unique<GradientBuckets>(model, reduce_groups, sequence_parallel_, offsets_, padded_,
                                               zero_ == 1 && dp > 1, reduce);
}

DistributedOptimizer::~DistributedOptimizer() = default;

void DistributedOptimizer::arm_gradient_reduction() { buckets_->arm(); }
bool DistributedOptimizer::local_gradients_finite() const { return buckets_->local_finite(); }
double DistributedOptimizer::exposed_comm_seconds() const { return buckets_->exposed_seconds(); }

double DistributedOptimizer::reduce_gradients(double max_norm) {
  at::NoGradGuard no_grad;
  grad_ = buckets_->finish();
  const int dp = groups_.dp ? groups_.dp->size() : 1;
  if (dp > 1) grad_.div_(dp);  // gradients of the mean loss over the global batch

  // Sum of squares of the elements this rank owns; with zero 0 every DP rank holds the same
  // gradients, so only DP rank 0 contributes.
  const bool contributes = zero_ == 1 || !groups_.dp || groups_.dp->rank() == 0;
  std::vector<at::Tensor> counted;
  if (contributes)
    for (size_t k = 0; k < segments_.size(); ++k)
      if (segment_in_norm_[k]) counted.push_back(grad_.narrow(0, segments_[k].slice_offset, segments_[k].length));
  const double local =
      counted.empty() ? 0.0 : at::stack(at::_foreach_norm(counted)).to(at::kDouble).pow(2).sum().item<double>();
  at::Tensor sum_sq = at::full({1}, local, at::kDouble);
  if (groups_.world) groups_.world->all_reduce(sum_sq);
  const double norm = std::sqrt(sum_sq.item<double>());
  if (max_norm > 0 && norm > max_norm) grad_.mul_(max_norm / (norm + 1e-6));
  return norm;
}

void DistributedOptimizer::zero_grad() { buckets_->zero(); }

at::Tensor DistributedOptimizer::gradient(size_t param) const { return buckets_->gradient(param); }

void DistributedOptimizer::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_count_;
  const kernels::AdamWStep s = kernels::AdamWStep::of(lr, config_.beta1, config_.beta2, config_.eps, step_count_);
  float *p = master_.mutable_data_ptr<float>(), *m = exp_avg_.mutable_data_ptr<float>();
  float* v = exp_avg_sq_.mutable_data_ptr<float>();
  const float* g = grad_.const_data_ptr<float>();
  const bool into_params = weights_ == at::kBFloat16 && !gathers();
  if (into_params) {
    // The runs are the segments, one per parameter: point each at its parameter's bf16 storage
    // (looked up every step: hold_weights_in and checkpoint loads swap the storage).
    const auto& params = model_.params();
    for (size_t k = 0; k < segments_.size(); ++k) {
      const at::Tensor& w = params[segments_[k].param];
      EXATRAIN_CHECK(w.scalar_type() == at::kBFloat16 && w.is_contiguous(),
                     "internal: '{}' is not a contiguous bf16 tensor under train.weights: bf16",
                     model_.specs()[segments_[k].param].name);
      runs_[k].out = reinterpret_cast<uint16_t*>(w.data_ptr<at::BFloat16>()) + segments_[k].param_offset;
    }
  }
  const auto runs = static_cast<int64_t>(runs_.size());
  if (master_.is_cuda()) {
#if defined(EXATRAIN_HAVE_CUDA)
    const c10::cuda::CUDAGuard guard(master_.device());
    // The CUDA kernel once it passed its check on this device (ops::adamw_cuda_trusted), else
    // ATen's _fused_adamw_ over the same runs (it also writes their bf16 weights).
    if (ops::adamw_cuda_trusted(master_.device())) {
      const int err = kernels::adamw_step_cuda(runs_.data(), runs, p, g, m, v, s,
                                               c10::cuda::getCurrentCUDAStream(master_.get_device()).stream());
      EXATRAIN_CHECK(err == 0, "AdamW: the CUDA kernel failed to launch (cudaError {})", err);
    } else {
      ops::adamw_step_reference(runs_.data(), runs, master_, grad_, exp_avg_, exp_avg_sq_, lr, config_.beta1,
                                config_.beta2, config_.eps, step_count_);
    }
#else
    fail("AdamW: parameters on a CUDA device in a build without CUDA");
#endif
  } else {
    // Over ATen's intra-op threads in pieces of 64 Ki elements (a piece crosses runs freely).
    at::parallel_for(0, master_.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
      kernels::adamw_step_cpu(runs_.data(), runs, p, g, m, v, s, begin, end);
    });
  }
  if (!into_params && !aliases_params()) publish_weights();
}

void DistributedOptimizer::copy_master_to_params() {
  if (aliases_params()) return;  // they are the master weights
  at::NoGradGuard no_grad;
  if (weights_copy_.defined()) weights_copy_.copy_(master_);  // round to nearest even, as the kernel
  publish_weights();
}

void DistributedOptimizer::publish_weights() {
  // Bring the model's parameters up to date from the (gathered) master weights, or their bf16
  // copy when the weights are held in bf16.
  at::Tensor full = weights_copy_.defined() ? weights_copy_ : master_;
  const int dp = groups_.dp ? groups_.dp->size() : 1;
  if (zero_ == 1 && dp > 1) full = groups_.dp->all_gather(full, 0);
  const int64_t base = full.numel() == padded_ ? 0 : lo_;  // where `full` starts in the bucket
  const auto& params = model_.params();
  for (size_t i = 0; i < params.size(); ++i)
    if (offsets_[i] >= 0) params[i].detach().view({-1}).copy_(full.narrow(0, offsets_[i] - base, params[i].numel()));
}

std::vector<DistributedOptimizer::StateSegment> DistributedOptimizer::state_segments() const {
  std::vector<StateSegment> out;
  for (size_t k = 0; k < segments_.size(); ++k) {
    const Segment& seg = segments_[k];
    out.push_back(StateSegment{seg.param, seg.param_offset, seg.length, master_.narrow(0, seg.slice_offset, seg.length),
                               exp_avg_.narrow(0, seg.slice_offset, seg.length),
                               exp_avg_sq_.narrow(0, seg.slice_offset, seg.length), segment_canonical_[k]});
  }
  return out;
}

// Counted apart from the per-segment step tensors: a rank may hold no trainable segment (a
// stage that train.freeze froze whole), and rank 0's count is the one a checkpoint records.
int64_t DistributedOptimizer::step_count() const { return step_count_; }

void DistributedOptimizer::set_step_count(int64_t steps) { step_count_ = steps; }

}  // namespace exatrain
