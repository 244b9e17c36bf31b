#include "trainer/train/generate.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"
#include "trainer/parallel/comm.h"
#include "trainer/parallel/pipeline.h"

namespace exatrain {

namespace {

// The next token from the last position's logits [vocab] (fp32, CPU).
int64_t pick(const at::Tensor& logits, double temperature, double top_p, at::Generator& gen) {
  if (temperature <= 0) return logits.argmax().item<int64_t>();
  at::Tensor probs = at::softmax(logits / temperature, -1);
  if (top_p < 1) {  // keep the most likely tokens up to top_p of the mass (at least one)
    auto [sorted, order] = probs.sort(-1, /*descending=*/true);
    const at::Tensor before = sorted.cumsum(-1) - sorted;  // mass of the tokens ranked above
    sorted.masked_fill_(before >= top_p, 0.0);
    probs = at::zeros_like(probs).scatter_(-1, order, sorted);
  }
  return at::multinomial(probs, 1, false, gen).item<int64_t>();
}

}  // namespace

std::vector<int64_t> generate(const Exaone4Model& model, const std::vector<int64_t>& prompt,
                              const GenerateOptions& o) {
  EXATRAIN_CHECK(!prompt.empty(), "generation needs a prompt of at least one token");
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const auto device = model.params().front().device();
  const int64_t context = o.context > 0 ? o.context : model.config().max_position_embeddings;
  std::vector<int64_t> tokens = prompt, out;
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    const int64_t n = std::min<int64_t>(context, static_cast<int64_t>(tokens.size()));
    at::Tensor ids = at::tensor(std::vector<int64_t>(tokens.end() - n, tokens.end()), at::kLong).unsqueeze(0).to(device);
    const at::Tensor logits = model.full_logits(ids).select(1, n - 1).squeeze(0).to(at::kFloat).cpu();
    const int64_t next = pick(logits, o.temperature, o.top_p, gen);
    tokens.push_back(next);
    out.push_back(next);
    if (std::find(o.stop_ids.begin(), o.stop_ids.end(), next) != o.stop_ids.end()) break;
  }
  return out;
}

std::vector<int64_t> generate(const Exaone4Model& model, std::vector<int64_t> tokens, int64_t count,
                              double temperature, int64_t context, uint64_t seed, const Communicator* pp) {
  EXATRAIN_CHECK(!tokens.empty(), "generation needs a prompt of at least one token");
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto device = model.params().front().device();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t n = std::min<int64_t>(context, static_cast<int64_t>(tokens.size()));
    at::Tensor ids = at::tensor(std::vector<int64_t>(tokens.end() - n, tokens.end()), at::kLong).unsqueeze(0).to(device);
    // [vocab]; under TP every rank of the group runs this and draws the same token.
    at::Tensor logits = pp && pp->size() > 1
                            ? pipeline_last_logits(model, *pp, ids)
                            : model.full_logits(ids).select(1, n - 1).squeeze(0).to(at::kFloat).cpu();
    tokens.push_back(pick(logits, temperature, 1.0, gen));
  }
  return tokens;
}

}  // namespace exatrain
