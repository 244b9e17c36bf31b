// The state of a run (DESIGN.md "The state of a run"): everything a run needs to continue,
// and its save and load as a distributed checkpoint (checkpoints/dist_checkpoint.h).
//
// What this rank holds is described once, by the optimizer's segments: for each parameter
// segment, the fp32 master weights (stored under the parameter's Hugging Face name) and Adam's
// two moments (optimizer.exp_avg.NAME, optimizer.exp_avg_sq.NAME), each a slice of the global
// tensor: the TP box of the local shard, cut to the flat range the segment covers (ZeRO-1).
// Tied embeddings, replicated KV heads, uneven stages and ZeRO-1 segments are all this one case;
// a load under another layout reads whatever overlaps what it now holds.
//
// No RNG state is kept: after initialisation no step draws random numbers (no dropout; the data
// order is a function of the seed and the step), so (weights, moments, step, loader position)
// is the whole state.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoints/dist_checkpoint.h"
#include "trainer/core/config.h"

namespace exatrain {

class Exaone4Model;
class DistributedOptimizer;
class TrainData;
class ThreadPool;
class StepGuard;
struct Topology;

struct TrainState {
  std::unique_ptr<Exaone4Model> model;
  std::unique_ptr<DistributedOptimizer> optimizer;
  std::unique_ptr<TrainData> data;
  std::unique_ptr<StepGuard> guard;  // spike windows and skip counters (optional)
  int64_t step = 0;              // optimizer steps completed
  int64_t tokens = 0;            // training tokens consumed
  double first_loss = std::nan("");  // the loss of step 1, for the summary

  TrainState();
  ~TrainState();
  TrainState(TrainState&&) noexcept;
};

// This rank's pieces of the state. `canonical_only`: only those it stores in a checkpoint
// (one copy of each element over the layout). GPU tensors are staged in `host` (kept alive by
// the caller); with `copy` they are copied there (saving), else only allocated (loading).
std::vector<StatePiece> state_pieces(const TrainState& state, bool canonical_only, bool copy,
                                     std::vector<std::pair<at::Tensor, at::Tensor>>& host_of_device);

// The model keys a checkpoint must share with the run that resumes it, flattened
// ("model.hidden_size" -> "64"); init_std and preset are left out (they only shape a fresh start).
std::map<std::string, std::string> model_keys(const ModelConfig& model);

// Refuses, with one line naming the checkpoint and the first difference, a checkpoint this run
// cannot continue: another model shape, tokenizer or dataset list. Nothing is built before.
void check_resumable(const CheckpointInfo& info, const RunConfig& config, const std::string& checkpoint_dir,
                     const std::string& tokenizer_sha256);

struct SaveReport {
  std::string dir;
  int64_t step = 0;
  uint64_t bytes = 0;      // written by all ranks
  double seconds = 0;      // from the request to the commit, as the slowest rank saw it
  double stall = 0;        // of that, the time the training loop was held up (slowest rank)
  bool async = false;
  // Not empty: the save failed (the first failing rank's error, e.g. a full or read-only disk);
  // nothing was committed, `latest` and the previous checkpoints are untouched.
  std::string error;
};

// Saves RUN/checkpoints/step_N from every rank (every call is collective over the world);
// rank 0 commits the manifest, moves `latest` and prunes to checkpoint.keep. A write that fails
// on any rank fails the save on every rank (SaveReport::error) and commits nothing.
//   synchronous: save() returns when the checkpoint is complete;
//   checkpoint.async: save() returns at once; a writer thread per rank copies the state to
//     host memory while the next forward and backward run (before_update() holds the
//     optimizer update until the copy is complete), then writes its file beside training;
//     the save commits once every rank's writer is done: in before_update() if they are done
//     by then (so a kill loses at most checkpoint.every steps), else in poll() at a later step
//     boundary (one small all-reduce in each while a save is in flight). At most one save is
//     in flight: a save while one is pending waits for it first.
class CheckpointSaver {
 public:
  CheckpointSaver(const RunConfig& config, const Topology& topo, std::string run_dir);
  ~CheckpointSaver();
  // Returns the report of the save it completed (synchronous), else std::nullopt.
  std::optional<SaveReport> save(const TrainState& state);
  // Before the optimizer changes the state: waits until an asynchronous save's host copy is
  // complete (the copy runs beside forward and backward), and commits the save if every rank's
  // write is done (its report comes from the next poll() or drain()). Collective.
  void before_update();
  // Commits a finished asynchronous save: its report, else std::nullopt. Collective.
  std::optional<SaveReport> poll();
  // Waits for the save in flight, if any, and commits it. Collective.
  std::optional<SaveReport> drain();
  bool in_flight() const;

 private:
  struct Pending;
  std::optional<SaveReport> commit(Pending& p);
  bool written_everywhere();  // every rank's writer is done (collective)
  const RunConfig& config_;
  const Topology& topo_;
  std::string run_dir_;
  std::unique_ptr<Pending> pending_;
  std::unique_ptr<ThreadPool> writer_;  // one thread: the asynchronous writer
};

// Loads the checkpoint into `state` (built for this run's layout): master weights, moments,
// optimizer step, parameters, loader position, step and tokens.
void load_checkpoint(TrainState& state, CheckpointReader& reader, const Topology& topo);

}  // namespace exatrain
