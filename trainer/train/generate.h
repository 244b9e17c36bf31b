// Sampling a continuation from the model (no KV cache: each new token reruns the window).
#pragma once

#include <cstdint>
#include <vector>

namespace exatrain {

class Communicator;
class Exaone4Model;

// Appends `count` tokens to `prompt`, each sampled from softmax(logits / temperature) over the
// last `context` tokens (temperature 0: greedy). Deterministic in `seed`. Collective under
// tensor parallelism: every rank of the TP group calls it with the same arguments.
// `pp`: the pipeline group when the model is split into stages (every stage calls this).
std::vector<int64_t> generate(const Exaone4Model& model, std::vector<int64_t> prompt, int64_t count,
                              double temperature, int64_t context, uint64_t seed, const Communicator* pp = nullptr);

}  // namespace exatrain
