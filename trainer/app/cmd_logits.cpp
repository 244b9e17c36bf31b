// exatrain logits --hf DIR --input TOKENS --output OUT.safetensors [--grads GRADS.safetensors] [--kernels K]
// Runs a Hugging Face directory on each line of TOKENS and writes fp32 "logits"
// [lines, tokens, vocab]. With --grads, also back-propagates the mean causal-LM cross-entropy
// and writes every parameter's gradient under its Hugging Face name (and "loss" in OUT).
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>

#include "checkpoints/hf_io.h"
#include "trainer/app/commands.h"
#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"
#include "trainer/train/autocast_scope.h"
#include "trainer/train/data_source.h"

namespace exatrain {

namespace {

struct LogitsOptions {
  std::string hf_dir, input, output, grads;
  int threads = 0;
  std::string kernels = "auto";
  std::string dtype = "fp32";
};


void run_logits(const LogitsOptions& o) {
  set_compute_threads(o.threads);
  auto model = load_hf_model(o.hf_dir, at::TensorOptions().dtype(at::kFloat));
  model->set_kernels(o.kernels == "reference" ? KernelChoice::Reference : KernelChoice::Auto);
  const bool bf16 = o.dtype == "bf16";
  if (bf16) model->hold_weights_in(at::kBFloat16);
  // As a training run with train.precision: bf16 and train.weights: bf16 computes.
  const AutocastScope autocast(bf16, at::kCPU);
  at::Tensor ids = read_token_lines(o.input, model->config().vocab_size);
  if (ids.size(1) > model->config().max_position_embeddings)
    fail("{}: lines have {} tokens but the model's max_position_embeddings is {}", o.input, ids.size(1),
         model->config().max_position_embeddings);
  if (o.grads.empty()) {
    at::NoGradGuard no_grad;
    save_tensors(o.output, {{"logits", model->forward(ids).to(at::kFloat)}});
    return;
  }
  if (ids.size(1) < 2) fail("{}: --grads needs at least 2 tokens per line (the loss predicts the next token)", o.input);
  model->set_requires_grad(true);
  at::Tensor logits = model->forward(ids);
  at::Tensor loss = causal_lm_loss(logits, ids);
  loss.backward();
  std::vector<std::pair<std::string, at::Tensor>> grads;
  for (size_t i = 0; i < model->specs().size(); ++i)
    grads.emplace_back(model->specs()[i].name, model->params()[i].grad().to(at::kFloat));
  save_tensors(o.grads, grads);
  save_tensors(o.output, {{"logits", logits.to(at::kFloat)}, {"loss", loss.to(at::kFloat)}});
}

}  // namespace

namespace {

void register_logits_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("logits", "Run a Hugging Face directory on token ids and write the logits");
  static LogitsOptions o;
  cmd->add_option("--hf", o.hf_dir, "Hugging Face directory (config.json + safetensors)")->required();
  cmd->add_option("--input", o.input, "token file: space-separated ids, one sequence per line")->required();
  cmd->add_option("--output", o.output, "output safetensors file (tensor 'logits')")->required();
  cmd->add_option("--grads", o.grads, "also write gradients of the mean causal-LM loss here");
  cmd->add_option("--threads", o.threads, "compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--kernels", o.kernels, "fused operators: auto (our kernels) or reference (ATen)")
      ->check(CLI::IsMember({"auto", "reference"}))
      ->capture_default_str();
  cmd->add_option("--dtype", o.dtype,
                  "fp32, or bf16: weights held in bf16 under bf16 autocast (train.weights: bf16); logits written as fp32")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd->callback([] { run_logits(o); });
}

CommandRegistration registration("logits", 50, register_logits_command);

}  // namespace

}  // namespace exatrain
