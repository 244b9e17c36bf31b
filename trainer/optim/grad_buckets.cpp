#include "trainer/optim/grad_buckets.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>
#include <cstdlib>
#include <limits>

#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"

namespace exatrain {

namespace {

// Runs after AccumulateGrad has added a backward's gradient into the parameter's .grad. Kept in
// the parameter's autograd metadata (not on the AccumulateGrad node, which autograd may rebuild
// between steps), so it lives as long as the parameter or until removed.
struct BucketHook : torch::autograd::PostAccumulateGradHook {
  BucketHook(GradientBuckets* owner, size_t param) : owner(owner), param(param) {}
  void operator()(const torch::autograd::Variable&) override { owner->on_gradient(param); }
  GradientBuckets* owner;
  size_t param;
};

}  // namespace

GradReduceOptions GradReduceOptions::of(const ParallelConfig& parallel) {
  GradReduceOptions o;
  o.overlap = parallel.grad_overlap;
  o.bucket_bytes = std::max<int64_t>(4, static_cast<int64_t>(parallel.grad_bucket_mb * (1 << 20)));
  return o;
}

GradientBuckets::GradientBuckets(const Exaone4Model& model, GradReduceGroups groups, bool sequence_parallel,
                                 std::vector<int64_t> offsets, int64_t padded, bool zero1, GradReduceOptions options)
    : params_(model.params()), groups_(groups), offsets_(std::move(offsets)), padded_(padded), zero1_(zero1),
      options_(options) {
  const auto& specs = model.specs();
  const int dp = groups_.dp ? groups_.dp->size() : 1, dp_rank = groups_.dp ? groups_.dp->rank() : 0;
  lo_ = zero1_ ? padded_ / dp * dp_rank : 0;
  hi_ = zero1_ ? lo_ + padded_ / dp : padded_;
  for (size_t i = 0; i < params_.size(); ++i) {
    names_.push_back(specs[i].name);
    // Which exchange comes before the DP reduction. One at most per parameter: two in a row
    // would have to start one after the other's completion, in an order that could differ
    // between ranks.
    std::vector<const Communicator*> needs;
    if (groups_.tied_embedding && specs[i].kind == ParamKind::Embedding) needs.push_back(groups_.tied_embedding);
    const TpGradReduce reduce = specs[i].tp_grad_reduce;
    if (groups_.tp && (reduce == TpGradReduce::Sum || (sequence_parallel && reduce == TpGradReduce::SumIfSequenceParallel)))
      needs.push_back(groups_.tp);
    if (model.shards()[i].replicas > 1 && groups_.kv_replicas) needs.push_back(groups_.kv_replicas);
    EXATRAIN_CHECK(needs.size() <= 1, "internal: the gradient of '{}' needs {} exchanges before the DP reduction; "
                   "GradientBuckets supports one", specs[i].name, needs.size());
    exchange_.push_back(needs.empty() ? nullptr : needs[0]);
  }
  // Buckets in reverse model order; each is a contiguous range of the flat buffer (offsets
  // increase with i), the first one ends at `padded` (it takes the padding).
  bucket_of_.assign(params_.size(), 0);
  for (size_t k = params_.size(); k-- > 0;) {
    if (offsets_[k] < 0) continue;  // frozen: no gradient
    if (buckets_.empty() || (buckets_.back().end - buckets_.back().begin) * 4 >= options_.bucket_bytes) {
      buckets_.emplace_back();
      buckets_.back().end = buckets_.size() == 1 ? padded_ : offsets_[k] + params_[k].numel();
    }
    Bucket& b = buckets_.back();
    b.params.push_back(k);
    b.begin = offsets_[k];
    bucket_of_[k] = buckets_.size() - 1;
  }
  for (Bucket& b : buckets_) b.pending = static_cast<int>(b.params.size());
  const at::TensorOptions fp32 = at::TensorOptions().dtype(at::kFloat).device(model.device());
  flat_ = at::zeros({padded_}, fp32);
  owned_ = zero1_ && dp > 1 ? at::zeros({hi_ - lo_}, fp32) : flat_.narrow(0, lo_, hi_ - lo_);
  for (Bucket& b : buckets_) {
    b.flat_view = flat_.narrow(0, b.begin, b.end - b.begin);
    const int64_t a = std::clamp(b.begin, lo_, hi_), z = std::clamp(b.end, lo_, hi_);
    b.owned_view = owned_.narrow(0, a - lo_, z - a);
  }
  // Every backward (every micro-batch, either path) adds its gradients into the flat buffer.
  for (size_t i = 0; i < params_.size(); ++i)
    if (offsets_[i] >= 0) torch::autograd::impl::set_post_acc_grad_hooks(params_[i], std::make_unique<BucketHook>(this, i));
}

GradientBuckets::~GradientBuckets() {
  for (size_t i = 0; i < params_.size(); ++i)
    if (offsets_[i] >= 0) torch::autograd::impl::set_post_acc_grad_hooks(params_[i], nullptr);
}

void GradientBuckets::zero() { flat_.zero_(); }

at::Tensor GradientBuckets::gradient(size_t param) const {
  EXATRAIN_CHECK(offsets_[param] >= 0, "internal: '{}' is frozen and has no gradient", names_[param]);
  return flat_.narrow(0, offsets_[param], params_[param].numel());
}

std::string GradientBuckets::describe() const {
  return fmt::format("{} gradient bucket{} of up to {:.2f} MiB, DP reduction {}", buckets_.size(),
                     buckets_.size() == 1 ? "" : "s", static_cast<double>(options_.bucket_bytes) / (1 << 20),
                     options_.overlap ? "overlapped with backward" : "after backward (parallel.grad_overlap: false)");
}

void GradientBuckets::arm() {
  if (!options_.overlap) return;
  armed_ = true;
}

void GradientBuckets::on_gradient(size_t param) {
  {
    // The parameter's .grad holds this backward's gradient (in the parameter's dtype): add it to
    // the fp32 flat buffer and let it go, so no gradient outlives the backward that made it.
    at::NoGradGuard no_grad;
    at::Tensor& g = params_[param].mutable_grad();
    gradient(param).add_(g.reshape({-1}));
    g = at::Tensor();
  }
  if (!armed_) return;  // an earlier micro-batch: the gradient is still accumulating
  Bucket& b = buckets_[bucket_of_[param]];
  // AccumulateGrad runs once per backward for each parameter; a second gradient after the
  // bucket started would be lost from the reduction.
  EXATRAIN_CHECK(b.phase == Phase::Filling, "internal: the gradient of '{}' arrived after its bucket started reducing",
                 names_[param]);
  if (--b.pending == 0) b.phase = Phase::Ready;
  progress();
}

void GradientBuckets::progress() {
  at::NoGradGuard no_grad;
  while (next_exchange_ < buckets_.size() && buckets_[next_exchange_].phase == Phase::Ready)
    start_exchanges(buckets_[next_exchange_++]);
  while (next_reduction_ < next_exchange_) {
    Bucket& b = buckets_[next_reduction_];
    bool exchanged = true;
    for (auto& e : b.exchanges) exchanged = e.test() && exchanged;
    if (!exchanged) break;
    start_reduction(b);
    ++next_reduction_;
  }
  for (size_t k = 0; k < next_reduction_; ++k)
    for (auto& r : buckets_[k].reductions) r.test();
}

const Communicator* GradientBuckets::exchange_group(size_t i) const { return exchange_[i]; }

void GradientBuckets::start_exchanges(Bucket& b) {
  // The accumulated gradients in the flat buffer (a parameter unused in this step has zeros
  // there, exchanged as such).
  std::vector<at::Tensor> grads;
  for (size_t i : b.params) grads.push_back(gradient(i));
  // This rank's own gradients, before anything from another rank is added to them (a NaN is
  // traced to the rank that made it). The max-abs norm: one read, and it cannot overflow.
  at::Tensor finite = at::stack(at::_foreach_norm(grads, std::numeric_limits<double>::infinity())).isfinite().all();
  finite_ = finite_.defined() ? finite_.logical_and(finite) : finite;
  for (size_t k = 0; k < b.params.size(); ++k)
    if (const Communicator* group = exchange_group(b.params[k])) b.exchanges.push_back(group->start_all_reduce(grads[k]));
  b.phase = Phase::Exchanging;
}

void GradientBuckets::start_reduction(Bucket& b) {
  b.exchanges.clear();
  b.phase = Phase::Reducing;
  const Communicator* dp = groups_.dp;
  if (!dp || dp->size() == 1) return;
  if (!zero1_) {
    b.reductions.push_back(dp->start_all_reduce(b.flat_view));
    return;
  }
  std::vector<int64_t> counts;
  const int64_t share = padded_ / dp->size();
  for (int r = 0; r < dp->size(); ++r)
    counts.push_back(std::max<int64_t>(0, std::min(b.end, share * (r + 1)) - std::max(b.begin, share * r)));
  b.reductions.push_back(dp->start_reduce_scatter(b.flat_view, b.owned_view, counts));
}

at::Tensor GradientBuckets::finish() {
  const auto start = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  started_in_backward_ = next_reduction_;
  // Whatever backward did not complete (parameters without a gradient this step; everything on
  // the blocking path), in bucket order.
  for (Bucket& b : buckets_)
    if (b.phase == Phase::Filling) b.phase = Phase::Ready;
  while (next_exchange_ < buckets_.size()) start_exchanges(buckets_[next_exchange_++]);
  while (next_reduction_ < buckets_.size()) {
    Bucket& b = buckets_[next_reduction_++];
    for (auto& e : b.exchanges) e.wait();
    start_reduction(b);
  }
  for (Bucket& b : buckets_) {
    for (auto& r : b.reductions) r.wait();
    b.reductions.clear();
    b.phase = Phase::Filling;
    b.pending = static_cast<int>(b.params.size());
  }
  local_finite_ = !finite_.defined() || finite_.item<bool>();
  finite_ = at::Tensor();
  armed_ = false;
  next_exchange_ = next_reduction_ = 0;
  exposed_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return owned_;
}

}  // namespace exatrain
