// The gradient reduction of DistributedOptimizer, bucket by bucket, overlapped with backward
// (as PyTorch DDP's reducer and Megatron-LM's overlapped gradient reduce):
//
//   parameters in reverse model order (the order backward completes them) -> buckets of about
//   `bucket_bytes`, each a contiguous range of the flat fp32 gradient buffer. The flat buffer is
//   where gradients accumulate (Megatron-LM's main_grad): a hook after each parameter's
//   AccumulateGrad adds the parameter's .grad (fp32 or bf16, the parameter's dtype) into it and
//   frees .grad, every backward. So no per-parameter gradient outlives its backward: 4 bytes per
//   trained element in all, whatever dtype the weights are held in. During the step's last
//   backward (the last micro-batch: earlier ones only accumulate), the same hook counts the
//   parameter; when a bucket is complete:
//     1. check this rank's own gradients of the bucket (finite?) before any exchange;
//     2. start the exchanges its specs ask for: the tied embedding's sum over the first and last
//        stage, TP sums (q_norm/k_norm; norms under sequence parallelism), replicated KV heads,
//        in place on the flat buffer;
//     3. when those are done, start the DP reduction of its range: all-reduce (zero 0) or
//        reduce-scatter into the owned slice (zero 1; a bucket may straddle the ranks' slices,
//        so the parts can be uneven).
//   Steps 2 and 3 start strictly in bucket order, so every rank of a group starts its
//   collectives in the same sequence whatever order its hooks fire in. The exchanges are
//   non-blocking; each hook drives them (MPI progresses non-blocking collectives only inside MPI
//   calls). finish() starts whatever backward did not complete (unused parameters; everything on
//   the blocking path) and waits.
//
// The blocking path (overlap off) runs the same buckets, in the same order, after backward: the
// same arithmetic, so both paths give bit-identical results, which the tests use as a judge.
#pragma once

#include "trainer/core/config.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trainer/parallel/comm.h"

namespace exatrain {

class Exaone4Model;

struct GradReduceGroups {
  // For the TP sums of gradients: a group of the same ranks as the model's TP group but its own
  // communicator, so these sums, started from hooks, never interleave with the model's TP
  // collectives in backward (a communicator's collectives must start in one order everywhere).
  const Communicator* tp = nullptr;
  const Communicator* kv_replicas = nullptr;
  const Communicator* dp = nullptr;
  const Communicator* tied_embedding = nullptr;  // set on the first and last stage only
};

struct GradReduceOptions {
  bool overlap = true;                    // false: the blocking path (for measurement)
  int64_t bucket_bytes = int64_t{25} << 20;  // PyTorch DDP's default
  // parallel.grad_overlap and parallel.grad_bucket_mb.
  static GradReduceOptions of(const ParallelConfig& parallel);
};

class GradientBuckets {
 public:
  // `offsets[i]`: parameter i's first element in the flat buffer of `padded` elements (a
  // multiple of the DP size), -1 for a frozen parameter (no gradient, not reduced); with
  // `zero1`, DP rank r owns [r, r + 1) * padded / dp.
  GradientBuckets(const Exaone4Model& model, GradReduceGroups groups, bool sequence_parallel,
                  std::vector<int64_t> offsets, int64_t padded, bool zero1, GradReduceOptions options);
  ~GradientBuckets();
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  // Before a step's first backward: the accumulated gradients back to zero.
  void zero();
  // Parameter i's accumulated gradient: a [numel] view of the flat buffer (a frozen one has none).
  at::Tensor gradient(size_t param) const;
  // The next backward is the step's last: its hooks start the buckets (overlap only).
  void arm();
  // After backward: starts what has not started, waits for all of it. Returns this rank's owned
  // slice of the gradients summed over DP (not yet divided by dp), a view of a buffer reused
  // every step.
  at::Tensor finish();

  // Valid after finish(): whether every gradient of this rank was finite before any exchange.
  bool local_finite() const { return local_finite_; }
  // The wall time of the last finish(): the host waiting for gradient reductions after backward.
  double exposed_seconds() const { return exposed_seconds_; }
  size_t bucket_count() const { return buckets_.size(); }
  // Of the last finish(): the buckets whose DP reduction had started before it (during backward).
  size_t started_in_backward() const { return started_in_backward_; }
  const GradReduceOptions& options() const { return options_; }
  std::string describe() const;

  void on_gradient(size_t param);  // the hook (public for the hook object only)

 private:
  enum class Phase { Filling, Ready, Exchanging, Reducing };
  struct Bucket {
    std::vector<size_t> params;  // reverse model order
    int64_t begin = 0, end = 0;  // range in the flat buffer
    int pending = 0;             // gradients not yet complete in this backward
    Phase phase = Phase::Filling;
    std::vector<PendingCollective> exchanges, reductions;
    at::Tensor flat_view, owned_view;  // the DP operation's input and (zero 1) output
  };
  void progress();
  void start_exchanges(Bucket& b);
  void start_reduction(Bucket& b);
  // The one exchange parameter i's gradient needs before the DP reduction, or null.
  const Communicator* exchange_group(size_t i) const;

  std::vector<at::Tensor> params_;  // handles: the hooks are removed even if the model goes first
  std::vector<std::string> names_;
  std::vector<const Communicator*> exchange_;  // per parameter
  GradReduceGroups groups_;
  std::vector<int64_t> offsets_;
  int64_t padded_ = 0, lo_ = 0, hi_ = 0;
  bool zero1_ = false;
  GradReduceOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // per parameter
  at::Tensor flat_, owned_;       // [padded] and the owned slice [hi - lo]
  at::Tensor finite_;             // bool scalar on the parameters' device, this step's checks
  bool armed_ = false, local_finite_ = true;
  size_t next_exchange_ = 0, next_reduction_ = 0;  // buckets started so far, in order
  double exposed_seconds_ = 0;
  size_t started_in_backward_ = 0;
};

}  // namespace exatrain
