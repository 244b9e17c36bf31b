// exatrain eval CONFIG (--hf DIR | --checkpoint CKPT) [--set k=v]... [--batches N] [--threads N] [--json]
// The loss and perplexity of a released model or a checkpoint on the validation split of each
// dataset in a run config: the same batches and the same loss (mean cross-entropy over the
// loss-masked targets) as the trainer's val_loss. One process, one rank.
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>

#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "checkpoints/dist_checkpoint.h"
#include "checkpoints/hf_io.h"
#include "trainer/app/commands.h"
#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"
#include "trainer/parallel/topology.h"
#include "trainer/train/release.h"
#include "trainer/train/train_data.h"

namespace exatrain {

namespace {

struct EvalOptions {
  std::string config, hf_dir, checkpoint;
  std::vector<std::string> overrides;
  int64_t batches = 0;  // 0: train.eval_batches of the config (0 there: all)
  int threads = 0;
  bool json = false;
};

void run_eval(const EvalOptions& o) {
  if (o.hf_dir.empty() == o.checkpoint.empty()) fail("give exactly one of --hf DIR or --checkpoint CKPT");
  set_compute_threads(o.threads);
  RunConfig config = load_run_config(o.config, o.overrides);
  if (o.batches > 0) config.train.eval_batches = o.batches;
  std::unique_ptr<Exaone4Model> model;
  if (!o.hf_dir.empty()) {
    model = load_hf_model(o.hf_dir, at::TensorOptions().dtype(at::kFloat));
  } else {
    CheckpointReader reader(resolve_checkpoint_dir(o.checkpoint));
    model = load_checkpoint_model(reader);
  }
  model->set_kernels(config.train.kernels);
  // The datasets are checked against the weights' vocabulary, not the config's model section.
  config.model = model->config();
  const Topology topo;  // one rank
  TrainData data(config, topo);
  if (data.validation_sets().empty())
    fail("{}: eval needs datasets with a validation split (data.datasets[].validation_sequences or "
         "validation_fraction); this config has none", o.config);

  at::NoGradGuard no_grad;
  const int64_t micro = std::max<int64_t>(1, config.train.micro_batch);
  nlohmann::json sets = nlohmann::json::object();
  for (const auto& set : data.validation_sets()) {
    double sum = 0, count = 0;
    for (int64_t i = 0; i < set.batches; ++i) {
      const RankBatch batch = data.validation_batch(set, i);
      const int64_t rows = batch.tokens.size(0), seq = batch.tokens.size(1) - 1;
      for (int64_t r = 0; r < rows; r += micro) {
        const int64_t n = std::min(micro, rows - r);
        const at::Tensor tokens = batch.tokens.narrow(0, r, n);
        const at::Tensor mask = batch.mask.defined() ? batch.mask.narrow(0, r, n) : at::ones({n, seq});
        // (the whole model on one rank: stage_forward is forward, with data.document_mask's segments)
        const at::Tensor segments = batch.segments.defined() ? batch.segments.narrow(0, r, n) : at::Tensor();
        const at::Tensor logits = model->stage_forward(tokens.narrow(1, 0, seq), false, false, segments);
        sum += model->loss_from_logits(logits, tokens.narrow(1, 1, seq), mask).item<double>();
        count += mask.sum().item<double>();
      }
    }
    const double loss = sum / std::max(count, 1.0);
    sets[set.name] = {{"loss", loss}, {"perplexity", std::exp(loss)}, {"tokens", static_cast<int64_t>(count)},
                      {"batches", set.batches}};
    if (!o.json)
      std::cout << fmt::format("{}: loss {:.6f}, perplexity {:.3f} over {} target tokens ({} batches)\n", set.name,
                               loss, std::exp(loss), static_cast<int64_t>(count), set.batches);
  }
  if (o.json) std::cout << nlohmann::json{{"datasets", sets}}.dump() << "\n";
}

void register_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Loss and perplexity of a model on each dataset's validation split");
  static EvalOptions o;
  cmd->add_option("CONFIG", o.config, "a run config whose data.datasets have validation splits")->required();
  cmd->add_option("--hf", o.hf_dir, "a Hugging Face directory");
  cmd->add_option("--checkpoint", o.checkpoint, "a checkpoint directory, or a run directory (its latest)");
  cmd->add_option("--set", o.overrides, "override a config key: --set train.eval_batches=4");
  cmd->add_option("--batches", o.batches, "validation batches per dataset (default: train.eval_batches; 0 = all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--threads", o.threads, "compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", o.json, "print {\"datasets\": {NAME: {loss, perplexity, tokens, batches}}}");
  cmd->callback([] { run_eval(o); });
}

CommandRegistration registration("eval", 56, register_eval_command);

}  // namespace

}  // namespace exatrain
