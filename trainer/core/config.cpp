#include "trainer/core/config.h"

#include "checkpoints/hf_config.h"

#include <algorithm>
#include <filesystem>

namespace exatrain {

namespace fs = std::filesystem;

std::vector<LayerKind> ModelConfig::layer_kinds() const {
  std::vector<LayerKind> kinds;
  for (int64_t i = 0; i < num_layers; ++i) {
    if (!layer_types.empty())
      kinds.push_back(layer_types[static_cast<size_t>(i)] == "sliding_attention" ? LayerKind::Sliding : LayerKind::Full);
    else if (sliding_window > 0 && (i + 1) % sliding_window_pattern != 0)
      kinds.push_back(LayerKind::Sliding);
    else
      kinds.push_back(LayerKind::Full);
  }
  return kinds;
}

bool ModelConfig::layer_uses_rope(int64_t layer) const {
  if (sliding_window <= 0) return true;
  if (!layer_types.empty()) return layer_types[static_cast<size_t>(layer)] == "sliding_attention";
  return (layer + 1) % sliding_window_pattern != 0;
}

void ModelConfig::validate(const ConfigLocations& locs, const std::string& p) const {
  auto key = [&](const char* k) { return p + "." + k; };
  auto require = [&](const char* k, int64_t v) {
    if (v <= 0)
      config_error(locs, key(k), "is not set; name a preset with model.preset (" + [] {
        std::string s;
        for (const auto& n : preset_names()) s += (s.empty() ? "" : ", ") + n;
        return s;
      }() + ") or set it");
  };
  require("vocab_size", vocab_size);
  require("hidden_size", hidden_size);
  require("intermediate_size", intermediate_size);
  require("num_layers", num_layers);
  require("num_heads", num_heads);
  require("num_kv_heads", num_kv_heads);
  if (num_heads % num_kv_heads != 0)
    config_error2(locs, key("num_kv_heads"), key("num_heads"),
                 fmt::format("num_heads ({}) must be a multiple of num_kv_heads ({})", num_heads, num_kv_heads));
  if (head_dim == 0 && hidden_size % num_heads != 0)
    config_error2(locs, key("hidden_size"), key("num_heads"),
                 fmt::format("hidden_size ({}) is not divisible by num_heads ({}); set head_dim explicitly",
                             hidden_size, num_heads));
  if (resolved_head_dim() % 2 != 0)
    config_error(locs, key(head_dim ? "head_dim" : "num_heads"),
                 fmt::format("head_dim ({}) must be even for rotary embeddings", resolved_head_dim()));
  if (!layer_types.empty()) {
    if (static_cast<int64_t>(layer_types.size()) != num_layers)
      config_error2(locs, key("layer_types"), key("num_layers"),
                   fmt::format("has {} entries but num_layers is {}", layer_types.size(), num_layers));
    for (size_t i = 0; i < layer_types.size(); ++i) {
      const auto& t = layer_types[i];
      if (t != "sliding_attention" && t != "full_attention") {
        std::string hint = closest_match(t, {"sliding_attention", "full_attention"});
        config_error(locs, key("layer_types"),
                     fmt::format("entry {} is '{}'; expected sliding_attention or full_attention{}", i, t,
                                 hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
      }
      if (t == "sliding_attention" && sliding_window <= 0)
        config_error(locs, key("layer_types"),
                     fmt::format("entry {} is sliding_attention but sliding_window is 0; set model.sliding_window", i));
    }
  }
  for (auto [name, id] : {std::pair{"pad_token_id", pad_token_id}, {"bos_token_id", bos_token_id}, {"eos_token_id", eos_token_id}})
    if (id >= vocab_size)
      config_error(locs, key(name), fmt::format("{} must be below vocab_size ({})", id, vocab_size));
  if (rope_scaling.type == RopeScaling::Llama3 && rope_scaling.high_freq_factor <= rope_scaling.low_freq_factor)
    config_error(locs, key("rope_scaling.high_freq_factor"),
                 fmt::format("must exceed low_freq_factor ({} <= {})", rope_scaling.high_freq_factor,
                             rope_scaling.low_freq_factor));
}

void RunConfig::validate() const {
  model.validate(locations);
  if (train.global_batch % train.micro_batch != 0)
    config_error2(locations, "train.global_batch", "train.micro_batch",
                 fmt::format("{} is not a multiple of train.micro_batch ({})", train.global_batch, train.micro_batch));
  if (train.seq_len > model.max_position_embeddings)
    config_error2(locations, "train.seq_len", "model.max_position_embeddings",
                 fmt::format("{} exceeds model.max_position_embeddings ({})", train.seq_len, model.max_position_embeddings));
  if (schedule.warmup_steps > train.steps)
    config_error(locations, "schedule.warmup_steps",
                 fmt::format("{} exceeds train.steps ({})", schedule.warmup_steps, train.steps));
  static const std::vector<std::string> levels{"trace", "debug", "info", "warn", "error"};
  if (std::find(levels.begin(), levels.end(), log.level) == levels.end()) {
    std::string hint = closest_match(log.level, levels);
    config_error(locations, "log.level",
                 fmt::format("'{}' is not one of trace, debug, info, warn, error{}", log.level,
                             hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
  }
  if (train.weights == Precision::BF16 && train.precision != Precision::BF16)
    config_error2(locations, "train.weights", "train.precision",
                  "bf16 weights need bf16 compute: set train.precision: bf16 (or train.weights: fp32)");
  if (model.num_heads % parallel.tp != 0)
    config_error(locations, "parallel.tp",
                 fmt::format("num_heads ({}) is not divisible by tp ({})", model.num_heads, parallel.tp));
  if (parallel.sequence_parallel && train.seq_len % parallel.tp != 0)
    config_error2(locations, "train.seq_len", "parallel.sequence_parallel",
                  fmt::format("{} is not divisible by tp ({}): sequence parallelism splits the sequence over TP",
                              train.seq_len, parallel.tp));
  if (!parallel.pipeline_layers.empty()) {
    int64_t sum = 0;
    std::string parts;
    for (int64_t n : parallel.pipeline_layers) sum += n, parts += (parts.empty() ? "" : " + ") + std::to_string(n);
    if (static_cast<int64_t>(parallel.pipeline_layers.size()) != parallel.pp)
      config_error2(locations, "parallel.pipeline_layers", "parallel.pp",
                    fmt::format("lists {} stages but pp is {}; give one layer count per stage",
                                parallel.pipeline_layers.size(), parallel.pp));
    if (sum != model.num_layers)
      config_error2(locations, "parallel.pipeline_layers", "model.num_layers",
                    fmt::format("{} = {} layers, but the model has {}", parts, sum, model.num_layers));
  }
  if (!data.datasets.empty() && !data.path.empty())
    config_error2(locations, "data.path", "data.datasets",
                  "give either data.datasets (prepared shards) or data.path (one raw file), not both");
  for (size_t i = 0; i < data.datasets.size(); ++i) {
    const auto& d = data.datasets[i];
    const std::string key = fmt::format("data.datasets[{}]", i);
    if (d.path.empty()) config_error(locations, key + ".path", "is not set: name a prepared dataset directory");
    if (d.validation_sequences > 0 && d.validation_fraction > 0)
      config_error2(locations, key + ".validation_sequences", key + ".validation_fraction",
                    "set one of validation_sequences and validation_fraction, not both");
  }
  if (!data.datasets.empty() &&
      std::all_of(data.datasets.begin(), data.datasets.end(), [](const DatasetConfig& d) { return d.evaluation_only(); }))
    config_error(locations, "data.datasets",
                 "every dataset is evaluation-only (weight 0 or eval_only); at least one must be trained on");
  if (data.document_mask && data.datasets.empty())
    config_error2(locations, "data.document_mask", "data.path",
                  "needs data.datasets (prepared shards carry the document boundaries); data.path has none");
  if (!data.packing && data.datasets.empty())
    config_error2(locations, "data.packing", "data.path",
                  "false needs data.datasets (prepared shards carry the document boundaries); data.path has none");
  static const std::vector<std::string> lora_targets{"q_proj", "k_proj", "v_proj", "o_proj",
                                                      "gate_proj", "up_proj", "down_proj"};
  for (size_t i = 0; i < lora.targets.size(); ++i) {
    const std::string& t = lora.targets[i];
    if (std::find(lora_targets.begin(), lora_targets.end(), t) == lora_targets.end()) {
      const std::string hint = closest_match(t, lora_targets);
      config_error(locations, "lora.targets",
                   fmt::format("item {}: '{}' is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                               "down_proj{}", i + 1, t, hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    }
    for (size_t j = 0; j < i; ++j)
      if (lora.targets[j] == t) config_error(locations, "lora.targets", fmt::format("'{}' is listed twice", t));
  }
  if (lora.enabled() && lora.targets.empty())
    config_error2(locations, "lora.targets", "lora.rank", "is empty: name the linear layers that get adapters");
  if (train.eval_every > 0 && data.datasets.empty())
    config_error2(locations, "train.eval_every", "data.path",
                  "validation needs data.datasets with a validation split (validation_sequences or "
                  "validation_fraction)");
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& [name, text] : builtin_model_presets()) names.push_back(name);
  return names;
}

namespace {

// The model keys of a preset, as a tree (preset files hold model keys at top level).
ConfigNode preset_tree(const std::string& name_or_path, const std::string& relative_to) {
  const auto& presets = builtin_model_presets();
  if (auto it = presets.find(name_or_path); it != presets.end()) {
    ConfigNode n = parse_yaml(it->second, "configs/models/" + name_or_path + ".yaml");
    if (!n.is_map()) fail("built-in preset '{}' is not a mapping", name_or_path);
    return n;
  }
  const bool looks_like_path = name_or_path.find('/') != std::string::npos ||
                               name_or_path.ends_with(".yaml") || name_or_path.ends_with(".yml");
  if (!looks_like_path) {
    std::string hint = closest_match(name_or_path, preset_names());
    std::string all;
    for (const auto& n : preset_names()) all += (all.empty() ? "" : ", ") + n;
    fail("unknown model preset '{}'{}; built-in presets: {} (or give a path to a YAML file)", name_or_path,
         hint.empty() ? "" : " (did you mean '" + hint + "'?)", all);
  }
  fs::path p(name_or_path);
  if (p.is_relative() && !relative_to.empty()) p = fs::path(relative_to).parent_path() / p;
  ConfigNode n = load_yaml_file(p.string());
  if (const ConfigNode* m = n.find("model"); m && m->is_map()) return *m;  // a run config used as preset
  return n;
}

// Replaces root.model by preset <- root.model when root.model.preset is set.
void resolve_preset(ConfigNode& root, const std::string& relative_to) {
  ConfigNode* model = root.find("model");
  if (!model || !model->is_map()) return;
  const ConfigNode* preset = model->find("preset");
  if (!preset || preset->kind != ConfigNode::Kind::Scalar) return;
  ConfigNode base;
  try {
    base = preset_tree(preset->scalar, relative_to);
  } catch (const Error& e) {
    fail("{}: model.preset: {}", preset->loc.str(), e.what());
  }
  if (base.find("preset"))
    fail("{}: a preset cannot name another preset", base.find("preset")->loc.str());
  merge_config(base, *model);
  *model = base;
}

}  // namespace

ModelConfig load_model_preset(const std::string& name_or_path, const std::string& relative_to) {
  ConfigNode tree = preset_tree(name_or_path, relative_to);
  ModelConfig m;
  ConfigLocations locs;
  ConfigReader reader(&tree, "model", locs);
  m.visit(reader);
  reader.finish();
  m.validate(locs);
  return m;
}

namespace {

void flatten_node(const ConfigNode& node, const std::string& path, std::map<std::string, std::string>& out) {
  switch (node.kind) {
    case ConfigNode::Kind::Map:
      for (const auto& e : node.entries) flatten_node(e.value, path + "." + e.key, out);
      break;
    case ConfigNode::Kind::Sequence: {
      std::string s;
      for (const auto& item : node.items) s += (s.empty() ? "" : ", ") + item.scalar;
      out[path] = "[" + s + "]";
      break;
    }
    case ConfigNode::Kind::Scalar: out[path] = node.scalar; break;
    case ConfigNode::Kind::Null: out[path] = ""; break;
  }
}

// init.from_hf: the model is the directory's config.json. Model keys written in the run config
// (or its preset, or --set) must agree with it; the rest is taken from it.
void adopt_hf_model(RunConfig& config) {
  const std::string& dir = config.init.from_hf;
  ModelConfig hf = read_hf_config(dir);
  hf.preset = config.model.preset;
  hf.init_std = config.model.init_std;  // unused when starting from weights
  const auto given = model_key_values(config.model), from_hf = model_key_values(hf);
  for (const auto& [key, value] : given) {
    const SourceLoc* loc = config.locations.find(key);
    if (key == "model.preset" || key == "model.init_std" || !loc) continue;
    // A preset's special token ids are defaults for a fresh vocabulary: they yield.
    const bool from_preset = loc->origin != config.source_path && !loc->origin.starts_with("--set");
    if (from_preset && key.ends_with("_token_id")) continue;
    auto it = from_hf.find(key);
    if (it != from_hf.end() && it->second != value)
      config_error2(config.locations, key, "init.from_hf",
                    fmt::format("{}, but {}/config.json says {}; remove {} or make the two agree", value, dir,
                                it->second, key));
  }
  config.model = hf;
}

}  // namespace

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  ConfigNode root = load_yaml_file(path);
  for (const auto& o : overrides) apply_override(root, o);
  resolve_preset(root, path);
  RunConfig config;
  config.source_path = path;
  ConfigReader reader(&root, "", config.locations);
  config.visit(reader);
  reader.finish();
  // A relative data path is relative to the file that wrote it (from --set: to the working
  // directory); stored absolute so that config.resolved.yaml works from anywhere.
  auto absolute = [&](std::string& path, const std::string& key) {
    if (path.empty()) return;
    fs::path p(path);
    const SourceLoc* loc = config.locations.find(key);
    if (p.is_relative() && loc && !loc->origin.starts_with("--set")) p = fs::path(loc->origin).parent_path() / p;
    path = fs::absolute(p).lexically_normal().string();
  };
  absolute(config.init.from_hf, "init.from_hf");
  if (!config.init.from_hf.empty()) adopt_hf_model(config);
  config.validate();
  absolute(config.data.path, "data.path");
  absolute(config.data.tokenizer, "data.tokenizer");
  for (size_t i = 0; i < config.data.datasets.size(); ++i)
    absolute(config.data.datasets[i].path, fmt::format("data.datasets[{}].path", i));
  return config;
}

RunConfig parse_resolved_config(const std::string& yaml_text, const std::string& origin) {
  ConfigNode root = parse_yaml(yaml_text, origin);
  if (ConfigNode* model = root.find("model"); model && model->is_map()) model->erase("preset");
  if (ConfigNode* init = root.find("init"); init && init->is_map()) init->erase("from_hf");
  RunConfig config;
  config.source_path = origin;
  ConfigReader reader(&root, "", config.locations);
  config.visit(reader);
  reader.finish();
  config.validate();
  return config;
}

bool is_run_config(const ConfigNode& root) {
  for (const char* section : {"model", "parallel", "train", "optimizer", "schedule", "data", "init", "lora",
                              "checkpoint", "log"})
    if (root.find(section)) return true;
  return false;
}

ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides) {
  ConfigNode root = load_yaml_file(path);
  // A run config without a model section takes its model from init.from_hf's config.json.
  if (is_run_config(root) && !root.find("model")) return load_run_config(path, overrides).model;
  const bool run_config = root.find("model") != nullptr;
  if (!run_config) {  // a preset file: wrap its keys as model:
    ConfigNode wrapped;
    wrapped.kind = ConfigNode::Kind::Map;
    wrapped.set("model", root, root.loc);
    root = wrapped;
  }
  for (const auto& o : overrides) apply_override(root, o);
  resolve_preset(root, path);
  ModelConfig m;
  ConfigLocations locs;
  ConfigReader reader(root.find("model"), "model", locs);
  m.visit(reader);
  reader.finish();
  m.validate(locs);
  return m;
}

std::map<std::string, std::string> model_key_values(const ModelConfig& config) {
  ConfigWriter w;
  const_cast<ModelConfig&>(config).visit(w);
  std::map<std::string, std::string> out;
  flatten_node(w.node, "model", out);
  return out;
}

std::string resolved_yaml(const RunConfig& config) {
  ConfigWriter w;
  const_cast<RunConfig&>(config).visit(w);
  return to_yaml(w.node);
}

std::string resolved_yaml(const ModelConfig& config) {
  ConfigWriter w;
  const_cast<ModelConfig&>(config).visit(w);
  return to_yaml(w.node);
}

std::vector<std::string> config_key_docs() {
  RunConfig defaults;
  ConfigDocWriter w;
  defaults.visit(w);
  return w.lines;
}

}  // namespace exatrain
