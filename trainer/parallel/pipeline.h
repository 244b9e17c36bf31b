// The 1F1B pipeline schedule (PipeDream-Flush, as Megatron-LM): each stage runs
//   warm-up:   min(stages - stage - 1, M) forwards
//   steady:    one forward, one backward, alternating, with the activation sent forward and the
//              gradient received in one exchange (and the reverse), so neighbours never deadlock
//   cool-down: the remaining backwards
// for M micro-batches. At most (stages - stage) micro-batches are in flight on a stage, which
// bounds its activation memory. The schedule knows stages and tensors, not the model's insides.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace exatrain {

class Communicator;
class Exaone4Model;

struct PipelineStepResult {
  double loss = 0;          // mean over micro-batches (last stage; 0 elsewhere)
  int max_in_flight = 0;    // most micro-batches holding activations at once on this stage
};

// The micro-batches of one step: `inputs[i]` / `targets[i]` are [micro_batch, seq] token ids;
// `weights[i]` [micro_batch, seq] the loss weight of each target (a loss mask over the step's
// count of counted targets); without weights the loss is the mean over targets and micro-batches.
// `segments[i]` [micro_batch, seq] int32 (data.document_mask; empty: off): the document of each
// token, given to every stage (its attention and RoPE need it), whole even under sequence parallelism.
struct MicroBatches {
  std::vector<at::Tensor> inputs, targets, weights, segments;
};

struct StageOptions {
  bool recompute = false;
  bool sequence_parallel = false;  // activations between stages are [b, seq / tp, hidden]
  // Wraps each stage computation (for autocast); null: run it as is.
  std::function<at::Tensor(const std::function<at::Tensor()>&)> run;
  // Called just before the step's last backward (the last micro-batch's): the gradients that
  // backward completes are final, so their data-parallel reduction may start (gradient buckets).
  std::function<void()> before_last_backward;
};

// Runs forward and backward of all micro-batches of one step; gradients accumulate in the
// model's parameters.
PipelineStepResult run_1f1b(const Exaone4Model& model, const Communicator& pp, const MicroBatches& batches,
                            const StageOptions& options);

// Forward only, no gradients: the weighted loss sum of each micro-batch (last stage; zeros
// elsewhere), one micro-batch after another. For validation.
std::vector<double> pipeline_forward_loss(const Exaone4Model& model, const Communicator& pp,
                                          const MicroBatches& batches, const StageOptions& options);

// Forward only, no gradients: ids -> full-vocabulary logits of the last position [vocab],
// valid on every rank of the pipeline (broadcast from the last stage). For sampling.
at::Tensor pipeline_last_logits(const Exaone4Model& model, const Communicator& pp, const at::Tensor& ids);

}  // namespace exatrain
