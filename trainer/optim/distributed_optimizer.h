// The optimizer of every layout, ZeRO-1 included, in one place (llm.c style):
//
//   gradients -> the tied embedding's sum over its two stages, TP reductions the specs ask for
//   (q_norm/k_norm: sum over TP; with sequence parallelism also the other norms; replicated KV
//   heads: sum over their replicas) -> one flat fp32 buffer -> over DP, in buckets started
//   during backward (grad_buckets.h):
//     zero 0: all-reduce; every rank owns the whole buffer
//     zero 1: reduce-scatter; rank r owns buffer slice r (fp32 master weights and Adam moments
//             only for that slice)
//   -> global gradient norm (each parameter counted once across TP, PP and DP) -> clip
//   -> AdamW on the owned slice (one kernel over every parameter, kernels/adamw.h; with weights
//   held in bf16 it also writes their bf16 copy) -> zero 1: all-gather the parameters (bf16 or
//   fp32, as held) -> copy into the model's parameters.
//
// Bytes per trained element: the weights as held (4 or 2), the fp32 gradient buffer (4; the
// gradients accumulate there, see grad_buckets.h), and on the elements this rank owns the fp32
// master weights and both moments (12), plus with bf16 weights under ZeRO-1 their bf16 copy that
// is all-gathered (2; without ZeRO-1 the kernel writes the bf16 parameters directly). So bf16
// weights without ZeRO-1 take 18 bytes per trained element, Megatron-LM's figure. fp32 weights
// that are not all-gathered are the master weights themselves (the parameters are views of
// them): 16 bytes per trained element.
//
// On one rank this is plain AdamW with global-norm clipping.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "kernels/adamw.h"
#include "trainer/core/config.h"
#include "trainer/optim/grad_buckets.h"

namespace exatrain {

class Communicator;
class Exaone4Model;

struct OptimizerGroups {
  const Communicator* tp = nullptr;
  const Communicator* dp = nullptr;
  const Communicator* world = nullptr;  // for the global norm
  // The TP sums of gradients run on their own communicator of the TP ranks (see
  // GradReduceGroups); null: `tp`, which is right only when nothing else uses `tp` meanwhile.
  const Communicator* tp_gradients = nullptr;
  const Communicator* tied_embedding = nullptr;  // first and last stage with tied embeddings under PP
};

class DistributedOptimizer {
 public:
  DistributedOptimizer(const Exaone4Model& model, const OptimizerConfig& config, OptimizerGroups groups, int zero_stage,
                       bool sequence_parallel = false, GradReduceOptions reduce = {},
                       at::ScalarType weights = at::kFloat);
  ~DistributedOptimizer();

  // Before a step's first backward: the accumulated gradients back to zero.
  void zero_grad();
  // Parameter i's gradient accumulating this step: a [numel] fp32 view (trainable ones only).
  at::Tensor gradient(size_t param) const;
  // Before the step's last backward (the last micro-batch): its gradients start reducing as
  // they complete. Without this call everything reduces in reduce_gradients().
  void arm_gradient_reduction();
  // After backward: reduces the gradients as above and clips them; returns the global norm
  // before clipping.
  double reduce_gradients(double max_norm);
  // After reduce_gradients: were this rank's own gradients finite before any exchange?
  bool local_gradients_finite() const;
  // The host's wait for gradient reductions after backward in the last reduce_gradients.
  double exposed_comm_seconds() const;
  const GradientBuckets& buckets() const { return *buckets_; }
  // Updates the owned slice with learning rate `lr` and brings every parameter up to date.
  void step(double lr);

  // What this rank holds of the optimizer state (the seam to checkpoints): per segment, the
  // parameter, the flat range [param_offset, param_offset + length) of its local shard, and
  // views of the fp32 master weights and both moments for it. `canonical`: this rank stores the
  // segment in a checkpoint (one copy of each element among TP replicas, DP replicas under
  // zero 0 and the tied embedding's two stages).
  struct StateSegment {
    size_t param;
    int64_t param_offset, length;
    at::Tensor master, exp_avg, exp_avg_sq;  // [length] fp32
    bool canonical;
  };
  std::vector<StateSegment> state_segments() const;
  // The frozen parameters of this rank (not trained: no optimizer state): checkpoints save their
  // weights as they are. `canonical` as for segments (DP rank 0 stores them).
  struct FrozenParam {
    size_t param;
    bool canonical;
  };
  const std::vector<FrozenParam>& frozen_params() const { return frozen_; }
  // Optimizer steps taken (Adam's bias correction), the same on every segment.
  int64_t step_count() const;
  void set_step_count(int64_t steps);
  // After the master weights were overwritten (a checkpoint load): the parameters from them.
  void copy_master_to_params();

  int64_t owned_elements() const { return hi_ - lo_; }
  int64_t bucket_elements() const { return padded_; }
  // What the optimizer holds beyond the parameters on this rank: both Adam moments, the fp32
  // master weights unless the parameters are views of them (fp32 weights without ZeRO-1's
  // gather), and the bf16 copy of the owned weights when they are held in bf16 under ZeRO-1.
  int64_t state_bytes() const {
    return (aliases_params() ? 8 : weights_copy_.defined() ? 14 : 12) * owned_elements();
  }
  // fp32 weights not all-gathered (zero 0, or one DP rank): the trained parameters are views
  // of the master weights.
  bool aliases_params() const { return weights_ == at::kFloat && !gathers(); }

 private:
  struct Segment {  // the part of parameter `param` inside the owned slice
    size_t param;
    int64_t param_offset, slice_offset, length;
  };

  const Exaone4Model& model_;
  OptimizerConfig config_;
  OptimizerGroups groups_;
  int zero_;
  bool sequence_parallel_;
  std::vector<int64_t> offsets_;  // of each parameter in the bucket; -1: frozen
  std::vector<FrozenParam> frozen_;
  int64_t total_ = 0, padded_ = 0, lo_ = 0, hi_ = 0;
  std::vector<Segment> segments_;
  std::vector<bool> segment_in_norm_;    // counted in the global gradient norm on this rank
  std::vector<bool> segment_canonical_;  // stored in checkpoints by this rank
  std::vector<kernels::AdamWRun> runs_;  // the owned slice's segments by weight decay
  std::unique_ptr<GradientBuckets> buckets_;
  at::ScalarType weights_;
  at::Tensor master_, exp_avg_, exp_avg_sq_, grad_;  // owned slice
  at::Tensor weights_copy_;                          // bf16 weights under ZeRO-1: the owned slice in bf16
  int64_t step_count_ = 0;                           // updates taken
  // ZeRO-1 over more than one DP rank: the owned slice is a part; the rest is all-gathered.
  bool gathers() const { return zero_ == 1 && groups_.dp && groups_.dp->size() > 1; }
  void publish_weights();
};

}  // namespace exatrain
