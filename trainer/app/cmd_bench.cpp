// exatrain bench train (--preset NAME | --config FILE) [--batch B] [--seq-len T] [--steps S]
//                      [--warmup W] [--threads N] [--json]
// Times fp32 training steps (forward, backward of the mean cross-entropy, the trainer's optimizer:
// gradient bucket, global norm, fused AdamW) of a randomly initialised model on random tokens, and
// the fp32 GEMM peak in the same run (for MFU).
// tests/bench/bench_train.py runs transformers on the same shapes and prints the ratio.
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "trainer/app/commands.h"
#include "trainer/core/config.h"
#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"
#include "trainer/optim/distributed_optimizer.h"
#include "trainer/plan/cost_model.h"
#include "trainer/train/flops.h"

namespace exatrain {

namespace {

struct BenchOptions {
  std::string preset, config;
  int64_t batch = 4, seq_len = 256, steps = 10, warmup = 2;
  int threads = 0;
  bool json = false;
};

void bench_train(const BenchOptions& o) {
  if (!o.preset.empty() == !o.config.empty()) fail("give exactly one of --preset NAME or --config FILE");
  set_compute_threads(o.threads);
  const ModelConfig c = o.preset.empty() ? load_model_config(o.config) : load_model_preset(o.preset);
  EXATRAIN_CHECK(o.batch >= 1 && o.seq_len >= 2 && o.steps >= 1 && o.warmup >= 0,
                 "need --batch >= 1, --seq-len >= 2, --steps >= 1, --warmup >= 0");
  if (o.seq_len > c.max_position_embeddings)
    fail("--seq-len {} exceeds the model's max_position_embeddings ({})", o.seq_len, c.max_position_embeddings);
  Exaone4Model model(c, at::TensorOptions().dtype(at::kFloat));
  init_parameters(model, 1234);
  model.set_requires_grad(true);
  OptimizerConfig opt;
  opt.grad_clip = 0;  // as the baseline: no clipping (the norm is still computed)
  DistributedOptimizer optimizer(model, opt, OptimizerGroups{}, /*zero_stage=*/0);
  at::manual_seed(1234);
  at::Tensor ids = at::randint(c.vocab_size, {o.batch, o.seq_len + 1}, at::kLong);
  at::Tensor inputs = ids.narrow(1, 0, o.seq_len), targets = ids.narrow(1, 1, o.seq_len);

  auto step = [&] {
    for (const auto& p : model.params()) p.mutable_grad() = at::Tensor();
    at::Tensor loss = token_cross_entropy(model.forward(inputs), targets);
    loss.backward();
    optimizer.reduce_gradients(opt.grad_clip);
    optimizer.step(1e-4);
  };
  for (int64_t i = 0; i < o.warmup; ++i) step();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < o.steps; ++i) step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double peak = measure_gemm_peak_flops(1.0);

  const double steps_per_s = static_cast<double>(o.steps) / seconds;
  const double tokens_per_s = steps_per_s * static_cast<double>(o.batch * o.seq_len);
  CostLayout one_rank;  // the benchmark's step: one rank, one micro-batch
  one_rank.micro_batch = one_rank.global_batch = o.batch;
  one_rank.seq_len = o.seq_len;
  const double flops_per_step = estimate_cost(c, one_rank).model_flops_per_step;
  const double mfu = steps_per_s * flops_per_step / peak;
  if (o.json) {
    nlohmann::json j = {{"steps_per_s", steps_per_s},  {"tokens_per_s", tokens_per_s},
                        {"model_flops_per_step", flops_per_step}, {"gemm_peak_flops", peak},
                        {"mfu", mfu},                  {"threads", at::get_num_threads()},
                        {"batch", o.batch},            {"seq_len", o.seq_len}, {"steps", o.steps}};
    std::cout << j.dump() << "\n";
    return;
  }
  std::cout << fmt::format("exatrain bench train: {} steps of batch {} x {} tokens on {} threads\n", o.steps, o.batch,
                           o.seq_len, at::get_num_threads());
  std::cout << fmt::format("  {:.3f} steps/s, {:.0f} tokens/s\n", steps_per_s, tokens_per_s);
  std::cout << fmt::format("  model FLOPs/step {:.3e}; fp32 GEMM peak {:.1f} GFLOP/s; MFU {:.1f}%\n", flops_per_step,
                           peak / 1e9, 100 * mfu);
}

}  // namespace

namespace {

void register_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto* train = bench->add_subcommand("train", "Time fp32 training steps and measure MFU");
  static BenchOptions o;
  train->add_option("--preset", o.preset, "built-in model preset");
  train->add_option("--config", o.config, "a preset file or run config");
  train->add_option("--batch", o.batch, "sequences per step")->capture_default_str();
  train->add_option("--seq-len", o.seq_len, "tokens per sequence")->capture_default_str();
  train->add_option("--steps", o.steps, "timed steps")->capture_default_str();
  train->add_option("--warmup", o.warmup, "untimed steps first")->capture_default_str();
  train->add_option("--threads", o.threads, "compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  train->add_flag("--json", o.json, "print one JSON object");
  train->callback([] { bench_train(o); });
}

CommandRegistration registration("bench", 90, register_bench_command);

}  // namespace

}  // namespace exatrain
