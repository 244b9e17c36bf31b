// exatrain model info (--preset NAME | --config FILE) [--set k=v]... [--ranks N] [--json] [--params]
// Builds the model on the meta device (no memory) and reports parameter counts, the attention
// kind of each layer, and the bytes of weights and optimizer state; for a run config, also what
// the largest rank of its layout holds, activations included, and every stage's figures
// (trainer/plan/cost_model.h).
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "trainer/app/commands.h"
#include "trainer/core/config.h"
#include "trainer/core/error.h"
#include "trainer/core/config_tree.h"
#include "trainer/model/exaone4.h"
#include "trainer/parallel/topology.h"
#include "trainer/plan/cost_model.h"

namespace exatrain {

namespace {

struct ModelInfoOptions {
  std::string preset, config;
  std::vector<std::string> overrides;
  int ranks = 0;  // a run config with parallel.dp: 0 (auto) needs the job's ranks
  bool json = false;
  bool params = false;
};

std::string with_commas(int64_t n);

// --params: the registry, one line per parameter; for a run config with its LoRA adapters and
// train.freeze applied (what trains and what stays).
void list_params(const ModelInfoOptions& o, const ModelConfig& c) {
  const bool run = !o.config.empty() && is_run_config(load_yaml_file(o.config));
  const std::vector<ParamSpec> specs = run ? run_param_specs(load_run_config(o.config, o.overrides)) : build_param_specs(c);
  auto split = [](TpSplit t) { return t == TpSplit::Rows ? "rows" : t == TpSplit::Columns ? "columns" : "-"; };
  if (o.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& s : specs)
      list.push_back({{"name", s.name}, {"shape", s.shape}, {"kind", param_kind_name(s.kind)},
                      {"tp_split", split(s.tp_split)}, {"trainable", s.trainable}});
    std::cout << nlohmann::json{{"params", list}}.dump(2) << "\n";
    return;
  }
  std::cout << fmt::format("{:<56} {:<14} {:<10} {:<8} {}\n", "parameter", "shape", "kind", "tp split", "trains");
  for (const auto& s : specs)
    std::cout << fmt::format("{:<56} {:<14} {:<10} {:<8} {}\n", s.name, fmt::format("{}", fmt::join(s.shape, "x")),
                             param_kind_name(s.kind), split(s.tp_split), s.trainable ? "yes" : "frozen");
  const ParamCounts counts = count_params(specs);
  std::cout << fmt::format("{} tensors; {} of {} parameters train\n", specs.size(), with_commas(counts.trainable),
                           with_commas(counts.total + counts.adapters));
}

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

ModelConfig model_from_options(const ModelInfoOptions& o) {
  if (!o.preset.empty() == !o.config.empty()) fail("give exactly one of --preset NAME or --config FILE");
  if (!o.preset.empty()) {
    if (!o.overrides.empty()) fail("--set applies to --config files; copy the preset into a config to override it");
    return load_model_preset(o.preset);
  }
  return load_model_config(o.config, o.overrides);
}

// A run config's layout: tp x pp x dp ranks and what the largest of them holds.
struct RankFigures {
  int tp = 1, pp = 1, dp = 1;
  bool zero1 = false, bf16_weights = false;
  LayoutCost cost;
};

std::optional<RankFigures> rank_figures(const ModelInfoOptions& o) {
  if (o.config.empty() || !is_run_config(load_yaml_file(o.config))) {  // a preset: no layout
    if (o.ranks > 0) fail("--ranks needs a run config (with model: and parallel: sections), not a model preset");
    return std::nullopt;
  }
  const RunConfig run = load_run_config(o.config, o.overrides);
  const auto& p = run.parallel;
  if (p.dp == 0 && o.ranks == 0) return std::nullopt;  // dp auto: the job decides (--ranks N shows it)
  const int ranks = o.ranks > 0 ? o.ranks : static_cast<int>(p.tp * p.pp * p.dp);
  check_layout(run, ranks);
  RankFigures f;
  f.tp = static_cast<int>(p.tp);
  f.pp = static_cast<int>(p.pp);
  f.dp = ranks / (f.tp * f.pp);
  f.zero1 = p.zero == 1 && f.dp > 1;
  f.bf16_weights = run.train.weights == Precision::BF16;
  f.cost = estimate_cost(run.model, CostLayout::of(run, f.tp, f.pp, f.dp));
  return f;
}

void model_info(const ModelInfoOptions& o) {
  const ModelConfig c = model_from_options(o);
  if (o.params) return list_params(o, c);
  const std::optional<RankFigures> rank = rank_figures(o);
  Exaone4Model model(c, at::TensorOptions().device(at::kMeta).dtype(at::kFloat));
  int64_t total = 0;
  for (const auto& p : model.params()) total += p.numel();
  const ParamCounts counts = count_params(model.specs());
  if (counts.total != total) fail("internal: spec count {} != tensor count {}", counts.total, total);
  std::vector<std::string> kinds;
  const auto layer_kinds = c.layer_kinds();
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const bool sliding = layer_kinds[static_cast<size_t>(i)] == LayerKind::Sliding;
    kinds.push_back(std::string(sliding ? "sliding" : "full") + (c.layer_uses_rope(i) ? "+rope" : "+nope"));
  }
  const int64_t bf16 = 2 * total, fp32 = 4 * total, adam = 8 * total;
  if (o.json) {
    nlohmann::json j = {{"parameters", total},
                        {"non_embedding_parameters", counts.non_embedding()},
                        {"embedding_parameters", counts.embedding},
                        {"layers", c.num_layers},
                        {"layer_attention", kinds},
                        {"bytes", {{"bf16_weights", bf16}, {"fp32_master_weights", fp32}, {"adam_moments", adam}}}};
    if (rank) {
      const StageMemory& m = rank->cost.largest();
      auto stage_json = [](const StageMemory& r) {
        return nlohmann::json{{"stage", r.stage}, {"layers", r.layers}, {"parameters", r.elements},
                              {"optimizer_elements", r.owned}, {"micro_batches_in_flight", r.in_flight},
                              {"bytes", {{"weights", r.weights}, {"gradients", r.gradients},
                                         {"reduction_bucket", r.reduce_buffer}, {"optimizer_state", r.optimizer},
                                         {"total_before_activations", r.static_bytes()},
                                         {"activations_per_micro_batch", r.saved_per_micro_batch},
                                         {"peak_of_one_micro_batch", r.saved_per_micro_batch + r.workspace},
                                         {"peak_activations", r.activations}, {"total", r.total()}}}};
      };
      nlohmann::json stages = nlohmann::json::array();
      for (const auto& r : rank->cost.stages) stages.push_back(stage_json(r));
      j["per_rank"] = stage_json(m);
      j["per_rank"]["tp"] = rank->tp;
      j["per_rank"]["pp"] = rank->pp;
      j["per_rank"]["dp"] = rank->dp;
      j["per_rank"]["zero"] = rank->zero1 ? 1 : 0;
      j["per_rank"]["largest_stage"] = m.stage;
      j["stages"] = stages;
      j["model_flops_per_step"] = rank->cost.model_flops_per_step;
      j["hardware_flops_per_step"] = rank->cost.hardware_flops_per_step;
      j["collective_bytes_per_rank_per_step"] = rank->cost.collective_bytes;
    }
    std::cout << j.dump(2) << "\n";
    return;
  }
  // Bytes in the largest binary unit that keeps the figure >= 1 (KiB .. TiB).
  auto size = [](int64_t bytes) {
    static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < std::size(units)) v /= 1024.0, ++u;
    return fmt::format("{:>12.2f} {}", v, units[u]);
  };
  std::cout << fmt::format("parameters:               {:>16}\n", with_commas(total));
  std::cout << fmt::format("non-embedding parameters: {:>16}\n", with_commas(counts.non_embedding()));
  std::cout << fmt::format("layers:                   {:>16}  (hidden {}, heads {}/{} kv, head_dim {})\n", c.num_layers,
                           c.hidden_size, c.num_heads, c.num_kv_heads, c.resolved_head_dim());
  int64_t sliding = 0;
  for (const auto& k : kinds) sliding += k.starts_with("sliding");
  std::cout << fmt::format("attention:                {} sliding (window {}), {} full\n", sliding, c.sliding_window,
                           c.num_layers - sliding);
  for (int64_t i = 0; i < c.num_layers; ++i) std::cout << fmt::format("  layer {:>3}: {}\n", i, kinds[static_cast<size_t>(i)]);
  std::cout << fmt::format("bf16 weights:             {}\n", size(bf16));
  std::cout << fmt::format("fp32 master weights:      {}\n", size(fp32));
  std::cout << fmt::format("Adam moments (fp32 x2):   {}\n", size(adam));
  if (!rank && !o.config.empty() && is_run_config(load_yaml_file(o.config)))
    std::cout << "per rank:                 give --ranks N (parallel.dp is auto) to see what one rank holds\n";
  if (rank) {
    const StageMemory& m = rank->cost.largest();
    const auto bytes = [&](double b) { return size(static_cast<int64_t>(b)); };
    std::cout << fmt::format("layout:                   tp {} x pp {} x dp {} = {} ranks{}\n", rank->tp, rank->pp,
                             rank->dp, rank->tp * rank->pp * rank->dp, rank->zero1 ? ", ZeRO-1" : "");
    std::cout << fmt::format("largest rank:             pipeline stage {}, {} parameters, {} optimizer elements\n",
                             m.stage, with_commas(m.elements), with_commas(m.owned));
    const bool frozen = m.trainable < m.elements;
    std::cout << fmt::format("  weights:                {}  ({}{}{})\n", bytes(m.weights),
                             frozen ? with_commas(m.trainable) + " trainable in " : "",
                             rank->bf16_weights ? "bf16" : "fp32",
                             frozen && !rank->bf16_weights ? "; the frozen ones as held: bf16 linears in a bf16 run" : "");
    std::cout << fmt::format("  gradients:              {}  (accumulated in the reduction bucket)\n", bytes(m.reduce_buffer));
    std::cout << fmt::format("  optimizer state:        {}  ({})\n", bytes(m.optimizer),
                             rank->zero1 ? rank->bf16_weights
                                               ? "fp32 master weights, 2 Adam moments, reduce-scattered gradients, "
                                                 "bf16 copy to all-gather"
                                               : "fp32 master weights, 2 Adam moments, reduce-scattered gradients"
                             : rank->bf16_weights ? "fp32 master weights, 2 Adam moments"
                                                  : "2 Adam moments; the fp32 weights are the master weights");
    const auto trimmed = [&](double b) { return fmt::format("{:.2f} MiB", b / (1 << 20)); };
    std::cout << fmt::format("  activations:            {}  ({} micro-batch{} in flight, {} saved each; one "
                             "micro-batch's backward peaks at {})\n", bytes(m.activations), m.in_flight,
                             m.in_flight == 1 ? "" : "es", trimmed(m.saved_per_micro_batch),
                             trimmed(m.saved_per_micro_batch + m.workspace));
    std::cout << fmt::format("  total:                  {}\n", bytes(m.total()));
  }
}

}  // namespace

namespace {

void register_model_command(CLI::App& app) {
  auto* model = app.add_subcommand("model", "Inspect models");
  model->require_subcommand(1);
  auto* info = model->add_subcommand("info", "Parameter counts, layer kinds and memory of a model");
  static ModelInfoOptions o;
  info->add_option("--preset", o.preset, "built-in preset: " + fmt::format("{}", fmt::join(preset_names(), ", ")));
  info->add_option("--config", o.config, "a preset file or run config");
  info->add_option("--set", o.overrides, "override a key of --config: --set model.num_layers=8");
  info->add_option("--ranks", o.ranks, "a run config's ranks, when parallel.dp is 0 (auto)")->check(CLI::PositiveNumber);
  info->add_flag("--json", o.json, "print JSON");
  info->add_flag("--params", o.params,
                 "list every parameter (name, shape, kind, TP split; with a run config, whether it trains under its "
                 "lora and train.freeze)");
  info->callback([] { model_info(o); });
}

CommandRegistration registration("model", 20, register_model_command);

}  // namespace

}  // namespace exatrain
