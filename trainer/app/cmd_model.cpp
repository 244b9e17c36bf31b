// exatrain model info (--preset NAME | --config FILE) [--set k=v]... [--json]
// Builds the model on the meta device (no memory) and reports parameter counts, the attention
// kind of each layer, and the bytes of weights and optimizer state.
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "trainer/app/commands.h"
#include "trainer/core/config.h"
#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"

namespace exatrain {

namespace {

struct ModelInfoOptions {
  std::string preset, config;
  std::vector<std::string> overrides;
  bool json = false;
};

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

void model_info(const ModelInfoOptions& o) {
  const ModelConfig c = model_from_options(o);
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
  info->add_flag("--json", o.json, "print JSON");
  info->callback([] { model_info(o); });
}

CommandRegistration registration("model", 20, register_model_command);

}  // namespace

}  // namespace exatrain
