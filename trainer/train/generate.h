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

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  double temperature = 0;  // 0: greedy (argmax, as transformers' generate(do_sample=False))
  double top_p = 1;        // nucleus sampling: the smallest set of tokens whose probability reaches top_p
  int64_t context = 0;     // tokens the model sees; 0: max_position_embeddings
  uint64_t seed = 0;
  std::vector<int64_t> stop_ids;  // generation ends after emitting one of these (EOS, end of turn)
};
// The continuation only (without the prompt); ends at max_new_tokens or after a stop id, which
// is included, as transformers includes the EOS token.
std::vector<int64_t> generate(const Exaone4Model& model, const std::vector<int64_t>& prompt,
                              const GenerateOptions& options);

}  // namespace exatrain
