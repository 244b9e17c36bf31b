// What one rank of a layout holds besides activations, from the parameter-spec registry and
// the code that allocates it (trainer/optim/distributed_optimizer.cpp): fp32 weights and
// gradients of its stage's TP shards; the flat fp32 bucket the gradients are reduced in; the
// optimizer's fp32 master weights, two Adam moments and the mask of elements it counts in the
// norm over the elements it owns (all of them, or 1/dp with ZeRO-1, which also keeps its
// reduce-scattered gradient slice). The largest stage decides (the first and last stages hold
// the embedding and lm_head). Activations are not included: see `exatrain model info` and
// docs/performance.md for their measured size.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/core/config.h"

namespace exatrain {

struct RankMemory {
  int stage = 0;             // the pipeline stage of the largest rank
  int64_t elements = 0;      // parameters on that rank
  int64_t owned = 0;         // optimizer elements on that rank
  double weights = 0, gradients = 0, reduce_buffer = 0, optimizer = 0;  // bytes
  double total() const { return weights + gradients + reduce_buffer + optimizer; }
  // "weights 1.2 GiB + gradients 1.2 GiB + reduction bucket 1.2 GiB + optimizer state 1.0 GiB = 4.6 GiB"
  std::string describe() const;
};

// `config`'s model and parallel.zero / pipeline_layers under tp x pp x dp.
RankMemory estimate_rank_memory(const RunConfig& config, int tp, int pp, int dp);

}  // namespace exatrain
