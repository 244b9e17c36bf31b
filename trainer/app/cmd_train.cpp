// exatrain train CONFIG [--run-dir DIR] [--resume [CKPT]] [--set k=v]...
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>

#include <cstdio>
#include <cstring>
#include <chrono>
#include <filesystem>

#include "trainer/app/commands.h"
#include "trainer/core/config.h"
#include "trainer/parallel/comm.h"
#include "trainer/parallel/topology.h"
#include "trainer/core/error.h"
#include "trainer/train/stop_signals.h"
#include "trainer/train/trainer.h"

namespace exatrain {

namespace {

struct TrainOptions {
  std::string config, run_dir, resume_from;
  std::vector<std::string> overrides;
  CLI::Option* resume = nullptr;
};

std::string default_run_dir(const std::string& config_path) {
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return "runs/" + std::filesystem::path(config_path).stem().string() + "-" + stamp;
}

}  // namespace

namespace {

void register_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model as a run config says");
  static TrainOptions o;
  cmd->add_option("CONFIG", o.config, "run config YAML (see configs/train/)")->required();
  cmd->add_option("--run-dir", o.run_dir, "where logs, metrics and weights go (default: runs/NAME-TIME)");
  o.resume = cmd->add_option("--resume", o.resume_from,
                             "continue from checkpoint CKPT, or without CKPT from RUN/checkpoints/latest (a run "
                             "directory without checkpoints starts fresh); the layout may differ from the saved one")
                 ->expected(0, 1);
  cmd->add_option("--set", o.overrides, "override a key: --set train.steps=100 (repeatable)");
  cmd->callback([] {
    const RunConfig config = load_run_config(o.config, o.overrides);
    // Under mpirun or srun every rank runs this; alone, MPI starts as a one-rank world.
    MpiRuntime mpi(nullptr, nullptr);
    CommContext context;
    context.world_rank = mpi.world_rank();
    context.timeout_s = config.parallel.timeout_s;
    Topology topology = make_topology(config, mpi.world_size(), mpi.world_rank(), &context);
    ResumeOptions resume{o.resume->count() > 0, o.resume_from};
    if (resume.enabled && o.run_dir.empty() && resume.from.empty())
      throw CLI::ValidationError("--resume", "give --run-dir RUN (continue its latest checkpoint) or --resume CKPT");
    std::string run_dir = o.run_dir.empty() ? default_run_dir(o.config) : o.run_dir;
    if (o.run_dir.empty() && mpi.world_size() > 1) {  // every rank must agree on the name
      at::Tensor stamp = at::zeros({64}, at::kByte);
      std::memcpy(stamp.data_ptr(), run_dir.data(), std::min<size_t>(63, run_dir.size()));
      topology.world->broadcast(stamp, 0);
      run_dir = reinterpret_cast<const char*>(stamp.data_ptr());
    }
    TrainSummary summary;
    try {
      summary = run_training(config, run_dir, topology, resume);
    } catch (const std::exception& e) {
      // One rank failing must end the whole job, not leave the others waiting in a collective.
      if (mpi.world_size() == 1) throw;
      std::fprintf(stderr, "exatrain: error: rank %d: %s\n", mpi.world_rank(), e.what());
      std::fflush(stderr);
      mpi.abort(1);
    }
    if (summary.exit_code != 0) {
      // Every rank ends with the same status (they agreed on the stop). The log has the reason;
      // an error also ends with the usual one-line message from rank 0.
      if (mpi.world_rank() == 0 && summary.exit_code != kExitRequeue)
        std::fprintf(stderr, "exatrain: error: %s\n", summary.stop_reason.c_str());
      throw ExitStatus{summary.exit_code};
    }
  });
}

CommandRegistration registration("train", 40, register_train_command);

}  // namespace

}  // namespace exatrain
