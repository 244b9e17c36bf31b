#include "trainer/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/cuda/CUDAFunctions.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <limits>
#include <thread>
#include <fstream>
#include <fmt/ranges.h>
#include <optional>
#include <nlohmann/json.hpp>

#include "checkpoints/dist_checkpoint.h"
#include "checkpoints/hf_io.h"
#include "checkpoints/hf_release.h"
#include "data/tokenizer/tokenizer.h"
#include "trainer/core/atomic_file.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"
#include "trainer/core/progress.h"
#include "trainer/core/run_lock.h"
#include "trainer/model/exaone4.h"
#include "trainer/optim/distributed_optimizer.h"
#include "trainer/train/autocast_scope.h"
#include "trainer/optim/lr_schedule.h"
#include "trainer/plan/cost_model.h"
#include "trainer/train/fault_injection.h"
#include "trainer/train/flops.h"
#include "trainer/train/generate.h"
#include "trainer/train/memory_tracker.h"
#include "trainer/train/train_data.h"
#include "trainer/train/release.h"
#include "trainer/train/train_state.h"
#include "trainer/train/step_guard.h"
#include "trainer/train/stop_signals.h"
#include "trainer/train/watchdog.h"
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

// The largest rank's weights, gradients, optimizer state and activations (trainer/plan/cost_model.h):
// on a GPU against that device's free memory; on the CPU times the ranks on this node, against
// the node's available memory.
void check_memory_fits(const RunConfig& config, const Topology& topo, const at::Device& device) {
  const StageMemory rank = estimate_cost(config.model, CostLayout::of(config, topo.tp, topo.pp, topo.dp)).largest();
  if (device.is_cuda()) {  // untested here: no GPU on the development machine
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return;  // cannot tell: let the allocator say
    if (rank.total() > static_cast<double>(free_bytes))
      fail("the largest rank (pipeline stage {}) needs {}, but GPU {} has {:.1f} GiB free of {:.1f} GiB; raise "
           "parallel.tp or parallel.pp, set parallel.zero: 1, train.recompute: full or a smaller train.micro_batch "
           "(exatrain plan lists layouts that fit)", rank.stage, describe_total(rank), device.index(),
           static_cast<double>(free_bytes) / (1 << 30), static_cast<double>(total_bytes) / (1 << 30));
    return;
  }
  std::ifstream meminfo("/proc/meminfo");
  int64_t available_kib = -1;
  for (std::string key; meminfo >> key;) {
    int64_t value;
    std::string unit;
    meminfo >> value >> unit;
    if (key == "MemAvailable:") available_kib = value;
  }
  if (available_kib < 0) return;  // not Linux: nothing to check against
  const double need = topo.local_size * rank.total();
  const double have = 1024.0 * static_cast<double>(available_kib);
  if (need > have)
    fail("the model has {} parameters: the largest rank (pipeline stage {}) needs {}; {} ranks on this node need "
         "{:.1f} GiB, but it has {:.1f} GiB available; choose a smaller model or shard it over more ranks "
         "(parallel.tp, parallel.pp, parallel.zero: 1), or set train.recompute: full",
         count_params(build_param_specs(config.model)).total, rank.stage, describe_total(rank), topo.local_size,
         need / (1 << 30), have / (1 << 30));
}

// The variables by which a job says it was given GPUs (Slurm's GPU requests, the visible-device
// list), as "NAME=value" for the message; empty when none asks for one. A count of 0 (Slurm's
// --gpus-per-node=0, a CPU job) and "-1" / "NoDevFiles" (no device) ask for none.
std::string gpu_request_in_environment() {
  std::string found;
  for (const char* name : {"CUDA_VISIBLE_DEVICES", "SLURM_GPUS", "SLURM_GPUS_PER_NODE", "SLURM_GPUS_PER_TASK",
                           "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS"}) {
    const char* raw = std::getenv(name);
    if (!raw || !*raw) continue;
    std::string v = raw;
    if (v == "-1" || v == "NoDevFiles" || v == "none") continue;
    const std::string count = v.substr(v.rfind(':') == std::string::npos ? 0 : v.rfind(':') + 1);  // "h100:8"
    if (std::string(name).starts_with("SLURM_GPUS") && count.find_first_not_of('0') == std::string::npos) continue;
    found += (found.empty() ? "" : ", ") + std::string(name) + "=" + v;
  }
  return found;
}

// This rank's device: the CPU, or the GPU of its node-local rank (one rank per GPU).
at::Device choose_device(const RunConfig& config, const Topology& topo) {
  const DeviceKind kind = config.train.device;
  const int gpus = kind == DeviceKind::Cpu || !at::hasCUDA() ? 0 : static_cast<int>(c10::cuda::device_count());
  if (kind == DeviceKind::Auto && gpus == 0) {
    // A job that asked for GPUs and sees none has a broken driver, container or torch build: a
    // silent CPU run would be orders of magnitude slower and look like it works.
    if (const std::string asked = gpu_request_in_environment(); !asked.empty())
      config_error(config.locations, "train.device",
                   fmt::format("auto, but this job asked for GPUs ({}) and none is usable (check nvidia-smi, the "
                               "driver and the container's device access); set train.device: cpu to train on the "
                               "CPU anyway", asked));
  }
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

// Splits this rank's rows into micro-batches of `micro` rows (the last may be short): inputs,
// targets, with a mask loss weights = mask / per_rank_count, with document masks the segments.
MicroBatches split_micro_batches(const RankBatch& batch, int64_t micro, double per_rank_count) {
  MicroBatches out;
  const int64_t rows = batch.tokens.size(0), seq = batch.tokens.size(1) - 1;
  for (int64_t r = 0; r < rows; r += micro) {
    const int64_t n = std::min(micro, rows - r);
    at::Tensor window = batch.tokens.narrow(0, r, n);
    out.inputs.push_back(window.narrow(1, 0, seq));
    out.targets.push_back(window.narrow(1, 1, seq));
    if (batch.mask.defined()) out.weights.push_back(batch.mask.narrow(0, r, n) / per_rank_count);
    if (batch.segments.defined()) out.segments.push_back(batch.segments.narrow(0, r, n));
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
      note_progress();  // every validation batch is progress (trainer/train/watchdog.h)
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

// Validation losses as metrics.jsonl's `val_loss` object and as the log line's text.
std::pair<nlohmann::json, std::string> describe_validation(const TrainData& data, const std::vector<double>& losses) {
  std::pair<nlohmann::json, std::string> out{nlohmann::json::object(), ""};
  for (size_t v = 0; v < losses.size(); ++v) {
    const std::string& name = data.validation_sets()[v].name;
    out.first[name] = losses[v];
    out.second += fmt::format(" | val {} {:.4f}", name, losses[v]);
  }
  return out;
}

}  // namespace

namespace {

// The special token ids come from the run's tokenizer when it has one: the names its
// tokenizer_config.json gives (bos_token, eos_token, pad_token), else EXAONE's [BOS],
// [|endofturn|] and [PAD] if the vocabulary has them. A model id written in the run config (or
// taken from init.from_hf's config.json) that disagrees is an error; a preset's default yields.
void adopt_tokenizer_ids(RunConfig& config, const TrainData& data) {
  const Tokenizer* tok = data.tokenizer();
  if (!tok) return;
  std::map<std::string, std::string> names = {{"bos", "[BOS]"}, {"eos", "[|endofturn|]"}, {"pad", "[PAD]"}};
  const fs::path tokenizer_config = fs::path(config.data.tokenizer).parent_path() / "tokenizer_config.json";
  if (fs::exists(tokenizer_config)) {
    std::ifstream in(tokenizer_config);
    const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    for (auto& [key, name] : names) {
      if (!j.is_object() || !j.contains(key + "_token")) continue;
      const auto& v = j[key + "_token"];
      if (v.is_string()) name = v.get<std::string>();
      if (v.is_object() && v.contains("content") && v["content"].is_string()) name = v["content"].get<std::string>();
    }
  }
  const std::map<std::string, int64_t*> ids = {{"bos", &config.model.bos_token_id},
                                               {"eos", &config.model.eos_token_id},
                                               {"pad", &config.model.pad_token_id}};
  for (const auto& [key, name] : names) {
    const auto id = tok->token_to_id(name);
    if (!id) continue;
    const std::string model_key = "model." + key + "_token_id";
    int64_t& current = *ids.at(key);
    if (current == static_cast<int64_t>(*id)) continue;
    if (!config.init.from_hf.empty())
      fail("{}/config.json says {}_token_id {}, but the run's tokenizer ({}) has {} = {}; use the tokenizer released "
           "with the weights", config.init.from_hf, key, current, config.data.tokenizer, name, *id);
    const SourceLoc* loc = config.locations.find(model_key);
    if (loc && (loc->origin == config.source_path || loc->origin.starts_with("--set")))  // not a preset's default
      config_error2(config.locations, model_key, "data.tokenizer",
                    fmt::format("{}, but the tokenizer '{}' has {} = {}; remove {} (the tokenizer decides) or make "
                                "them agree", current, config.data.tokenizer, name, *id, model_key));
    current = static_cast<int64_t>(*id);
  }
}

// One run: set-up, steps, evaluation and saving around one TrainState.
class Trainer {
 public:
  Trainer(const RunConfig& config, const std::string& run_dir, Topology& topo, const ResumeOptions& resume)
      : config_(config), t_(config_.train), run_dir_(run_dir), topo_(topo), rank0_(topo.world_rank == 0) {
    setup(resume);
  }
  TrainSummary run();

 private:
  void setup(const ResumeOptions& resume);
  struct StepResult {
    double loss = 0, grad_norm = 0, lr = 0;
    StepJudgement judgement;  // update, skipped (non-finite, spike) or stop
    int first_bad_rank = -1;  // the lowest rank whose own loss or gradients were non-finite
    int signal = 0;           // a stop signal some rank received (the highest number)
    bool write_failed = false;  // rank 0 could not write metrics (agreed)
  };
  StepResult step();
  void log_step(const StepResult& r, const std::map<std::string, int64_t>& step_bytes, const std::vector<double>& val);
  // The validation before the first step (step 0 of a fresh run; a resumed run has it already).
  void validate_before_training();
  void save(const char* why);
  void report_save(const std::optional<SaveReport>& report, const char* why);
  void note_write(const std::string& error);
  void stop(int exit_code, const std::string& reason);
  void stop_on_signal(int signo);
  void stop_on_nonfinite(const StepResult& r);
  void finish(TrainSummary& summary);

  RunConfig config_;  // as given, with the special token ids the run's tokenizer names
  const TrainConfig& t_;
  std::string run_dir_;
  Topology& topo_;
  bool rank0_;
  TrainState state_;
  at::Device device_ = at::kCPU;
  int cuda_index_ = -1;
  int64_t rows_per_rank_ = 0, accumulation_ = 0;
  bool sequence_parallel_ = false;
  PipelineStage stage_;
  std::unique_ptr<Communicator> kv_replicas_, tied_embedding_;
  std::unique_ptr<Communicator> tp_gradients_;  // the TP ranks again, for gradient sums started in backward
  StageOptions stage_options_;
  std::unique_ptr<RunDirLock> lock_;  // rank 0: this process group owns the run directory
  LineAppender metrics_, checkpoint_log_;  // rank 0: RUN/metrics.jsonl, RUN/checkpoints.jsonl
  std::string write_error_;           // rank 0: a failed write of metrics not yet acted on
  bool write_warned_ = false;
  FaultInjector faults_;              // EXATRAIN_FAULT_INJECT (tests)
  // Set when the run must end before train.steps: the exit status and the one-line reason
  // (the same on every rank).
  int exit_code_ = 0;
  std::string stop_reason_;
  double interval_busy_s_ = 0, interval_step_s_ = 0;  // this rank, since the last log line
  double interval_exposed_s_ = 0;  // this rank's wait for gradient reductions after backward
  int64_t interval_steps_ = 0;
  std::unique_ptr<CheckpointSaver> saver_;
  double step_seconds_ = 0;  // training steps only, for the stall share
  int64_t steps_timed_ = 0;
  double flops_per_token_ = 0, peak_ = 1;
  int64_t start_step_ = 0, last_saved_ = -1;
  Clock::time_point start_, interval_start_;
  int64_t interval_tokens_ = 0;
  double interval_eval_s_ = 0;
  int max_in_flight_ = 0;
  int64_t peak_activation_bytes_ = 0;
  int64_t resident_bytes_ = 0;  // allocated at a step's start (weights, optimizer, buckets), the most seen
};

// Keeps the lines of RUN/metrics.jsonl up to `step` (a resumed run appends from there; lines
// of steps after the checkpoint, from the interrupted run, would otherwise repeat).
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  std::string kept, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;  // a line cut short by a crash or a full disk
    if (j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() > step) break;
    kept += line + "\n";
  }
  write_file_atomically(path, kept);
}

void Trainer::setup(const ResumeOptions& resume) {
  install_stop_signals();  // a signal during set-up stops the run after its first step
  faults_ = FaultInjector::from_env(topo_.world_rank);
  rows_per_rank_ = t_.global_batch / topo_.dp;  // this DP rank's slice of each global batch
  accumulation_ = rows_per_rank_ / t_.micro_batch;
  sequence_parallel_ = config_.parallel.sequence_parallel && topo_.tp > 1;
  MemoryTracker::install();
  if (t_.threads > 0) at::set_num_threads(static_cast<int>(t_.threads));
  // Everything that can be checked is checked before the run directory is touched.
  device_ = choose_device(config_, topo_);
  cuda_index_ = device_.is_cuda() ? device_.index() : -1;
  (void)run_param_specs(config_);  // train.freeze patterns that match nothing fail here, naming the key
  state_.data = std::make_unique<TrainData>(config_, topo_);
  adopt_tokenizer_ids(config_, *state_.data);
  try {
    parse_shard_size(config_.checkpoint.export_max_shard_size);
  } catch (const Error& e) {
    config_error(config_.locations, "checkpoint.export_max_shard_size", e.what());
  }
  // One process group per run directory, before anything in it is read or written: a second
  // `train` on the same --run-dir (or a resubmitted job while the first still runs) stops here.
  {
    std::string locked;
    if (rank0_) {
      try {
        std::error_code ec;
        fs::create_directories(run_dir_, ec);
        if (ec) fail("cannot create run directory '{}': {}", run_dir_, ec.message());
        lock_ = std::make_unique<RunDirLock>(run_dir_);
      } catch (const Error& e) {
        locked = e.what();
      }
    }
    if (const std::string error = all_gather_strings(*topo_.world, locked)[0]; !error.empty()) fail("{}", error);
  }
  state_.guard = std::make_unique<StepGuard>(t_.on_nonfinite == OnNonfinite::Skip ? NonfiniteAction::Skip
                                                                                   : NonfiniteAction::Stop,
                                             t_.spike.window, t_.spike.zscore);
  const std::string tokenizer_sha = state_.data->tokenizer() ? state_.data->tokenizer()->content_sha256() : "";
  std::unique_ptr<CheckpointReader> checkpoint;
  std::string fresh_reason;
  if (resume.enabled) {
    const std::string dir = resume.from.empty() ? latest_checkpoint(run_dir_ + "/checkpoints") : resume.from;
    if (dir.empty()) {
      fresh_reason = fmt::format("--resume: '{}' holds no checkpoint yet; starting from step 0", run_dir_);
    } else {
      checkpoint = std::make_unique<CheckpointReader>(dir);
      check_resumable(checkpoint->info(), config_, dir, tokenizer_sha);
      if (checkpoint->info().step > t_.steps)
        config_error(config_.locations, "train.steps",
                     fmt::format("{}, but checkpoint '{}' is at step {}; raise train.steps to continue it", t_.steps,
                                 dir, checkpoint->info().step));
    }
  } else if (rank0_ && fs::exists(run_dir_ + "/metrics.jsonl")) {
    fail("run directory '{}' already holds a run (metrics.jsonl); continue it with --resume, or choose another "
         "--run-dir", run_dir_);
  }
  check_memory_fits(config_, topo_, device_);
  // The groups of TP ranks that hold the same replicated KV head (num_kv_heads < tp).
  if (topo_.tp > config_.model.num_kv_heads)
    kv_replicas_ = topo_.tp_group->split("kv", topo_.tp_rank / (topo_.tp / config_.model.num_kv_heads), topo_.tp_rank);
  stage_ = stage_of(config_, topo_.pp, topo_.pp_rank);
  state_.model = std::make_unique<Exaone4Model>(
      config_.model, at::TensorOptions().dtype(at::kFloat).device(device_),
      TensorParallelGroups{topo_.tp > 1 ? topo_.tp_group.get() : nullptr, kv_replicas_.get()}, stage_, config_.lora,
      config_.train.freeze);
  state_.model->set_kernels(t_.kernels);
  // Tied embeddings under PP: the first and last stage each hold a copy; their gradients are
  // summed over this two-rank group so the copies stay equal.
  if (config_.model.tie_embeddings && topo_.pp > 1) {
    const bool member = stage_.first || stage_.last;
    tied_embedding_ = topo_.world->split("embedding", member ? topo_.tp_rank + topo_.tp * topo_.dp_rank
                                                             : topo_.tp * topo_.dp + topo_.world_rank, topo_.pp_rank);
  }
  if (topo_.tp > 1) tp_gradients_ = topo_.tp_group->split("tp", 0, topo_.tp_rank);
  // NCCL communicators now, every rank in the same order, before any collective on the device:
  // created inside a first collective, ranks arriving at different times would wait for one
  // another in ncclCommInitRank, outside any timeout.
  if (device_.is_cuda())
    for (const Communicator* group : {topo_.world.get(), topo_.tp_group.get(), topo_.dp_group.get(),
                                      topo_.pp_group.get(), kv_replicas_.get(), tied_embedding_.get(),
                                      tp_gradients_.get()})
      if (group) group->init_nccl();
  Exaone4Model& model = *state_.model;
  if (!checkpoint && !config_.init.from_hf.empty()) {
    load_hf_weights(model, config_.init.from_hf);
    init_adapters(model);
  } else if (!checkpoint) {
    init_parameters(model, static_cast<uint64_t>(t_.seed));
  }
  // Frozen linears of a bf16 run are held in bf16 (a checkpoint then holds them so too).
  if (t_.precision == Precision::BF16) model.hold_frozen_linears_in(at::kBFloat16);
  model.set_requires_grad(true);
  state_.optimizer = std::make_unique<DistributedOptimizer>(
      model, config_.optimizer,
      OptimizerGroups{topo_.tp_group.get(), topo_.dp_group.get(), topo_.world.get(), tp_gradients_.get(),
                      stage_.first || stage_.last ? tied_embedding_.get() : nullptr},
      static_cast<int>(config_.parallel.zero), sequence_parallel_, GradReduceOptions::of(config_.parallel),
      t_.weights == Precision::BF16 ? at::kBFloat16 : at::kFloat);
  // bf16 weights: the optimizer took its fp32 master copy from the fp32 weights above; from now
  // on the model holds them in bf16 (a checkpoint load then overwrites the master and copies it in).
  if (t_.weights == Precision::BF16) {
    model.hold_weights_in(at::kBFloat16);
    state_.optimizer->copy_master_to_params();
  }
  // The checkpoint is read (every piece this rank needs, checksums checked) before the run
  // directory is touched: a corrupt checkpoint costs nothing.
  double load_seconds = 0;
  if (checkpoint) {
    const auto t0 = Clock::now();
    load_checkpoint(state_, *checkpoint, topo_);
    topo_.world->barrier();
    load_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    last_saved_ = state_.step;
  }
  if (rank0_) prepare_run_dir(run_dir_);
  topo_.world->barrier();
  setup_logging(config_.log.level, topo_.world_rank,
                rank0_ ? run_dir_ + "/train.log" : fmt::format("{}/train.rank{}.log", run_dir_, topo_.world_rank),
                /*console=*/rank0_);
  if (rank0_) write_file_atomically(run_dir_ + "/config.resolved.yaml", resolved_yaml(config_));
  log_info("layout: {}; device {}", topo_.describe(), device_.str());
  for (const auto& line : state_.data->describe()) log_info("{}", line);
  if (!fresh_reason.empty()) log_info("{}", fresh_reason);
  if (!faults_.empty()) log_warn("fault injection (tests only): EXATRAIN_FAULT_INJECT={}", faults_.spec());

  log_info("pipeline stage {} of {}: layers [{}, {}){}{}", topo_.pp_rank, topo_.pp, stage_.first_layer, stage_.end_layer,
           stage_.first ? ", embedding" : "", stage_.last ? ", final norm, lm_head and loss" : "");
  if (!checkpoint && !config_.init.from_hf.empty())
    log_info("weights from {} (Hugging Face; each rank read its own slices)", config_.init.from_hf);
  if (checkpoint) {
    const CheckpointInfo& info = checkpoint->info();
    log_info("resumed from {} (step {}, {} tokens; saved under {}) in {:.2f} s", checkpoint->dir(), info.step,
             info.tokens, info.layout.describe(), load_seconds);
  }
  start_step_ = state_.step;

  const ParamCounts counts = count_params(model.specs());
  flops_per_token_ = train_flops_per_token(config_.model, t_.seq_len);
  peak_ = measure_gemm_peak_flops(0.3);
  int64_t local_params = 0, local_trainable = 0, param_bytes = 0;
  for (const auto& p : model.params()) {
    local_params += p.numel();
    param_bytes += p.numel() * static_cast<int64_t>(p.element_size());
    if (p.requires_grad()) local_trainable += p.numel();
  }
  log_info("model: {} parameters ({} non-embedding), {} layers; {} threads; fp32 GEMM peak {:.1f} GFLOP/s",
           counts.total, counts.non_embedding(), config_.model.num_layers, at::get_num_threads(), peak_ / 1e9);
  log_info("{}", state_.optimizer->buckets().describe());
  const ParamCounts whole = count_params(run_param_specs(config_));  // the whole model, every stage
  if (whole.trainable < whole.total + whole.adapters)
    log_info("trainable: {} of {} parameters ({:.3f}%){}{}", whole.trainable, whole.total + whole.adapters,
             100.0 * static_cast<double>(whole.trainable) / static_cast<double>(whole.total + whole.adapters),
             config_.lora.enabled() ? fmt::format("; LoRA rank {}, alpha {}, on {}", config_.lora.rank,
                                                  config_.lora.alpha, fmt::join(config_.lora.targets, ", "))
                                    : "",
             config_.train.freeze.empty() ? "" : fmt::format("; frozen: {}", fmt::join(config_.train.freeze, ", ")));
  const auto mib = [](int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); };
  log_info("memory on this rank: parameters {:.2f} MiB, gradients {:.2f} MiB, optimizer state {:.2f} MiB (zero {})",
           mib(param_bytes), mib(4 * local_trainable), mib(state_.optimizer->state_bytes()), config_.parallel.zero);
  log_info("train: {} steps x {} sequences x {} tokens ({} per DP rank, {} micro-batches of {}), precision {}, "
           "recompute {}{}", t_.steps, t_.global_batch, t_.seq_len, rows_per_rank_, accumulation_, t_.micro_batch,
           t_.precision == Precision::BF16 ? "bf16" : "fp32", t_.recompute == Recompute::Full ? "full" : "none",
           sequence_parallel_ ? ", sequence parallel" : "");
  if (config_.checkpoint.every > 0)
    log_info("checkpoints: every {} steps into {}/checkpoints (keep {}{})", config_.checkpoint.every, run_dir_,
             config_.checkpoint.keep, config_.checkpoint.async ? ", written beside training" : "");

  if (rank0_) {
    const std::string path = run_dir_ + "/metrics.jsonl";
    if (checkpoint) truncate_metrics(path, state_.step);
    metrics_.open(path, /*truncate=*/!checkpoint);
    checkpoint_log_.open(run_dir_ + "/checkpoints.jsonl", /*truncate=*/false);
  }
  if (t_.spike.zscore > 0)
    log_info("spikes: an update is skipped when the loss or the gradient norm is {} deviations above the mean of the "
             "last {} steps", t_.spike.zscore, t_.spike.window);
  saver_ = std::make_unique<CheckpointSaver>(config_, topo_, run_dir_);
  const at::DeviceType device_type = device_.type();
  const bool bf16 = t_.precision == Precision::BF16;
  stage_options_ = StageOptions{t_.recompute == Recompute::Full, sequence_parallel_,
                                [bf16, device_type](const std::function<at::Tensor()>& fn) {
                                  AutocastScope autocast(bf16, device_type);
                                  return fn();
                                },
                                [this] { state_.optimizer->arm_gradient_reduction(); }};
}

Trainer::StepResult Trainer::step() {
  Exaone4Model& model = *state_.model;
  const int64_t step = state_.step;  // 0-based index of the step being taken
  StepResult r;
  r.lr = learning_rate(config_.schedule, config_.optimizer.lr, step, t_.steps);
  if (faults_.at(FaultKind::Signal, step + 1)) std::raise(SIGUSR1);
  if (faults_.since(FaultKind::Slow, step + 1)) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  if (faults_.at(FaultKind::Hang, step + 1)) {
    note_progress("step (injected hang)");
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  {
    // Gradients accumulate in the optimizer's flat fp32 buffer (grad_buckets.h), allocated once.
    at::NoGradGuard no_grad;
    state_.optimizer->zero_grad();
    // An injected NaN in this rank's first trainable parameter's gradient: set before backward,
    // it survives the accumulation, and the check before any exchange (GradientBuckets) sees it
    // as a real one.
    if (faults_.at(FaultKind::NanGrad, step + 1))
      for (size_t i = 0; i < model.params().size(); ++i)
        if (model.specs()[i].trainable) {
          state_.optimizer->gradient(i)[0] = std::numeric_limits<float>::quiet_NaN();
          break;
        }
  }
  model.begin_step(step);  // LoRA dropout masks are a function of the step
  note_progress("data");
  const RankBatch batch = state_.data->next(step).to(device_);
  note_progress("step");
  // With a loss mask the step's loss is the mean over the global batch's counted targets:
  // weights = mask / (count / dp), as DP averages gradients over its ranks.
  double per_rank_count = 1.0;
  if (batch.mask.defined()) {
    at::Tensor count = at::full({1}, batch.mask.sum().item<double>(), at::kDouble);
    if (topo_.dp > 1) topo_.dp_group->all_reduce(count);
    per_rank_count = std::max(count.item<double>(), 1.0) / topo_.dp;
  }
  const MicroBatches micro_batches = split_micro_batches(batch, t_.micro_batch, per_rank_count);
  const int64_t baseline = MemoryTracker::allocated(cuda_index_);
  resident_bytes_ = std::max(resident_bytes_, baseline);
  MemoryTracker::reset_peak(cuda_index_);
  // 1F1B over the pipeline stages (one stage: forward, backward per micro-batch).
  const PipelineStepResult pipe = run_1f1b(model, *topo_.pp_group, micro_batches, stage_options_);
  peak_activation_bytes_ = std::max(peak_activation_bytes_, MemoryTracker::peak(cuda_index_) - baseline);
  max_in_flight_ = std::max(max_in_flight_, pipe.max_in_flight);
  // The gradient reduction, mostly started during the last backward (GradientBuckets), ends
  // here. Each bucket checked this rank's own gradients before any exchange (the tied
  // embedding's, TP sums, DP), so a NaN is traced to the rank that made it.
  r.grad_norm = state_.optimizer->reduce_gradients(config_.optimizer.grad_clip);
  const bool grads_finite = state_.optimizer->local_gradients_finite();
  interval_exposed_s_ += state_.optimizer->exposed_comm_seconds();
  // The mean loss over the global batch: every DP rank's share, counted once per TP group.
  double share = topo_.tp_rank == 0 && stage_.last ? pipe.loss / topo_.dp : 0.0;
  if (faults_.at(FaultKind::NanLoss, step + 1)) share = std::numeric_limits<double>::quiet_NaN();
  if (faults_.at(FaultKind::LossSpike, step + 1)) share *= 100;
  at::Tensor loss_sum = at::full({1}, share, at::kDouble);
  topo_.world->all_reduce(loss_sum);
  r.loss = loss_sum.item<double>();
  // What every rank must agree on before the update, in one max-reduction: the first rank that
  // saw a non-finite value (encoded as world_size - rank), a stop signal, a failed metrics write.
  const bool bad_here = !std::isfinite(share) || !grads_finite;
  at::Tensor flags = at::tensor({bad_here ? static_cast<int64_t>(topo_.world_size - topo_.world_rank) : int64_t{0},
                                 static_cast<int64_t>(stop_signal()), int64_t{write_error_.empty() ? 0 : 1}}, at::kLong);
  topo_.world->all_reduce(flags, ReduceOp::Max);
  const int64_t bad = flags[0].item<int64_t>();
  r.first_bad_rank = bad > 0 ? static_cast<int>(topo_.world_size - bad) : -1;
  r.signal = static_cast<int>(flags[1].item<int64_t>());
  r.write_failed = flags[2].item<int64_t>() != 0;
  r.judgement = state_.guard->judge(r.loss, r.grad_norm);
  if (r.judgement.verdict == StepVerdict::StopNonfinite) return r;  // the state stays the last good one
  if (r.judgement.verdict == StepVerdict::Update) {
    saver_->before_update();  // an asynchronous save's copy of the state must be complete
    state_.optimizer->step(r.lr);
  }
  state_.step = step + 1;
  state_.tokens += t_.global_batch * t_.seq_len;
  if (step == 0) state_.first_loss = r.loss;
  return r;
}

void Trainer::validate_before_training() {
  note_progress("evaluation");
  const auto eval_start = Clock::now();
  const std::vector<double> val_losses = evaluate(*state_.model, topo_, *state_.data, stage_options_, t_.micro_batch);
  const auto [val_json, val_text] = describe_validation(*state_.data, val_losses);
  const double seconds = std::chrono::duration<double>(Clock::now() - eval_start).count();
  if (rank0_) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    note_write(metrics_.append(nlohmann::json{{"step", 0}, {"elapsed_s", elapsed}, {"val_loss", val_json}}.dump()));
  }
  log_info("step {:>{}}/{} | before training{} | {:.2f} s", 0, std::to_string(t_.steps).size(), t_.steps, val_text,
           seconds);
  interval_eval_s_ += seconds;  // not training time
}

void Trainer::log_step(const StepResult& r, const std::map<std::string, int64_t>& step_bytes,
                       const std::vector<double>& val_losses) {
  const int64_t step = state_.step;
  const auto now = Clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double dt = std::chrono::duration<double>(now - interval_start_).count() - interval_eval_s_;
  const double tokens_per_s = static_cast<double>(interval_tokens_) / std::max(dt, 1e-9);
  const double data_wait_share = state_.data->take_wait_seconds() / std::max(dt, 1e-9);
  // Per-rank MFU: the job's model FLOPs over all ranks' peaks.
  const double mfu = tokens_per_s * flops_per_token_ / (peak_ * topo_.world_size);
  const double eta = elapsed / static_cast<double>(step - start_step_) * static_cast<double>(t_.steps - step);
  // Each rank's busy time per step (its step time less its waits in collectives), gathered:
  // a slow node shows as the one rank whose busy time stands out while the others wait.
  // With it, each rank's exposed gradient communication: its wait for the DP reduction (and the
  // exchanges before it) after its last backward, what overlapping with backward saves.
  const double per_step = static_cast<double>(std::max<int64_t>(interval_steps_, 1));
  at::Tensor mine = at::tensor({interval_busy_s_ / per_step, interval_exposed_s_ / per_step}, at::kDouble);
  at::Tensor all = (topo_.world_size > 1 ? topo_.world->all_gather(mine, 0) : mine).view({-1, 2}).contiguous();
  std::vector<double> busy_s, exposed_s;
  for (int64_t k = 0; k < all.size(0); ++k) {
    busy_s.push_back(all[k][0].item<double>());
    exposed_s.push_back(all[k][1].item<double>());
  }
  const int slowest = static_cast<int>(std::max_element(busy_s.begin(), busy_s.end()) - busy_s.begin());
  auto spread = [](std::vector<double> v) {  // min, median, max
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return std::array<double, 3>{v.front(), n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.back()};
  };
  const auto [busy_min, median, busy_max] = spread(busy_s);
  const auto exposed = spread(exposed_s);
  const double step_s = interval_step_s_ / static_cast<double>(std::max<int64_t>(interval_steps_, 1));
  const auto [val_json, val_text] = describe_validation(*state_.data, val_losses);
  if (rank0_) {
    nlohmann::json m = {{"step", step}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm},
                        {"tokens_per_s", tokens_per_s}, {"mfu", mfu}, {"elapsed_s", elapsed},
                        {"data_wait_share", data_wait_share}, {"comm_bytes", step_bytes},
                        {"optimizer_state_bytes", state_.optimizer->state_bytes()},
                        {"max_micro_batches_in_flight", max_in_flight_},
                        {"peak_activation_bytes", peak_activation_bytes_},
                        {"step_s", step_s},
                        {"rank_busy_s", {{"min", busy_min}, {"median", median}, {"max", busy_max},
                                         {"slowest_rank", slowest}}},
                        {"exposed_comm_s", {{"min", exposed[0]}, {"median", exposed[1]}, {"max", exposed[2]}}},
                        {"grad_buckets", {{"count", state_.optimizer->buckets().bucket_count()},
                                          {"started_in_backward", state_.optimizer->buckets().started_in_backward()},
                                          {"overlap", state_.optimizer->buckets().options().overlap}}},
                        {"loss_zscore", r.judgement.loss_zscore}, {"grad_norm_zscore", r.judgement.grad_norm_zscore},
                        {"skipped_updates", {{"nonfinite", state_.guard->skipped_nonfinite()},
                                             {"spike", state_.guard->skipped_spikes()}}}};
    if (r.judgement.verdict == StepVerdict::SkipNonfinite) m["skipped"] = "nonfinite";
    if (r.judgement.verdict == StepVerdict::SkipSpike) m["skipped"] = "spike";
    if (!val_losses.empty()) m["val_loss"] = val_json;
    note_write(metrics_.append(m.dump()));
  }
  std::string bytes;
  for (const auto& [key, n] : step_bytes) bytes += fmt::format(" {}={:.1f}MiB", key, static_cast<double>(n) / (1 << 20));
  const std::string ranks =
      topo_.world_size > 1 ? fmt::format(" | busy {:.3f}/{:.3f}/{:.3f} s (slowest rank {}) | exposed comm {:.4f} s",
                                         busy_min, median, busy_max, slowest, exposed[2])
                           : "";
  log_info("step {:>{}}/{} | loss {:.4f}{} | lr {:.2e} | grad norm {:.3f} | {:.0f} tok/s | mfu {:.1f}% | "
           "data wait {:.1f}% | eta {}{}{}",
           step, std::to_string(t_.steps).size(), t_.steps, r.loss, val_text, r.lr, r.grad_norm, tokens_per_s,
           100 * mfu, 100 * data_wait_share, format_duration(eta), ranks, bytes.empty() ? "" : " |" + bytes);
  interval_busy_s_ = interval_step_s_ = interval_exposed_s_ = 0;
  interval_steps_ = 0;
  interval_start_ = now;
  interval_tokens_ = 0;
  interval_eval_s_ = 0;
}

void Trainer::report_save(const std::optional<SaveReport>& report, const char* why) {
  if (!report) return;
  if (!report->error.empty()) {
    // Agreed on every rank (the saver gathers the first failing rank's error).
    last_saved_ = -1;  // this step is not saved: the end of training must save again
    const std::string previous = latest_checkpoint(run_dir_ + "/checkpoints");
    const std::string what = fmt::format(
        "checkpoint {} ({}) could not be written: {}; nothing was committed{}", report->dir, why, report->error,
        previous.empty() ? "" : fmt::format(" and {} is intact", previous));
    if (config_.checkpoint.on_error == OnWriteError::Warn && exit_code_ == 0) {
      log_warn("{}; training goes on (checkpoint.on_error: warn)", what);
    } else {
      if (exit_code_ != 0) log_warn("{}", what);  // the run already stops for another reason
      stop(1, what + "; free space or fix the permissions, then continue with --resume");
    }
    return;
  }
  const double mib = static_cast<double>(report->bytes) / (1 << 20);
  const double step_s = steps_timed_ > 0 ? step_seconds_ / static_cast<double>(steps_timed_) : 0.0;
  log_info("saved checkpoint {} ({}{}): {:.1f} MiB in {:.2f} s ({:.0f} MiB/s); training stalled {:.3f} s{}",
           report->dir, why, report->async ? ", async" : "", mib, report->seconds,
           mib / std::max(report->seconds, 1e-9), report->stall,
           step_s > 0 ? fmt::format(" ({:.1f}% of a {:.3f} s step)", 100 * report->stall / step_s, step_s) : "");
  if (rank0_) {
    nlohmann::json m = {{"checkpoint", report->step}, {"dir", report->dir}, {"bytes", report->bytes},
                        {"seconds", report->seconds}, {"stall_s", report->stall}, {"async", report->async},
                        {"step_s", step_s}};
    note_write(checkpoint_log_.append(m.dump()));
  }
}

// Rank 0's failed writes of metrics: the first is remembered and agreed at the next step (every
// rank then follows checkpoint.on_error); with warn it is logged once.
void Trainer::note_write(const std::string& error) {
  if (error.empty()) return;
  if (config_.checkpoint.on_error == OnWriteError::Warn) {
    if (!write_warned_) log_warn("{}; training goes on without these lines (checkpoint.on_error: warn)", error);
    write_warned_ = true;
    return;
  }
  if (write_error_.empty()) write_error_ = error;
}

void Trainer::stop(int exit_code, const std::string& reason) {
  if (exit_code_ != 0) return;  // the first reason stands
  exit_code_ = exit_code;
  stop_reason_ = reason;
}

// A stop signal, agreed at this step boundary: the step is complete; save it synchronously.
void Trainer::stop_on_signal(int signo) {
  note_progress("checkpoint");
  report_save(saver_->drain(), "checkpoint.every");
  if (last_saved_ != state_.step) {
    save(signal_name(signo));
    report_save(saver_->drain(), signal_name(signo));
  }
  if (exit_code_ != 0) return;  // the save failed: that is the reason to report
  stop(kExitRequeue, fmt::format("{} received: stopped at step {} of {} and saved {}/checkpoints/{}; exit status {} "
                                 "asks the job script to requeue; continue with --resume",
                                 signal_name(signo), state_.step, t_.steps, run_dir_, checkpoint_name(state_.step),
                                 kExitRequeue));
}

// train.on_nonfinite: stop. The update was not applied: the state is the last good one (after
// step N-1); it is saved, and the run ends naming the step and the first rank that saw it.
void Trainer::stop_on_nonfinite(const StepResult& r) {
  const int64_t step = state_.step + 1;
  std::string who = "no single rank (it appeared in a reduction)";
  if (r.first_bad_rank >= 0) {
    const int rank = r.first_bad_rank;
    // world rank = (pp_rank * dp + dp_rank) * tp + tp_rank (trainer/parallel/topology.h)
    who = fmt::format("rank {}: pipeline stage {}, tp rank {}, dp rank {}", rank, rank / (topo_.tp * topo_.dp),
                      rank % topo_.tp, (rank / topo_.tp) % topo_.dp);
  }
  const std::string what = fmt::format("step {}: the {} is {} (first seen on {})", step,
                                       std::isfinite(r.loss) ? "gradient norm" : "loss",
                                       std::isfinite(r.loss) ? r.grad_norm : r.loss, who);
  note_progress("checkpoint");
  report_save(saver_->drain(), "checkpoint.every");
  if (last_saved_ != state_.step) {
    save("last good state");
    report_save(saver_->drain(), "last good state");
  }
  if (exit_code_ != 0) {  // the save failed too: both reasons
    stop_reason_ = what + "; " + stop_reason_;
    return;
  }
  stop(1, fmt::format("{}; the update was not applied and the last good state (step {}) is in {}/checkpoints/{}; "
                      "lower optimizer.lr, check the data, or set train.on_nonfinite: skip",
                      what, state_.step, run_dir_, checkpoint_name(state_.step)));
}

void Trainer::save(const char* why) {
  const auto start = Clock::now();
  state_.data->wait_verified();  // no checkpoint of state trained on unchecked shards
  last_saved_ = state_.step;  // before the report: a failed save resets it
  report_save(saver_->save(state_), why);
  interval_eval_s_ += std::chrono::duration<double>(Clock::now() - start).count();  // not training time
}

TrainSummary Trainer::run() {
  TrainSummary summary;
  summary.run_dir = run_dir_;
  start_ = interval_start_ = Clock::now();
  const int64_t tokens_per_step = t_.global_batch * t_.seq_len;
  CommContext& comm = topo_.world->context();
  // A rank stuck outside a collective names itself before the others' collective timeouts fire.
  std::optional<ProgressWatchdog> watchdog;
  if (topo_.world_size > 1) watchdog.emplace(0.9 * config_.parallel.timeout_s, topo_.world_rank);
  // Validation before the first step and after the last, with train.eval_every or an
  // evaluation-only dataset (data.datasets[].eval_only or weight 0).
  const bool validates =
      t_.eval_every > 0 || std::any_of(config_.data.datasets.begin(), config_.data.datasets.end(),
                                       [](const DatasetConfig& d) { return d.evaluation_only(); });
  if (validates && state_.step == 0) validate_before_training();
  while (state_.step < t_.steps && exit_code_ == 0) {
    comm.step = state_.step + 1;
    note_step(state_.step + 1);
    comm.reset_bytes();
    const double waited_before = comm.wait_seconds;
    const auto step_start = Clock::now();
    const StepResult r = step();
    const double step_wall = std::chrono::duration<double>(Clock::now() - step_start).count();
    if (r.judgement.verdict == StepVerdict::StopNonfinite) {
      stop_on_nonfinite(r);
      break;
    }
    step_seconds_ += step_wall;
    steps_timed_ += 1;
    interval_step_s_ += step_wall;
    interval_busy_s_ += step_wall - (comm.wait_seconds - waited_before);
    interval_steps_ += 1;
    const int64_t step = state_.step;  // steps completed
    interval_tokens_ += tokens_per_step;
    summary.final_loss = r.loss;
    if (r.judgement.verdict == StepVerdict::SkipNonfinite)
      log_warn("step {}: non-finite loss {} / gradient norm {} (first seen on rank {}); update skipped "
               "(train.on_nonfinite: skip; {} so far)", step, r.loss, r.grad_norm, r.first_bad_rank,
               state_.guard->skipped_nonfinite());
    if (r.judgement.verdict == StepVerdict::SkipSpike)
      log_warn("step {}: spike: loss {:.4f} (z {:.1f}), gradient norm {:.3f} (z {:.1f}) against the last {} steps; "
               "update skipped (train.spike.zscore {}; {} so far)", step, r.loss, r.judgement.loss_zscore, r.grad_norm,
               r.judgement.grad_norm_zscore, t_.spike.window, t_.spike.zscore, state_.guard->skipped_spikes());
    const std::map<std::string, int64_t> step_bytes = comm.bytes;  // this step's, before any evaluation
    const bool eval_now = (t_.eval_every > 0 && step % t_.eval_every == 0) || (validates && step == t_.steps);
    std::vector<double> val_losses;
    if (eval_now) {
      note_progress("evaluation");
      const auto eval_start = Clock::now();
      val_losses = evaluate(*state_.model, topo_, *state_.data, stage_options_, t_.micro_batch);
      interval_eval_s_ += std::chrono::duration<double>(Clock::now() - eval_start).count();
    }
    if (step % config_.log.every == 0 || step == start_step_ + 1 || step == t_.steps || eval_now ||
        r.judgement.verdict != StepVerdict::Update || r.signal != 0)
      log_step(r, step_bytes, val_losses);
    note_progress("checkpoint");
    if (saver_->in_flight()) {
      const auto poll_start = Clock::now();
      report_save(saver_->poll(), "checkpoint.every");
      interval_eval_s_ += std::chrono::duration<double>(Clock::now() - poll_start).count();
    }
    if (r.write_failed && exit_code_ == 0) {
      // Rank 0 could not write metrics (checkpoint.on_error: stop): every rank ends here, after
      // trying to save this step (it may fail too; the previous checkpoint stays intact).
      const std::string error = all_gather_strings(*topo_.world, write_error_)[0];
      stop(1, fmt::format("{}; stopped at step {} (checkpoint.on_error: stop)", error, step));
      report_save(saver_->drain(), "checkpoint.every");
      if (last_saved_ != step) {
        save("write error");
        report_save(saver_->drain(), "write error");
      }
      break;
    }
    if (r.signal != 0) {
      stop_on_signal(r.signal);
      break;
    }
    if (config_.checkpoint.every > 0 && step % config_.checkpoint.every == 0) save("checkpoint.every");
  }
  watchdog.reset();
  if (exit_code_ != 0) {
    report_save(saver_->drain(), "checkpoint.every");
    summary.steps = state_.step;
    summary.first_loss = state_.first_loss;
    summary.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    summary.exit_code = exit_code_;
    summary.stop_reason = stop_reason_;
    if (exit_code_ == kExitRequeue) log_info("{}", stop_reason_);
    else log_warn("{}", stop_reason_);
    return summary;
  }
  finish(summary);
  return summary;
}

void Trainer::finish(TrainSummary& summary) {
  // Activation memory per stage: every rank's peak, gathered once at the end (after the
  // per-step byte counts).
  {
    at::Tensor mine = at::tensor({static_cast<int64_t>(topo_.pp_rank), peak_activation_bytes_,
                                  static_cast<int64_t>(max_in_flight_), resident_bytes_}, at::kLong);
    at::Tensor all = topo_.world->all_gather(mine, 0).view({topo_.world_size, 4});
    if (rank0_) try {
      nlohmann::json ranks = nlohmann::json::array();
      for (int r = 0; r < topo_.world_size; ++r)
        ranks.push_back({{"rank", r}, {"stage", all[r][0].item<int64_t>()},
                         {"peak_activation_bytes", all[r][1].item<int64_t>()},
                         {"max_micro_batches_in_flight", all[r][2].item<int64_t>()},
                         {"resident_bytes", all[r][3].item<int64_t>()}});
      write_file_atomically(run_dir_ + "/memory.json", nlohmann::json{{"micro_batches", accumulation_},
                                                                      {"micro_batch", t_.micro_batch},
                                                                      {"ranks", ranks}}.dump(1) + "\n");
    } catch (const Error& e) {
      note_write(e.what());
    }
    log_info("peak activation memory on this rank (stage {}): {:.2f} MiB with at most {} of {} micro-batches in "
             "flight", topo_.pp_rank, static_cast<double>(peak_activation_bytes_) / (1 << 20), max_in_flight_,
             accumulation_);
  }
  summary.steps = state_.step;
  summary.first_loss = state_.first_loss;
  summary.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  log_info("trained {} steps ({} in this process) in {}: loss {:.4f} -> {:.4f}", state_.step,
           state_.step - start_step_, format_duration(summary.seconds), summary.first_loss, summary.final_loss);

  // The end state is saved when checkpoints are on (train.steps may be raised later) and for
  // RUN/final, which is the release export of that checkpoint.
  report_save(saver_->drain(), "checkpoint.every");
  if ((config_.checkpoint.every > 0 || config_.checkpoint.save_final) && last_saved_ != state_.step)
    save("end of training");
  report_save(saver_->drain(), "end of training");
  if (exit_code_ == 0 && last_saved_ != state_.step && (config_.checkpoint.every > 0 || config_.checkpoint.save_final))
    stop(1, stop_reason_.empty() ? "the end-of-training checkpoint could not be written" : stop_reason_);
  if (exit_code_ != 0) {  // the last checkpoint failed: no release can be made from it
    summary.exit_code = exit_code_;
    summary.stop_reason = stop_reason_;
    log_warn("{}", stop_reason_);
    return;
  }
  const Exaone4Model& model = *state_.model;
  if (config_.checkpoint.save_final) {
    // Every rank writes its share of the release's shards from the checkpoint just saved.
    const std::string final_dir = run_dir_ + "/final";
    if (rank0_) {
      std::error_code ec;
      fs::remove_all(final_dir, ec);  // an earlier end of this run (before a --resume): the checkpoint has it all
    }
    topo_.world->barrier();
    CheckpointReader reader(run_dir_ + "/checkpoints/" + checkpoint_name(state_.step));
    ExportOptions options;
    options.output = final_dir;
    options.dtype = config_.checkpoint.export_dtype;
    options.max_shard_bytes = parse_shard_size(config_.checkpoint.export_max_shard_size);
    const ExportReport r = export_checkpoint(reader, options, topo_.world.get());
    log_info("saved weights: {} (Hugging Face release, {}, shards written by {} ranks, {:.2f} s)", final_dir,
             dtype_name(r.dtype), topo_.world_size, r.seconds);
  }
  if (config_.log.sample_tokens > 0) {  // every rank (TP groups gather logits); rank 0 prints
    std::vector<int64_t> prompt = state_.data->encode_prompt(config_.log.sample_prompt);
    if (prompt.empty()) prompt.push_back(config_.model.bos_token_id);
    const size_t prompt_len = prompt.size();
    auto out = generate(model, prompt, config_.log.sample_tokens, config_.log.sample_temperature, t_.seq_len,
                        static_cast<uint64_t>(t_.seed), topo_.pp_group.get());
    std::vector<int64_t> continuation(out.begin() + static_cast<int64_t>(prompt_len), out.end());
    log_info("sample: \"{}\" -> \"{}\"", config_.log.sample_prompt, state_.data->decode(continuation));
  }
  // A metrics write that failed at the end (checkpoint.on_error: stop): the run is complete, but
  // its record is not; say so with the exit status.
  if (const std::string error = all_gather_strings(*topo_.world, write_error_)[0]; !error.empty()) {
    stop(1, error + " (checkpoint.on_error: stop)");
    summary.exit_code = exit_code_;
    summary.stop_reason = stop_reason_;
    log_warn("{}", stop_reason_);
  }
}

}  // namespace

TrainSummary run_training(const RunConfig& config, const std::string& run_dir, Topology& topo,
                          const ResumeOptions& resume) {
  // The run directory is made (and locked) early; if set-up then fails, one made here holds
  // nothing but the lock file: remove it, so a refused run leaves nothing behind.
  std::error_code ec;
  const bool existed = fs::exists(run_dir, ec);
  try {
    Trainer trainer(config, run_dir, topo, resume);
    return trainer.run();
  } catch (...) {
    if (!existed && topo.world_rank == 0) {
      bool only_lock = true;
      for (const auto& entry : fs::directory_iterator(run_dir, ec)) only_lock = only_lock && entry.path().filename() == ".lock";
      if (!ec && only_lock) fs::remove_all(run_dir, ec);
    }
    throw;
  }
}

}  // namespace exatrain
