#include "trainer/optim/distributed_optimizer.h"

#include <ATen/ATen.h>

#include <cmath>

#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"
#include "trainer/parallel/comm.h"

namespace exatrain {

DistributedOptimizer::DistributedOptimizer(const Exaone4Model& model, const OptimizerConfig& config,
                                           OptimizerGroups groups, int zero_stage, bool sequence_parallel,
                                           GradReduceOptions reduce)
    : model_(model), config_(config), groups_(groups), zero_(zero_stage), sequence_parallel_(sequence_parallel) {
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

  // Which elements this rank counts in the global norm: those of parameters whose copy here is
  // the canonical one (Exaone4Model::canonical: a TP shard once per replica group, a replicated
  // parameter on TP rank 0, a tied embedding on the first stage).
  const at::TensorOptions fp32 = at::TensorOptions().dtype(at::kFloat).device(model.device());  // the bucket lives with the parameters
  at::Tensor mask = at::zeros({padded_}, fp32);
  for (size_t i = 0; i < params.size(); ++i)
    if (offsets_[i] >= 0 && model.canonical(i)) mask.narrow(0, offsets_[i], params[i].numel()).fill_(1);
  owned_mask_ = mask.narrow(0, lo_, hi_ - lo_).clone();

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
    segment_decay_.push_back(applies_weight_decay(model.specs()[i], config_));
    // zero 1: each DP rank stores its own slice; zero 0: every DP rank holds everything, DP rank 0 stores it.
    segment_canonical_.push_back(model.canonical(i) && (zero_ == 1 || dp_rank == 0));
    steps_.push_back(at::zeros({}, fp32));
  }
  master_ = flat.narrow(0, lo_, hi_ - lo_).clone();
  exp_avg_ = at::zeros_like(master_);
  exp_avg_sq_ = at::zeros_like(master_);
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
  const double local = contributes ? std::pow((grad_ * owned_mask_).norm().item<double>(), 2) : 0.0;
  at::Tensor sum_sq = at::full({1}, local, at::kDouble);
  if (groups_.world) groups_.world->all_reduce(sum_sq);
  const double norm = std::sqrt(sum_sq.item<double>());
  if (max_norm > 0 && norm > max_norm) grad_.mul_(max_norm / (norm + 1e-6));
  return norm;
}

void DistributedOptimizer::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_count_;
  for (const bool decayed : {true, false}) {
    std::vector<at::Tensor> p, g, m, v, s;
    for (size_t k = 0; k < segments_.size(); ++k) {
      if (segment_decay_[k] != decayed) continue;
      const Segment& seg = segments_[k];
      p.push_back(master_.narrow(0, seg.slice_offset, seg.length));
      g.push_back(grad_.narrow(0, seg.slice_offset, seg.length));
      m.push_back(exp_avg_.narrow(0, seg.slice_offset, seg.length));
      v.push_back(exp_avg_sq_.narrow(0, seg.slice_offset, seg.length));
      s.push_back(steps_[k]);
    }
    if (p.empty()) continue;
    at::_foreach_add_(s, 1);
    at::_fused_adamw_(p, g, m, v, /*max_exp_avg_sqs=*/{}, s, lr, config_.beta1, config_.beta2,
                      decayed ? config_.weight_decay : 0.0, config_.eps, /*amsgrad=*/false, /*maximize=*/false);
  }
  copy_master_to_params();
}

void DistributedOptimizer::copy_master_to_params() {
  at::NoGradGuard no_grad;
  // Bring the model's parameters up to date from the (gathered) master weights.
  at::Tensor full = master_;
  const int dp = groups_.dp ? groups_.dp->size() : 1;
  if (zero_ == 1 && dp > 1) full = groups_.dp->all_gather(master_, 0);
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

void DistributedOptimizer::set_step_count(int64_t steps) {
  step_count_ = steps;
  for (auto& s : steps_) s.fill_(static_cast<double>(steps));
}

}  // namespace exatrain
