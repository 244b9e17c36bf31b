#include "trainer/train/generate.h"

#include <ATen/ATen.h>

#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"
#include "trainer/parallel/comm.h"
#include "trainer/parallel/pipeline.h"

namespace exatrain {

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
    int64_t next;
    if (temperature <= 0) {
      next = logits.argmax().item<int64_t>();
    } else {
      at::Tensor probs = at::softmax(logits / temperature, -1);
      next = at::multinomial(probs, 1, false, gen).item<int64_t>();
    }
    tokens.push_back(next);
  }
  return tokens;
}

}  // namespace exatrain
