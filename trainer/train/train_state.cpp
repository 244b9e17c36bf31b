#include "trainer/train/train_state.h"

#include <ATen/ATen.h>

#include <chrono>
#include <future>
#include <set>

#include <fmt/ranges.h>
#include <cstring>
#include <filesystem>

#include "data/tokenizer/tokenizer.h"
#include "trainer/core/error.h"
#include "trainer/core/thread_pool.h"
#include "trainer/core/logging.h"
#include "trainer/model/exaone4.h"
#include "trainer/optim/distributed_optimizer.h"
#include "trainer/parallel/comm.h"
#include "trainer/parallel/topology.h"
#include "trainer/train/step_guard.h"
#include "trainer/train/train_data.h"

namespace exatrain {

TrainState::TrainState() = default;
TrainState::~TrainState() = default;
TrainState::TrainState(TrainState&&) noexcept = default;

namespace {

DType checkpoint_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::F32;
    case at::kBFloat16: return DType::BF16;
    case at::kHalf: return DType::F16;
    default: fail("internal: no checkpoint dtype for {}", c10::toString(t.scalar_type()));
  }
}


}  // namespace

std::vector<StatePiece> state_pieces(const TrainState& state, bool canonical_only, bool copy,
                                     std::vector<std::pair<at::Tensor, at::Tensor>>& host_of_device) {
  const Exaone4Model& model = *state.model;
  std::vector<StatePiece> pieces;
  auto add = [&](const std::string& name, const ParamSpec& spec, const TensorSlice& slice, const at::Tensor& t) {
    at::Tensor host = t;
    if (!t.device().is_cpu()) {
      host = copy ? t.to(at::kCPU) : at::empty(t.sizes(), t.options().device(at::kCPU));
      host_of_device.emplace_back(host, t);
    }
    EXATRAIN_CHECK(host.is_contiguous(), "internal: state tensor '{}' is not contiguous", name);
    pieces.push_back(StatePiece{name, spec.shape, checkpoint_dtype(host), slice, host.data_ptr()});
  };
  for (const auto& seg : state.optimizer->state_segments()) {
    if (canonical_only && !seg.canonical) continue;
    const ParamSpec& spec = model.specs()[seg.param];
    TensorSlice slice = model.slice(seg.param);
    slice.flat_begin = seg.param_offset;
    slice.flat_end = seg.param_offset + seg.length;
    add(spec.name, spec, slice, seg.master);
    add("optimizer.exp_avg." + spec.name, spec, slice, seg.exp_avg);
    add("optimizer.exp_avg_sq." + spec.name, spec, slice, seg.exp_avg_sq);
  }
  // Frozen parameters (LoRA's base, train.freeze): the weights as the model holds them (bf16
  // when held in bf16), whole TP shards; a checkpoint is complete without init.from_hf.
  for (const auto& frozen : state.optimizer->frozen_params()) {
    if (canonical_only && !frozen.canonical) continue;
    const ParamSpec& spec = model.specs()[frozen.param];
    add(spec.name, spec, model.slice(frozen.param), model.params()[frozen.param].detach());
  }
  return pieces;
}

std::map<std::string, std::string> model_keys(const ModelConfig& model) {
  std::map<std::string, std::string> out = model_key_values(model);
  out.erase("model.preset");
  out.erase("model.init_std");
  return out;
}

void check_resumable(const CheckpointInfo& info, const RunConfig& config, const std::string& dir,
                     const std::string& tokenizer_sha256) {
  const auto mine = model_keys(config.model);
  for (const auto& [key, value] : info.model) {
    auto it = mine.find(key);
    if (it == mine.end() || it->second != value)
      fail("checkpoint '{}' was saved from another model: {} is {} there, {} in this run; resume with the config "
           "it was trained with",
           dir, key, value, it == mine.end() ? "absent" : it->second);
  }
  for (const auto& [key, value] : mine)
    if (!info.model.count(key))
      fail("checkpoint '{}' was saved from another model: it has no {} (this run: {})", dir, key, value);
  // What trains: LoRA adapters and frozen parameters decide which tensors a checkpoint holds.
  {
    const RunConfig saved = parse_resolved_config(info.config_yaml, dir + "/manifest.pb (config)");
    auto text = [](const std::vector<std::string>& v) { return v.empty() ? std::string("[]") : fmt::format("[{}]", fmt::join(v, ", ")); };
    const std::vector<std::pair<std::string, std::pair<std::string, std::string>>> keys{
        {"lora.rank", {std::to_string(saved.lora.rank), std::to_string(config.lora.rank)}},
        {"lora.targets", {saved.lora.enabled() ? text(saved.lora.targets) : "-", config.lora.enabled() ? text(config.lora.targets) : "-"}},
        {"lora.alpha", {saved.lora.enabled() ? fmt::format("{}", saved.lora.alpha) : "-", config.lora.enabled() ? fmt::format("{}", config.lora.alpha) : "-"}},
        {"train.freeze", {text(saved.train.freeze), text(config.train.freeze)}}};
    for (const auto& [key, values] : keys)
      if (values.first != values.second)
        fail("checkpoint '{}' was trained with {} {}, this run has {}; resume with the same {} (to fine-tune from it "
             "in another way, export it and start from the export with init.from_hf)",
             dir, key, values.first, values.second, key);
  }
  if (info.tokenizer_sha256 != tokenizer_sha256)
    fail("checkpoint '{}' was trained with {}, this run has {}; resume with the same data.tokenizer", dir,
         info.tokenizer_sha256.empty() ? "no tokenizer" : "tokenizer sha256 " + info.tokenizer_sha256,
         tokenizer_sha256.empty() ? "none" : "sha256 " + tokenizer_sha256);
  std::vector<std::string> datasets;
  for (const auto& d : config.data.datasets) datasets.push_back(d.path);
  if (!config.data.path.empty()) datasets.push_back(config.data.path);
  if (info.datasets.size() != datasets.size())
    fail("checkpoint '{}' was trained on {} data sources, this run lists {}; resume with the same data", dir,
         info.datasets.size(), datasets.size());
  for (size_t i = 0; i < datasets.size(); ++i)
    if (std::filesystem::path(info.datasets[i]).filename() != std::filesystem::path(datasets[i]).filename())
      fail("checkpoint '{}' was trained on '{}' as data source {}, this run has '{}'; resume with the same data", dir,
           info.datasets[i], i + 1, datasets[i]);
}

namespace {

CheckpointInfo checkpoint_info(const TrainState& state, const RunConfig& config, const Topology& topo) {
  CheckpointInfo info;
  info.step = state.step;
  info.tokens = state.tokens;
  info.seed = config.train.seed;
  info.first_loss = state.first_loss;
  info.config_yaml = resolved_yaml(config);
  info.model = model_keys(config.model);
  info.layout = CheckpointLayout{topo.world_size, topo.tp, topo.pp, topo.dp, static_cast<int>(config.parallel.zero),
                                 config.parallel.sequence_parallel && topo.tp > 1, config.parallel.pipeline_layers,
                                 config.train.micro_batch};
  if (const Tokenizer* tok = state.data->tokenizer()) info.tokenizer_sha256 = tok->content_sha256();
  for (const auto& d : config.data.datasets) info.datasets.push_back(d.path);
  if (!config.data.path.empty()) info.datasets.push_back(config.data.path);
  info.blobs["loader"] = state.data->state();
  const std::string optimizer_steps = std::to_string(state.optimizer->step_count());
  info.blobs["optimizer_steps"] = std::vector<uint8_t>(optimizer_steps.begin(), optimizer_steps.end());
  if (state.guard) {
    const std::string guard = state.guard->save();
    info.blobs["step_guard"] = std::vector<uint8_t>(guard.begin(), guard.end());
  }
  info.exatrain_version = std::string(version_string()) + " (" + git_commit() + ")";
  return info;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

struct CheckpointSaver::Pending {
  std::string tmp;
  int64_t step = 0;
  CheckpointInfo info;  // rank 0
  uint64_t bytes = 0;
  std::chrono::steady_clock::time_point start;
  double stall = 0;
  bool async = false;
  // The writer: host copies of the pieces, its result.
  std::vector<std::pair<at::Tensor, at::Tensor>> host;
  std::vector<at::Tensor> clones;
  std::vector<StatePiece> pieces;
  std::future<void> writer;  // on the saver's one-thread pool
  std::future<void> copied;  // the writer's host copy of the state is complete
  std::string list;
  std::string error;  // this rank's failure to write its file
  std::optional<SaveReport> committed;  // by before_update(); reported by the next poll() or drain()
  bool written() const { return writer.valid() && writer.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }
};

CheckpointSaver::CheckpointSaver(const RunConfig& config, const Topology& topo, std::string run_dir)
    : config_(config), topo_(topo), run_dir_(std::move(run_dir)) {}

CheckpointSaver::~CheckpointSaver() {
  // With a save in flight only when the run failed: the pool's destructor lets the writer finish
  // its file (the checkpoint stays uncommitted, a .tmp- directory the next save removes).
}

bool CheckpointSaver::in_flight() const { return pending_ != nullptr; }

std::optional<SaveReport> CheckpointSaver::save(const TrainState& state) {
  std::optional<SaveReport> previous;
  const auto start = std::chrono::steady_clock::now();
  if (pending_) previous = drain();  // at most one save in flight
  const double waited = seconds_since(start);
  auto p = std::make_unique<Pending>();
  p->start = start;
  p->async = config_.checkpoint.async;
  p->step = state.step;
  const std::string checkpoints = run_dir_ + "/checkpoints";
  const std::string name = checkpoint_name(state.step);
  p->tmp = checkpoints + "/.tmp-" + name;
  std::string begun;  // rank 0's error making the temporary directory
  if (topo_.world_rank == 0) {
    try {
      begin_checkpoint(checkpoints, name);
      p->info = checkpoint_info(state, config_, topo_);
    } catch (const Error& e) {
      begun = e.what();
    }
  }
  if (const std::string error = all_gather_strings(*topo_.world, begun)[0]; !error.empty()) {
    SaveReport failed;
    failed.step = state.step;
    failed.dir = checkpoints + "/" + name;
    failed.error = "rank 0: " + error;
    return failed;  // (a save completed just before is reported in its place: it succeeded)
  }
  p->pieces = state_pieces(state, /*canonical_only=*/true, /*copy=*/true, p->host);
  for (const auto& piece : p->pieces) p->bytes += static_cast<uint64_t>(piece.slice.numel()) * dtype_size(piece.dtype);
  const int rank = topo_.world_rank;
  Pending* raw = p.get();
  if (p->async) {
    // The writer first copies the pieces the training loop will change (master weights and
    // moments; GPU state was already copied to host above) into host buffers, then writes
    // them. The copy runs beside the next forward and backward, which do not touch this state;
    // the loop waits for it only before the next optimizer update (before_update()).
    std::vector<std::pair<void*, const void*>> copies;  // destination, source
    std::set<const void*> frozen;  // frozen weights never change: written from where they are
    for (const auto& f : state.optimizer->frozen_params()) frozen.insert(state.model->params()[f.param].data_ptr());
    for (auto& piece : p->pieces) {
      bool staged = frozen.count(piece.data) > 0;
      for (const auto& [host, device] : p->host) staged = staged || host.data_ptr() == piece.data;
      if (staged) continue;
      const int64_t bytes = piece.slice.numel() * static_cast<int64_t>(dtype_size(piece.dtype));
      p->clones.push_back(at::empty({bytes}, at::kByte));
      copies.emplace_back(p->clones.back().data_ptr(), piece.data);
      piece.data = p->clones.back().data_ptr();
    }
    auto copied = std::make_shared<std::promise<void>>();
    p->copied = copied->get_future();
    if (!writer_) writer_ = std::make_unique<ThreadPool>(1);
    p->writer = writer_->submit([raw, rank, copies = std::move(copies), copied, clones = &raw->clones] {
      try {
        for (size_t k = 0; k < copies.size(); ++k)
          std::memcpy(copies[k].first, copies[k].second, static_cast<size_t>((*clones)[k].numel()));
        copied->set_value();
      } catch (...) {
        copied->set_exception(std::current_exception());
        throw;
      }
      raw->list = write_rank_pieces(raw->tmp, rank, raw->pieces);
    });
    p->stall = seconds_since(start) - waited;  // set-up (waiting for the previous save is its stall)
    pending_ = std::move(p);
    if (previous) return previous;
    return std::nullopt;
  }
  try {
    raw->list = write_rank_pieces(raw->tmp, rank, raw->pieces);
  } catch (const Error& e) {
    raw->error = e.what();
  }
  pending_ = std::move(p);
  auto report = commit(*pending_);
  pending_.reset();
  return report;
}

bool CheckpointSaver::written_everywhere() {
  at::Tensor done = at::tensor({pending_->written() ? int64_t{1} : int64_t{0}}, at::kLong);
  topo_.world->all_reduce(done, ReduceOp::Sum);
  return done.item<int64_t>() == topo_.world_size;
}

void CheckpointSaver::before_update() {
  if (!pending_ || pending_->committed) return;
  const auto start = std::chrono::steady_clock::now();
  if (pending_->copied.valid()) pending_->copied.get();  // rethrows a failed copy
  pending_->stall += seconds_since(start);
  // Commit before this step's update when every writer is done: committed only at the step
  // boundary after it, a kill between this step's update and that commit lost checkpoint.every + 1
  // steps (tests/e2e/kill_resume.sh).
  if (written_everywhere()) pending_->committed = commit(*pending_);
}

std::optional<SaveReport> CheckpointSaver::poll() {
  if (!pending_) return std::nullopt;
  if (!pending_->committed) {
    if (!written_everywhere()) return std::nullopt;
    pending_->committed = commit(*pending_);
  }
  auto report = std::move(pending_->committed);
  pending_.reset();
  return report;
}

std::optional<SaveReport> CheckpointSaver::drain() {
  if (!pending_) return std::nullopt;
  if (!pending_->committed) {
    const auto start = std::chrono::steady_clock::now();
    if (pending_->writer.valid()) pending_->writer.wait();
    pending_->stall += seconds_since(start);
    pending_->committed = commit(*pending_);
  }
  auto report = std::move(pending_->committed);
  pending_.reset();
  return report;
}

std::optional<SaveReport> CheckpointSaver::commit(Pending& p) {
  const auto start = std::chrono::steady_clock::now();
  SaveReport report;
  report.step = p.step;
  report.async = p.async;
  const std::string checkpoints = run_dir_ + "/checkpoints";
  const std::string final_dir = checkpoints + "/" + checkpoint_name(p.step);
  // Every rank's outcome, agreed: a rank that could not write its file (full disk, read-only,
  // quota) fails the save everywhere, and nothing is committed.
  auto first_error = [&](const std::string& mine) {
    const std::vector<std::string> errors = all_gather_strings(*topo_.world, mine);
    for (size_t r = 0; r < errors.size(); ++r)
      if (!errors[r].empty()) return fmt::format("rank {}: {}", r, errors[r]);
    return std::string();
  };
  std::string mine = p.error;
  try {
    if (p.writer.valid()) p.writer.get();  // rethrows the writer's error
  } catch (const std::exception& e) {
    mine = e.what();
  }
  report.error = first_error(mine);
  const std::vector<std::string> lists = all_gather_strings(*topo_.world, report.error.empty() ? p.list : "");
  at::Tensor total = at::tensor({static_cast<int64_t>(p.bytes)}, at::kLong);
  topo_.world->all_reduce(total);
  report.bytes = static_cast<uint64_t>(total.item<int64_t>());
  std::string committed;
  if (topo_.world_rank == 0) {
    if (!report.error.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(p.tmp, ec);  // frees what the other ranks wrote; best effort
    } else {
      try {
        report.dir = commit_checkpoint(p.tmp, p.info, lists);
      } catch (const Error& e) {
        committed = e.what();
      }
      if (committed.empty()) {
        try {
          for (const auto& removed : prune_checkpoints(checkpoints, config_.checkpoint.keep))
            log_info("removed old checkpoint {}/{} (checkpoint.keep {})", checkpoints, removed, config_.checkpoint.keep);
        } catch (const Error& e) {
          log_warn("could not remove old checkpoints: {}", e.what());
        }
      }
    }
  }
  // When this returns on any rank, the checkpoint is complete (or failed everywhere).
  if (const std::string error = first_error(committed); report.error.empty()) report.error = error;
  p.stall += seconds_since(start);
  at::Tensor times = at::tensor({seconds_since(p.start), p.stall}, at::kDouble);
  topo_.world->all_reduce(times, ReduceOp::Max);
  report.seconds = times[0].item<double>();
  report.stall = p.async ? times[1].item<double>() : report.seconds;
  if (report.dir.empty()) report.dir = final_dir;
  return report;
}

void load_checkpoint(TrainState& state, CheckpointReader& reader, const Topology& topo) {
  const CheckpointInfo& info = reader.info();
  if (topo.world_size > 1) {
    // Every piece's SHA-256 checked once in the job, the work split over the ranks; the first
    // failure (in rank order) stops every rank with the same message.
    const std::vector<std::string> failures =
        all_gather_strings(*topo.world, reader.check_share(topo.world_rank, topo.world_size));
    for (const auto& f : failures)
      if (!f.empty()) fail("{}", f);
    reader.trust_checked();
  }
  std::vector<std::pair<at::Tensor, at::Tensor>> host;
  const std::vector<StatePiece> pieces = state_pieces(state, /*canonical_only=*/false, /*copy=*/false, host);
  for (const auto& piece : pieces) reader.read(piece);
  {
    at::NoGradGuard no_grad;
    for (auto& [h, device] : host) device.copy_(h);
  }
  auto blob = [&](const std::string& name) {
    auto it = info.blobs.find(name);
    return it == info.blobs.end() ? std::vector<uint8_t>{} : it->second;
  };
  const std::vector<uint8_t> steps = blob("optimizer_steps");
  state.optimizer->set_step_count(steps.empty() ? info.step : std::stoll(std::string(steps.begin(), steps.end())));
  state.optimizer->copy_master_to_params();
  state.data->restore(blob("loader"));
  if (state.guard) {
    const std::vector<uint8_t> guard = blob("step_guard");
    state.guard->restore(std::string(guard.begin(), guard.end()));
  }
  state.step = info.step;
  state.tokens = info.tokens;
  state.first_loss = info.first_loss;
}

}  // namespace exatrain
