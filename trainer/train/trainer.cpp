#include "trainer/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/cuda/CUDAFunctions.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "checkpoints/hf_io.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"
#include "trainer/model/exaone4.h"
#include "trainer/optim/distributed_optimizer.h"
#include "trainer/optim/lr_schedule.h"
#include "trainer/train/flops.h"
#include "trainer/train/generate.h"
#include "trainer/train/memory_tracker.h"
#include "trainer/train/train_data.h"
#include "trainer/parallel/comm.h"
#include "trainer/parallel/pipeline.h"
#include "trainer/parallel/topology.h"

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

// fp32 weights and gradients, fp32 master weights and two Adam moments: 8 bytes per local
// parameter plus 12 per owned optimizer element, for every rank on this node, before activations.
void check_memory_fits(int64_t parameters, const Topology& topo) {
  std::ifstream meminfo("/proc/meminfo");
  int64_t available_kib = -1;
  for (std::string key; meminfo >> key;) {
    int64_t value;
    std::string unit;
    meminfo >> value >> unit;
    if (key == "MemAvailable:") available_kib = value;
  }
  if (available_kib < 0) return;  // not Linux: nothing to check against
  const int ranks_here = topo.local_size;
  const double local = static_cast<double>(parameters) / topo.tp;
  const double need = ranks_here * (8.0 * local + 12.0 * local / (topo.dp > 1 ? topo.dp : 1));
  const double have = 1024.0 * static_cast<double>(available_kib);
  if (need > have)
    fail("the model has {} parameters: its fp32 weights, gradients, master weights and Adam moments need {:.1f} GiB "
         "of memory on this node ({} ranks), but this machine has {:.1f} GiB available; choose a smaller model or "
         "shard it over more ranks", parameters, need / (1 << 30), ranks_here, have / (1 << 30));
}

// This rank's device: the CPU, or the GPU of its node-local rank (one rank per GPU).
at::Device choose_device(const RunConfig& config, const Topology& topo) {
  const DeviceKind kind = config.train.device;
  const int gpus = kind == DeviceKind::Cpu || !at::hasCUDA() ? 0 : static_cast<int>(c10::cuda::device_count());
  if (kind == DeviceKind::Cpu || (kind == DeviceKind::Auto && gpus == 0)) return at::Device(at::kCPU);
  if (gpus == 0)
    config_error(config.locations, "train.device",
                 "cuda, but this machine has no usable CUDA device; use train.device: cpu (or auto)");
  if (topo.local_size > gpus)
    fail("{} ranks run on this node but it has {} GPUs; start one rank per GPU (srun --ntasks-per-node={} or "
         "mpirun -n), or use train.device: cpu", topo.local_size, gpus, gpus);
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(topo.local_rank));
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(topo.local_rank));
}

// Stage s's layers: the explicit parallel.pipeline_layers, or an even split.
PipelineStage stage_of(const RunConfig& config, int pp, int s) {
  return config.parallel.pipeline_layers.empty() ? pipeline_stage(config.model.num_layers, pp, s)
                                                 : pipeline_stage(config.parallel.pipeline_layers, s);
}

// Gathers the full weights onto world rank 0 and writes a Hugging Face directory there: TP
// shards are gathered within each stage, then each stage's (dp 0, tp 0) rank sends its tensors
// to stage 0, in spec order.
void save_final(const RunConfig& config, const Exaone4Model& model, const Topology& topo, const std::string& dir) {
  std::vector<std::pair<std::string, at::Tensor>> full;
  for (size_t i = 0; i < model.specs().size(); ++i)
    full.emplace_back(model.specs()[i].name, model.gather_param(i).to(at::kCPU));  // saved through MPI
  if (topo.dp_rank != 0 || topo.tp_rank != 0) return;
  if (topo.pp_rank > 0) {
    for (size_t i = 0; i < full.size(); ++i)
      if (model.specs()[i].kind != ParamKind::Embedding) topo.pp_group->send(full[i].second.contiguous(), 0);
    return;
  }
  at::Tensor none;
  for (int s = 1; s < topo.pp; ++s) {
    const PipelineStage other = stage_of(config, topo.pp, s);
    Exaone4Model shapes(model.config(), at::TensorOptions().device(at::kMeta), {}, other);
    for (const auto& spec : shapes.specs()) {
      if (spec.kind == ParamKind::Embedding) continue;  // stage 0 holds the tied copy
      at::Tensor t = at::empty(spec.shape, at::kFloat);
      topo.pp_group->recv(t, s);
      full.emplace_back(spec.name, t);
    }
  }
  // Hugging Face order: the registry's.
  std::vector<std::pair<std::string, at::Tensor>> ordered;
  for (const auto& spec : build_param_specs(model.config()))
    for (const auto& [name, t] : full)
      if (name == spec.name) ordered.emplace_back(name, t);
  write_hf_directory(model.config(), ordered, dir);
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


// Splits this rank's rows into micro-batches of `micro` rows (the last may be short): inputs,
// targets and, with a mask, loss weights = mask / per_rank_count.
MicroBatches split_micro_batches(const RankBatch& batch, int64_t micro, double per_rank_count) {
  MicroBatches out;
  const int64_t rows = batch.tokens.size(0), seq = batch.tokens.size(1) - 1;
  for (int64_t r = 0; r < rows; r += micro) {
    const int64_t n = std::min(micro, rows - r);
    at::Tensor window = batch.tokens.narrow(0, r, n);
    out.inputs.push_back(window.narrow(1, 0, seq));
    out.targets.push_back(window.narrow(1, 1, seq));
    if (batch.mask.defined()) out.weights.push_back(batch.mask.narrow(0, r, n) / per_rank_count);
  }
  return out;
}

// Validation loss of each set: the mean cross-entropy over its masked targets, over all DP
// ranks' rows. Forward only; every rank takes part (one world all-reduce per set).
std::vector<double> evaluate(const Exaone4Model& model, const Topology& topo, TrainData& data,
                             const StageOptions& options, int64_t micro) {
  std::vector<double> losses;
  const bool reports = topo.tp_rank == 0 && model.stage().last;
  for (const auto& set : data.validation_sets()) {
    double sum = 0, count = 0;
    for (int64_t i = 0; i < set.batches; ++i) {
      const RankBatch batch = data.validation_batch(set, i).to(model.device());
      if (batch.tokens.size(0) == 0) continue;
      const MicroBatches mb = split_micro_batches(batch, micro, 1.0);
      for (double l : pipeline_forward_loss(model, *topo.pp_group, mb, options)) sum += l;
      count += batch.mask.sum().item<double>();
    }
    at::Tensor totals = at::tensor({reports ? sum : 0.0, reports ? count : 0.0}, at::kDouble);
    topo.world->all_reduce(totals);
    losses.push_back(totals[0].item<double>() / std::max(totals[1].item<double>(), 1.0));
  }
  return losses;
}

}  // namespace

TrainSummary run_training(const RunConfig& config, const std::string& run_dir, Topology& topo) {
  const auto& t = config.train;
  const bool rank0 = topo.world_rank == 0;
  const int64_t rows_per_rank = t.global_batch / topo.dp;  // this DP rank's slice of each global batch
  const int64_t accumulation = rows_per_rank / t.micro_batch;
  const bool sequence_parallel = config.parallel.sequence_parallel && topo.tp > 1;
  MemoryTracker::install();
  // Everything that can be checked is checked before the run directory is touched.
  const at::Device device_of_rank = choose_device(config, topo);
  const int cuda_index = device_of_rank.is_cuda() ? device_of_rank.index() : -1;
  TrainData data(config, topo);
  if (rank0 && fs::exists(run_dir + "/metrics.jsonl"))
    fail("run directory '{}' already holds a run (metrics.jsonl); choose another --run-dir or remove it", run_dir);
  check_memory_fits(count_params(build_param_specs(config.model)).total, topo);
  if (rank0) prepare_run_dir(run_dir);
  topo.world->barrier();
  setup_logging(config.log.level, topo.world_rank,
                rank0 ? run_dir + "/train.log" : fmt::format("{}/train.rank{}.log", run_dir, topo.world_rank),
                /*console=*/rank0);
  if (t.threads > 0) at::set_num_threads(static_cast<int>(t.threads));
  if (rank0) write_text_file(run_dir + "/config.resolved.yaml", resolved_yaml(config));
  log_info("layout: {}; device {}", topo.describe(), device_of_rank.str());
  for (const auto& line : data.describe()) log_info("{}", line);

  // The groups of TP ranks that hold the same replicated KV head (num_kv_heads < tp).
  std::unique_ptr<Communicator> kv_replicas;
  if (topo.tp > config.model.num_kv_heads)
    kv_replicas = topo.tp_group->split("kv", topo.tp_rank / (topo.tp / config.model.num_kv_heads), topo.tp_rank);
  const PipelineStage stage = stage_of(config, topo.pp, topo.pp_rank);
  Exaone4Model model(config.model, at::TensorOptions().dtype(at::kFloat).device(device_of_rank),
                     TensorParallelGroups{topo.tp > 1 ? topo.tp_group.get() : nullptr, kv_replicas.get()}, stage);
  // Tied embeddings under PP: the first and last stage each hold a copy; their gradients are
  // summed over this two-rank group so the copies stay equal.
  std::unique_ptr<Communicator> tied_embedding;
  if (config.model.tie_embeddings && topo.pp > 1) {
    const bool member = stage.first || stage.last;
    tied_embedding = topo.world->split("embedding", member ? topo.tp_rank + topo.tp * topo.dp_rank
                                                           : topo.tp * topo.dp + topo.world_rank, topo.pp_rank);
  }
  log_info("pipeline stage {} of {}: layers [{}, {}){}{}", topo.pp_rank, topo.pp, stage.first_layer, stage.end_layer,
           stage.first ? ", embedding" : "", stage.last ? ", final norm, lm_head and loss" : "");
  init_parameters(model, static_cast<uint64_t>(t.seed));
  model.set_requires_grad(true);
  const ParamCounts counts = count_params(model.specs());
  DistributedOptimizer optimizer(model, config.optimizer,
                                 OptimizerGroups{topo.tp_group.get(), topo.dp_group.get(), topo.world.get()},
                                 static_cast<int>(config.parallel.zero), sequence_parallel);

  const double flops_per_token = train_flops_per_token(config.model, t.seq_len);
  const double peak = measure_gemm_peak_flops(0.3);
  int64_t local_params = 0;
  for (const auto& p : model.params()) local_params += p.numel();
  log_info("model: {} parameters ({} non-embedding), {} layers; {} threads; fp32 GEMM peak {:.1f} GFLOP/s",
           counts.total, counts.non_embedding(), config.model.num_layers, at::get_num_threads(), peak / 1e9);
  log_info("memory on this rank: parameters {} MiB, gradients {} MiB, optimizer state {} MiB (zero {})",
           4 * local_params >> 20, 4 * local_params >> 20, optimizer.state_bytes() >> 20, config.parallel.zero);
  log_info("train: {} steps x {} sequences x {} tokens ({} per DP rank, {} micro-batches of {}), precision {}, "
           "recompute {}{}", t.steps, t.global_batch, t.seq_len, rows_per_rank, accumulation, t.micro_batch,
           t.precision == Precision::BF16 ? "bf16" : "fp32", t.recompute == Recompute::Full ? "full" : "none",
           sequence_parallel ? ", sequence parallel" : "");

  std::ofstream metrics;
  if (rank0) {
    metrics.open(run_dir + "/metrics.jsonl", std::ios::trunc);
    if (!metrics) fail("cannot write '{}/metrics.jsonl': {}", run_dir, std::strerror(errno));
  }

  TrainSummary summary;
  summary.run_dir = run_dir;
  const auto start = Clock::now();
  auto interval_start = start;
  int64_t interval_tokens = 0;
  double interval_eval_s = 0;
  const int64_t tokens_per_step = t.global_batch * t.seq_len;
  const at::DeviceType device = model.params().front().device().type();
  CommContext& comm = topo.world->context();
  int max_in_flight = 0;
  int64_t peak_activation_bytes = 0;
  const StageOptions stage_options{t.recompute == Recompute::Full, sequence_parallel,
                                   [&](const std::function<at::Tensor()>& fn) {
                                     AutocastScope autocast(t.precision == Precision::BF16, device);
                                     return fn();
                                   }};

  for (int64_t step = 0; step < t.steps; ++step) {
    comm.step = step + 1;
    comm.reset_bytes();
    const double lr = learning_rate(config.schedule, config.optimizer.lr, step, t.steps);
    {
      // Gradients are allocated once and zeroed in place, so the step's peak below is activations.
      at::NoGradGuard no_grad;
      for (const auto& p : model.params()) {
        if (p.grad().defined())
          p.mutable_grad().zero_();
        else
          p.mutable_grad() = at::zeros_like(p);
      }
    }
    const RankBatch batch = data.next(step).to(device_of_rank);
    // With a loss mask the step's loss is the mean over the global batch's counted targets:
    // weights = mask / (count / dp), as DP averages gradients over its ranks.
    double per_rank_count = 1.0;
    if (batch.mask.defined()) {
      at::Tensor count = at::full({1}, batch.mask.sum().item<double>(), at::kDouble);
      if (topo.dp > 1) topo.dp_group->all_reduce(count);
      per_rank_count = std::max(count.item<double>(), 1.0) / topo.dp;
    }
    const MicroBatches micro_batches = split_micro_batches(batch, t.micro_batch, per_rank_count);
    const int64_t baseline = MemoryTracker::allocated(cuda_index);
    MemoryTracker::reset_peak(cuda_index);
    // 1F1B over the pipeline stages (one stage: forward, backward per micro-batch).
    const PipelineStepResult pipe = run_1f1b(model, *topo.pp_group, micro_batches, stage_options);
    peak_activation_bytes = std::max(peak_activation_bytes, MemoryTracker::peak(cuda_index) - baseline);
    double step_loss = pipe.loss;
    max_in_flight = std::max(max_in_flight, pipe.max_in_flight);
    if (tied_embedding && (stage.first || stage.last)) {
      at::Tensor g = model.param("model.embed_tokens.weight").grad();
      tied_embedding->all_reduce(g);
    }
    const double grad_norm = optimizer.reduce_gradients(config.optimizer.grad_clip);
    optimizer.step(lr);
    // The mean loss over the global batch: every DP rank's share, counted once per TP group.
    at::Tensor loss_sum = at::full({1}, topo.tp_rank == 0 && stage.last ? step_loss / topo.dp : 0.0, at::kDouble);
    topo.world->all_reduce(loss_sum);
    step_loss = loss_sum.item<double>();
    if (!std::isfinite(step_loss))
      fail("step {}: the loss is {}; lower optimizer.lr or use train.precision: fp32", step + 1, step_loss);

    interval_tokens += tokens_per_step;
    if (step == 0) summary.first_loss = step_loss;
    summary.final_loss = step_loss;
    const std::map<std::string, int64_t> step_bytes = comm.bytes;  // this step's, before any evaluation
    const bool eval_now = t.eval_every > 0 && ((step + 1) % t.eval_every == 0 || step + 1 == t.steps);
    std::vector<double> val_losses;
    if (eval_now) {
      const auto eval_start = Clock::now();
      val_losses = evaluate(model, topo, data, stage_options, t.micro_batch);
      interval_eval_s += std::chrono::duration<double>(Clock::now() - eval_start).count();
    }
    if ((step + 1) % config.log.every == 0 || step == 0 || step + 1 == t.steps || eval_now) {
      const auto now = Clock::now();
      const double elapsed = std::chrono::duration<double>(now - start).count();
      const double dt = std::chrono::duration<double>(now - interval_start).count() - interval_eval_s;
      const double tokens_per_s = static_cast<double>(interval_tokens) / std::max(dt, 1e-9);
      const double data_wait_share = data.take_wait_seconds() / std::max(dt, 1e-9);
      // Per-rank MFU: the job's model FLOPs over all ranks' peaks.
      const double mfu = tokens_per_s * flops_per_token / (peak * topo.world_size);
      const double eta = elapsed / static_cast<double>(step + 1) * static_cast<double>(t.steps - step - 1);
      std::string val_text;
      nlohmann::json val_json = nlohmann::json::object();
      for (size_t v = 0; v < val_losses.size(); ++v) {
        const std::string& name = data.validation_sets()[v].name;
        val_json[name] = val_losses[v];
        val_text += fmt::format(" | val {} {:.4f}", name, val_losses[v]);
      }
      if (rank0) {
        nlohmann::json m = {{"step", step + 1}, {"loss", step_loss}, {"lr", lr}, {"grad_norm", grad_norm},
                            {"tokens_per_s", tokens_per_s}, {"mfu", mfu}, {"elapsed_s", elapsed},
                            {"data_wait_share", data_wait_share}, {"comm_bytes", step_bytes},
                            {"optimizer_state_bytes", optimizer.state_bytes()},
                            {"max_micro_batches_in_flight", max_in_flight},
                            {"peak_activation_bytes", peak_activation_bytes}};
        if (!val_losses.empty()) m["val_loss"] = val_json;
        metrics << m.dump() << "\n" << std::flush;
      }
      std::string bytes;
      for (const auto& [key, n] : step_bytes) bytes += fmt::format(" {}={:.1f}MiB", key, static_cast<double>(n) / (1 << 20));
      log_info("step {:>{}}/{} | loss {:.4f}{} | lr {:.2e} | grad norm {:.3f} | {:.0f} tok/s | mfu {:.1f}% | "
               "data wait {:.1f}% | eta {}{}",
               step + 1, std::to_string(t.steps).size(), t.steps, step_loss, val_text, lr, grad_norm, tokens_per_s,
               100 * mfu, 100 * data_wait_share, format_duration(eta), bytes.empty() ? "" : " |" + bytes);
      interval_start = now;
      interval_tokens = 0;
      interval_eval_s = 0;
    }
  }
  // Activation memory per stage: every rank's peak, gathered once at the end (after the
  // per-step byte counts).
  {
    at::Tensor mine = at::tensor({static_cast<int64_t>(topo.pp_rank), peak_activation_bytes,
                                  static_cast<int64_t>(max_in_flight)}, at::kLong);
    at::Tensor all = topo.world->all_gather(mine, 0).view({topo.world_size, 3});
    if (rank0) {
      nlohmann::json ranks = nlohmann::json::array();
      for (int r = 0; r < topo.world_size; ++r)
        ranks.push_back({{"rank", r}, {"stage", all[r][0].item<int64_t>()},
                         {"peak_activation_bytes", all[r][1].item<int64_t>()},
                         {"max_micro_batches_in_flight", all[r][2].item<int64_t>()}});
      write_text_file(run_dir + "/memory.json", nlohmann::json{{"micro_batches", accumulation},
                                                               {"micro_batch", t.micro_batch},
                                                               {"ranks", ranks}}.dump(1) + "\n");
    }
    log_info("peak activation memory on this rank (stage {}): {:.2f} MiB with at most {} of {} micro-batches in "
             "flight", topo.pp_rank, static_cast<double>(peak_activation_bytes) / (1 << 20), max_in_flight,
             accumulation);
  }
  summary.steps = t.steps;
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  log_info("trained {} steps in {}: loss {:.4f} -> {:.4f}", t.steps, format_duration(summary.seconds),
               summary.first_loss, summary.final_loss);

  if (config.checkpoint.save_final) {
    save_final(config, model, topo, run_dir + "/final");
    log_info("saved weights: {}/final (Hugging Face format)", run_dir);
  }
  if (config.log.sample_tokens > 0) {  // every rank (TP groups gather logits); rank 0 prints
    std::vector<int64_t> prompt = data.encode_prompt(config.log.sample_prompt);
    if (prompt.empty()) prompt.push_back(config.model.bos_token_id);
    const size_t prompt_len = prompt.size();
    auto out = generate(model, prompt, config.log.sample_tokens, config.log.sample_temperature, t.seq_len,
                        static_cast<uint64_t>(t.seed), topo.pp_group.get());
    std::vector<int64_t> continuation(out.begin() + static_cast<int64_t>(prompt_len), out.end());
    log_info("sample: \"{}\" -> \"{}\"", config.log.sample_prompt, data.decode(continuation));
  }
  return summary;
}

}  // namespace exatrain
