// Training: the loop of DESIGN.md's "one training step", with metrics and checkpoints.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/core/config.h"

namespace exatrain {

struct TrainSummary {
  int64_t steps = 0;
  double first_loss = 0, final_loss = 0;
  double seconds = 0;
  std::string run_dir;
  // Not 0: the run ended before train.steps or without its outputs; the same on every rank.
  // kExitRequeue (stop_signals.h): stopped on SIGTERM/SIGUSR1 after saving, resume it. 1: a
  // non-finite step (train.on_nonfinite: stop) or a failed write (checkpoint.on_error: stop).
  int exit_code = 0;
  std::string stop_reason;  // one line
};

struct Topology;

// --resume [CKPT]: continue from CKPT, or from RUN/checkpoints/latest when `from` is empty, or
// start fresh when RUN has no checkpoint yet (so a requeued job can always pass --resume).
struct ResumeOptions {
  bool enabled = false;
  std::string from;
};

// Trains as `config` says on the ranks of `topology`, writing (rank 0)
// RUN_DIR/{config.resolved.yaml, metrics.jsonl, train.log} and, with checkpoint.save_final,
// RUN_DIR/final (a Hugging Face directory); other ranks log to RUN_DIR/train.rankN.log.
TrainSummary run_training(const RunConfig& config, const std::string& run_dir, Topology& topology,
                          const ResumeOptions& resume = {});

// Makes `dir` (and parents) and checks that a file can be written in it.
void prepare_run_dir(const std::string& dir);

}  // namespace exatrain
