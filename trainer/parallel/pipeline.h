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

// Runs forward and backward of all micro-batches of one step; gradients accumulate in the
// model's parameters. `inputs[i]` / `targets[i]`: [micro_batch, seq] token ids. `run` wraps each
// stage computation (for autocast).
PipelineStepResult run_1f1b(const Exaone4Model& model, const Communicator& pp, const std::vector<at::Tensor>& inputs,
                            const std::vector<at::Tensor>& targets, bool recompute,
                            const std::function<at::Tensor(const std::function<at::Tensor()>&)>& run);

// Forward only, no gradients: ids -> full-vocabulary logits of the last position [vocab],
// valid on every rank of the pipeline (broadcast from the last stage). For sampling.
at::Tensor pipeline_last_logits(const Exaone4Model& model, const Communicator& pp, const at::Tensor& ids);

}  // namespace exatrain
