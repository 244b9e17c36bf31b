// exatrain config show CONFIG [--set k=v]...   the fully resolved run config
// exatrain config keys                          every key, its type, default and meaning
// exatrain config check CONFIG --ranks N [--ranks-per-node T] [--gpu-memory GIB] [--set k=v]...
//                                               will it run on that job? (launch/slurm/submit.sh)
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <iostream>

#include "trainer/app/commands.h"
#include "trainer/model/param_spec.h"
#include "trainer/core/config.h"
#include "trainer/core/error.h"
#include "trainer/parallel/topology.h"
#include "trainer/plan/cost_model.h"

namespace exatrain {

namespace {

void register_config_command(CLI::App& app) {
  auto* config = app.add_subcommand("config", "Inspect run configs");
  config->require_subcommand(1);

  auto* show = config->add_subcommand("show", "Print the fully resolved config (preset, file, --set overrides)");
  static std::string path;
  static std::vector<std::string> overrides;
  show->add_option("CONFIG", path, "run config YAML")->required();
  show->add_option("--set", overrides, "override a key: --set train.steps=100 (repeatable)");
  show->callback([] { std::cout << resolved_yaml(load_run_config(path, overrides)); });

  // The checks a job would make at start-up, made before it is queued: the layout against the
  // job's ranks and the model, and the largest rank's state against one GPU's memory.
  auto* check = config->add_subcommand("check", "Check a run config against a job's ranks and GPU memory, "
                                                "without starting anything");
  static std::string check_path;
  static std::vector<std::string> check_overrides;
  static int ranks = 0, ranks_per_node = 0;
  static double gpu_memory_gib = 0;
  check->add_option("CONFIG", check_path, "run config YAML")->required();
  check->add_option("--ranks", ranks, "ranks in the job (nodes x ranks per node)")->required()->check(CLI::PositiveNumber);
  check->add_option("--ranks-per-node", ranks_per_node, "ranks per node: TP groups must fit inside a node")
      ->check(CLI::PositiveNumber);
  check->add_option("--gpu-memory", gpu_memory_gib, "GiB of one GPU (80 for H100 80GB); 0 = a CPU job, not checked")
      ->check(CLI::NonNegativeNumber);
  check->add_option("--set", check_overrides, "override a key: --set parallel.tp=8 (repeatable)");
  check->callback([] {
    const RunConfig config = load_run_config(check_path, check_overrides);
    (void)run_param_specs(config);  // train.freeze patterns that match no parameter
    check_layout(config, ranks);
    const int tp = static_cast<int>(config.parallel.tp), pp = static_cast<int>(config.parallel.pp);
    const int dp = ranks / (tp * pp);
    if (ranks_per_node > 0 && tp > ranks_per_node)
      fail("parallel.tp ({}) is larger than the {} ranks of a node: tensor parallelism must stay inside a node "
           "(NVLink); lower parallel.tp and raise parallel.pp", tp, ranks_per_node);
    const StageMemory rank = estimate_cost(config.model, CostLayout::of(config, tp, pp, dp)).largest();
    const double gib = 1024.0 * 1024 * 1024;
    if (gpu_memory_gib > 0 && rank.total() > gpu_memory_gib * gib)
      fail("the largest rank (pipeline stage {} of tp {} x pp {} x dp {}) needs {}, more than one GPU's {} GiB; raise "
           "parallel.tp or parallel.pp, set parallel.zero: 1 or train.recompute: full, lower train.micro_batch, or "
           "use more nodes (exatrain plan lists layouts that fit)", rank.stage, tp, pp, dp, describe_total(rank),
           gpu_memory_gib);
    std::cout << fmt::format("ok: tp {} x pp {} x dp {} = {} ranks{}; the largest rank (pipeline stage {}) holds {}{}\n",
                             tp, pp, dp, ranks, config.parallel.zero == 1 && dp > 1 ? " (ZeRO-1)" : "", rank.stage,
                             describe_total(rank),
                             gpu_memory_gib > 0 ? fmt::format(" ({:.0f}% of {} GiB)",
                                                              100 * rank.total() / (gpu_memory_gib * gib), gpu_memory_gib)
                                                : "");
  });

  auto* keys = config->add_subcommand("keys", "List every config key with its type, default and meaning");
  keys->callback([] {
    for (const auto& line : config_key_docs()) std::cout << line << "\n";
  });
}

CommandRegistration registration("config", 10, register_config_command);

}  // namespace

}  // namespace exatrain
