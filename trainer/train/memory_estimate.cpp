#include "trainer/train/memory_estimate.h"

#include <fmt/format.h>

#include "trainer/model/exaone4.h"
#include "trainer/model/param_spec.h"

namespace exatrain {

std::string RankMemory::describe() const {
  const double gib = 1024.0 * 1024 * 1024;
  return fmt::format("weights {:.2f} GiB + gradients {:.2f} GiB + reduction bucket {:.2f} GiB + optimizer state "
                     "{:.2f} GiB = {:.2f} GiB", weights / gib, gradients / gib, reduce_buffer / gib, optimizer / gib,
                     total() / gib);
}

RankMemory estimate_rank_memory(const RunConfig& config, int tp, int pp, int dp) {
  const ModelConfig& m = config.model;
  const std::vector<ParamSpec> specs = build_param_specs(m);
  RankMemory largest;
  for (int s = 0; s < pp; ++s) {
    const PipelineStage stage = config.parallel.pipeline_layers.empty()
                                    ? pipeline_stage(m.num_layers, pp, s)
                                    : pipeline_stage(config.parallel.pipeline_layers, s);
    int64_t elements = 0;
    for (const ParamSpec& spec : specs) {
      // As Exaone4Model decides which parameters a stage holds.
      const bool mine = spec.kind == ParamKind::Embedding ? stage.first || (stage.last && m.tie_embeddings)
                        : spec.layer < 0 || spec.layer >= m.num_layers
                            ? stage.last
                            : spec.layer >= stage.first_layer && spec.layer < stage.end_layer;
      if (!mine) continue;
      int64_t n = 1;
      for (int64_t d : local_shape(spec, tp_shard(spec, 0, tp))) n *= d;
      elements += n;
    }
    if (elements <= largest.elements) continue;
    largest = RankMemory{};
    largest.stage = s;
    largest.elements = elements;
    const bool zero1 = config.parallel.zero == 1 && dp > 1;
    largest.owned = zero1 ? (elements + dp - 1) / dp : elements;
    largest.weights = 4.0 * static_cast<double>(elements);
    largest.gradients = 4.0 * static_cast<double>(elements);
    largest.reduce_buffer = 4.0 * static_cast<double>(elements);
    // master + exp_avg + exp_avg_sq + owned mask (+ the reduce-scattered slice under ZeRO-1)
    largest.optimizer = (zero1 ? 20.0 : 16.0) * static_cast<double>(largest.owned);
  }
  return largest;
}

}  // namespace exatrain
