#include "trainer/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "checkpoints/hf_io.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"
#include "trainer/model/exaone4.h"
#include "trainer/optim/adamw.h"
#include "trainer/optim/lr_schedule.h"
#include "trainer/train/data_source.h"
#include "trainer/train/flops.h"
#include "trainer/train/generate.h"

namespace exatrain {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

void prepare_run_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create run directory '{}': {}", dir, ec.message());
  const std::string probe = dir + "/.write-test";
  std::ofstream out(probe);
  if (!out || !(out << "ok") || (out.close(), !out))
    fail("run directory '{}' is not writable: {}", dir, std::strerror(errno));
  fs::remove(probe, ec);
}

namespace {

// fp32 weights, gradients and two Adam moments: 16 bytes per parameter before activations.
void check_memory_fits(int64_t parameters) {
  std::ifstream meminfo("/proc/meminfo");
  int64_t available_kib = -1;
  for (std::string key; meminfo >> key;) {
    int64_t value;
    std::string unit;
    meminfo >> value >> unit;
    if (key == "MemAvailable:") available_kib = value;
  }
  if (available_kib < 0) return;  // not Linux: nothing to check against
  const double need = 16.0 * static_cast<double>(parameters), have = 1024.0 * static_cast<double>(available_kib);
  if (need > have)
    fail("the model has {} parameters: its fp32 weights, gradients and Adam moments need {:.1f} GiB of memory, "
         "but this machine has {:.1f} GiB available; choose a smaller model (or, later, shard it over ranks)",
         parameters, need / (1 << 30), have / (1 << 30));
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) fail("cannot write '{}': {}", path, std::strerror(errno));
}

// Scoped bf16 autocast on the given device type.
class AutocastScope {
 public:
  AutocastScope(bool enabled, at::DeviceType device) : enabled_(enabled), device_(device) {
    if (!enabled_) return;
    previous_ = at::autocast::is_autocast_enabled(device_);
    at::autocast::set_autocast_dtype(device_, at::kBFloat16);
    at::autocast::set_autocast_enabled(device_, true);
  }
  ~AutocastScope() {
    if (!enabled_) return;
    at::autocast::set_autocast_enabled(device_, previous_);
    at::autocast::clear_cache();
  }

 private:
  bool enabled_, previous_ = false;
  at::DeviceType device_;
};


}  // namespace

TrainSummary run_training(const RunConfig& config, const std::string& run_dir) {
  if (config.parallel.tp * config.parallel.pp * config.parallel.dp != 1)
    fail("parallel.tp x pp x dp = {} x {} x {}, but this run has 1 process; exatrain trains on one process in "
         "this version, so set all three to 1", config.parallel.tp, config.parallel.pp, config.parallel.dp);
  const auto& t = config.train;
  const int64_t accumulation = t.global_batch / t.micro_batch;
  // Everything that can be checked is checked before the run directory is touched.
  TokenFileSource data(config.data.path, config.data.format, config.model.vocab_size, t.seq_len + 1);
  if (fs::exists(run_dir + "/metrics.jsonl"))
    fail("run directory '{}' already holds a run (metrics.jsonl); choose another --run-dir or remove it", run_dir);
  check_memory_fits(count_params(build_param_specs(config.model)).total);
  prepare_run_dir(run_dir);
  setup_logging(config.log.level, 0, run_dir + "/train.log");
  if (t.threads > 0) at::set_num_threads(static_cast<int>(t.threads));
  write_text_file(run_dir + "/config.resolved.yaml", resolved_yaml(config));
  log_info("data: {} ({} tokens)", config.data.path, data.size());

  at::manual_seed(static_cast<uint64_t>(t.seed));
  Exaone4Model model(config.model, at::TensorOptions().dtype(at::kFloat));
  init_parameters(model, static_cast<uint64_t>(t.seed));
  model.set_requires_grad(true);
  const ParamCounts counts = count_params(model.specs());
  std::vector<bool> decay;
  for (const auto& s : model.specs()) decay.push_back(applies_weight_decay(s, config.optimizer));
  AdamW optimizer(model.params(), decay, config.optimizer);

  const double flops_per_token = train_flops_per_token(config.model, t.seq_len);
  const double peak = measure_gemm_peak_flops(0.3);
  log_info("model: {} parameters ({} non-embedding), {} layers; {} threads; fp32 GEMM peak {:.1f} GFLOP/s",
               counts.total, counts.non_embedding(), config.model.num_layers, at::get_num_threads(), peak / 1e9);
  log_info("train: {} steps x {} sequences x {} tokens ({} micro-batches of {}), precision {}, recompute {}",
               t.steps, t.global_batch, t.seq_len, accumulation, t.micro_batch,
               t.precision == Precision::BF16 ? "bf16" : "fp32", t.recompute == Recompute::Full ? "full" : "none");

  std::ofstream metrics(run_dir + "/metrics.jsonl", std::ios::trunc);
  if (!metrics) fail("cannot write '{}/metrics.jsonl': {}", run_dir, std::strerror(errno));

  TrainSummary summary;
  summary.run_dir = run_dir;
  const auto start = Clock::now();
  auto interval_start = start;
  int64_t interval_tokens = 0;
  const int64_t tokens_per_step = t.global_batch * t.seq_len;
  const at::DeviceType device = model.params().front().device().type();

  for (int64_t step = 0; step < t.steps; ++step) {
    const double lr = learning_rate(config.schedule, config.optimizer.lr, step, t.steps);
    for (const auto& p : model.params()) p.mutable_grad() = at::Tensor();
    double step_loss = 0;
    for (int64_t micro = 0; micro < accumulation; ++micro) {
      at::Tensor window = data.batch(static_cast<uint64_t>(t.seed), static_cast<uint64_t>(step * accumulation + micro),
                                     t.micro_batch);
      at::Tensor inputs = window.narrow(1, 0, t.seq_len), targets = window.narrow(1, 1, t.seq_len);
      at::Tensor loss;
      {
        AutocastScope autocast(t.precision == Precision::BF16, device);
        at::Tensor logits = model.forward(inputs, t.recompute == Recompute::Full);
        loss = token_cross_entropy(logits, targets);
      }
      (loss / static_cast<double>(accumulation)).backward();
      step_loss += loss.item<double>() / static_cast<double>(accumulation);
    }
    const double grad_norm = clip_grad_norm(model.params(), config.optimizer.grad_clip);
    optimizer.step(lr);
    if (!std::isfinite(step_loss))
      fail("step {}: the loss is {}; lower optimizer.lr or use train.precision: fp32", step + 1, step_loss);

    interval_tokens += tokens_per_step;
    if (step == 0) summary.first_loss = step_loss;
    summary.final_loss = step_loss;
    if ((step + 1) % config.log.every == 0 || step == 0 || step + 1 == t.steps) {
      const auto now = Clock::now();
      const double elapsed = std::chrono::duration<double>(now - start).count();
      const double dt = std::chrono::duration<double>(now - interval_start).count();
      const double tokens_per_s = static_cast<double>(interval_tokens) / std::max(dt, 1e-9);
      const double mfu = tokens_per_s * flops_per_token / peak;
      const double eta = elapsed / static_cast<double>(step + 1) * static_cast<double>(t.steps - step - 1);
      nlohmann::json m = {{"step", step + 1}, {"loss", step_loss}, {"lr", lr}, {"grad_norm", grad_norm},
                          {"tokens_per_s", tokens_per_s}, {"mfu", mfu}, {"elapsed_s", elapsed}};
      metrics << m.dump() << "\n" << std::flush;
      log_info("step {:>{}}/{} | loss {:.4f} | lr {:.2e} | grad norm {:.3f} | {:.0f} tok/s | mfu {:.1f}% | eta {}",
                   step + 1, std::to_string(t.steps).size(), t.steps, step_loss, lr, grad_norm, tokens_per_s,
                   100 * mfu, format_duration(eta));
      interval_start = now;
      interval_tokens = 0;
    }
  }
  summary.steps = t.steps;
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  log_info("trained {} steps in {}: loss {:.4f} -> {:.4f}", t.steps, format_duration(summary.seconds),
               summary.first_loss, summary.final_loss);

  if (config.checkpoint.save_final) {
    save_hf_model(model, run_dir + "/final");
    log_info("saved weights: {}/final (Hugging Face format)", run_dir);
  }
  if (config.log.sample_tokens > 0) {
    std::vector<int64_t> prompt = config.data.format == DataFormat::Text ? text_to_byte_ids(config.log.sample_prompt)
                                                                         : std::vector<int64_t>{};
    if (prompt.empty()) prompt.push_back(config.model.bos_token_id);
    const size_t prompt_len = prompt.size();
    auto out = generate(model, prompt, config.log.sample_tokens, config.log.sample_temperature, t.seq_len,
                        static_cast<uint64_t>(t.seed));
    std::vector<int64_t> continuation(out.begin() + static_cast<int64_t>(prompt_len), out.end());
    if (config.data.format == DataFormat::Text)
      log_info("sample: \"{}\" -> \"{}\"", config.log.sample_prompt, byte_ids_to_text(continuation));
    else
      log_info("sample ids: {}", fmt::join(continuation, " "));
  }
  return summary;
}

}  // namespace exatrain
