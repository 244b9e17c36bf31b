#include "trainer/model/param_spec.h"

#include <fnmatch.h>

#include <algorithm>

#include "trainer/core/error.h"

namespace exatrain {

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

ShardSlice tp_shard(const ParamSpec& spec, int tp_rank, int tp) {
  ShardSlice s;
  if (spec.tp_split == TpSplit::None || tp == 1) return s;
  s.dim = spec.tp_split == TpSplit::Rows ? 0 : 1;
  const int64_t extent = spec.shape[static_cast<size_t>(s.dim)];
  const int64_t units = spec.split_units > 0 ? spec.split_units : extent;
  const int64_t unit_size = extent / units;
  if (units >= tp) {
    s.length = extent / tp;
    s.start = s.length * tp_rank;
  } else {  // fewer units than ranks: tp / units consecutive ranks share one unit
    s.replicas = static_cast<int>(tp / units);
    s.unit = tp_rank / s.replicas;
    s.length = unit_size;
    s.start = unit_size * s.unit;
  }
  return s;
}

std::vector<int64_t> local_shape(const ParamSpec& spec, const ShardSlice& slice) {
  std::vector<int64_t> shape = spec.shape;
  if (slice.dim >= 0) shape[static_cast<size_t>(slice.dim)] = slice.length;
  return shape;
}

TensorSlice tp_slice(const ParamSpec& spec, const ShardSlice& slice) {
  TensorSlice t = TensorSlice::whole(spec.shape);
  if (slice.dim >= 0) {
    t.start[static_cast<size_t>(slice.dim)] = slice.start;
    t.length[static_cast<size_t>(slice.dim)] = slice.length;
  }
  return t;
}

std::vector<ParamSpec> build_param_specs(const ModelConfig& c, const LoraConfig& lora) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.resolved_head_dim();
  const int64_t q_out = c.num_heads * D, kv_out = c.num_kv_heads * D;
  std::vector<ParamSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape, ParamKind kind, TpSplit split,
                 TpGradReduce reduce, int64_t layer, int64_t units = 0) {
    specs.push_back(ParamSpec{std::move(name), std::move(shape), kind, split, reduce, layer, units});
    if (lora.enabled()) specs.back().trainable = false;  // LoRA: only the adapters train
  };
  // A linear and, when LoRA targets it (by its last name part, q_proj ... down_proj), its adapters.
  auto linear = [&](const std::string& module, int64_t out, int64_t in, TpSplit split, int64_t layer,
                    int64_t units = 0) {
    add(module + ".weight", {out, in}, ParamKind::Linear, split, TpGradReduce::None, layer, units);
    const std::string target = module.substr(module.rfind('.') + 1);
    if (!lora.enabled() || std::find(lora.targets.begin(), lora.targets.end(), target) == lora.targets.end()) return;
    const int64_t r = lora.rank;
    const bool column_parallel = split == TpSplit::Rows;  // output features split over TP
    specs.push_back(ParamSpec{module + ".lora_A.weight", {r, in}, ParamKind::LoraA,
                              column_parallel ? TpSplit::None : TpSplit::Columns,
                              column_parallel ? TpGradReduce::Sum : TpGradReduce::None, layer,
                              column_parallel ? 0 : units});
    specs.back().adapts = module + ".weight";
    specs.push_back(ParamSpec{module + ".lora_B.weight", {out, r}, ParamKind::LoraB,
                              column_parallel ? TpSplit::Rows : TpSplit::None,
                              column_parallel ? TpGradReduce::None : TpGradReduce::Sum, layer,
                              column_parallel ? units : 0});
    specs.back().adapts = module + ".weight";
  };
  add("model.embed_tokens.weight", {c.vocab_size, H}, ParamKind::Embedding, TpSplit::Rows, TpGradReduce::None, -1);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    linear(p + "self_attn.q_proj", q_out, H, TpSplit::Rows, i, c.num_heads);
    // KV heads fewer than TP ranks are replicated; the replicas' partial gradients are summed.
    linear(p + "self_attn.k_proj", kv_out, H, TpSplit::Rows, i, c.num_kv_heads);
    linear(p + "self_attn.v_proj", kv_out, H, TpSplit::Rows, i, c.num_kv_heads);
    linear(p + "self_attn.o_proj", H, q_out, TpSplit::Columns, i, c.num_heads);
    // One weight of size head_dim shared by all heads; under TP each rank normalises its own
    // heads, so the partial gradients must be summed.
    add(p + "self_attn.q_norm.weight", {D}, ParamKind::HeadNorm, TpSplit::None, TpGradReduce::Sum, i);
    add(p + "self_attn.k_norm.weight", {D}, ParamKind::HeadNorm, TpSplit::None, TpGradReduce::Sum, i);
    add(p + "post_attention_layernorm.weight", {H}, ParamKind::Norm, TpSplit::None, TpGradReduce::SumIfSequenceParallel, i);
    linear(p + "mlp.gate_proj", I, H, TpSplit::Rows, i);
    linear(p + "mlp.up_proj", I, H, TpSplit::Rows, i);
    linear(p + "mlp.down_proj", H, I, TpSplit::Columns, i);
    add(p + "post_feedforward_layernorm.weight", {H}, ParamKind::Norm, TpSplit::None, TpGradReduce::SumIfSequenceParallel, i);
  }
  add("model.norm.weight", {H}, ParamKind::Norm, TpSplit::None, TpGradReduce::SumIfSequenceParallel, c.num_layers);
  if (!c.tie_embeddings)
    add("lm_head.weight", {c.vocab_size, H}, ParamKind::LmHead, TpSplit::Rows, TpGradReduce::None, c.num_layers);
  return specs;
}

void apply_freeze(std::vector<ParamSpec>& specs, const std::vector<std::string>& patterns, const ConfigLocations& locs) {
  for (size_t k = 0; k < patterns.size(); ++k) {
    bool matched = false;
    for (auto& spec : specs)
      if (fnmatch(patterns[k].c_str(), spec.name.c_str(), 0) == 0) {
        spec.trainable = false;
        matched = true;
      }
    if (!matched)
      config_error(locs, "train.freeze",
                   fmt::format("item {}: '{}' matches no parameter (names as in Hugging Face, e.g. "
                               "model.embed_tokens.weight, model.layers.*.mlp.*; `exatrain model info --config FILE "
                               "--params` lists them)", k + 1, patterns[k]));
  }
  bool any = false;
  for (const auto& spec : specs) any = any || spec.trainable;
  if (!any && !specs.empty())
    config_error(locs, "train.freeze", "freezes every parameter: nothing would train");
}

std::vector<ParamSpec> run_param_specs(const RunConfig& run) {
  std::vector<ParamSpec> specs = build_param_specs(run.model, run.lora);
  apply_freeze(specs, run.train.freeze, run.locations);
  return specs;
}

ParamCounts count_params(const std::vector<ParamSpec>& specs) {
  ParamCounts counts;
  for (const auto& s : specs) {
    const bool adapter = s.kind == ParamKind::LoraA || s.kind == ParamKind::LoraB;
    (adapter ? counts.adapters : counts.total) += s.numel();
    if (s.trainable) counts.trainable += s.numel();
    if (s.kind == ParamKind::Embedding || s.kind == ParamKind::LmHead) counts.embedding += s.numel();
  }
  return counts;
}

bool applies_weight_decay(const ParamSpec& spec, const OptimizerConfig& optimizer) {
  switch (spec.kind) {
    case ParamKind::Linear:
    case ParamKind::LoraA:
    case ParamKind::LoraB: return true;  // as PEFT under torch's AdamW: every adapter weight decays
    case ParamKind::Norm:
    case ParamKind::HeadNorm: return optimizer.decay_norms;
    case ParamKind::Embedding:
    case ParamKind::LmHead: return optimizer.decay_embeddings;
  }
  return true;
}

const char* param_kind_name(ParamKind kind) {
  switch (kind) {
    case ParamKind::Embedding: return "embedding";
    case ParamKind::LmHead: return "lm_head";
    case ParamKind::Linear: return "linear";
    case ParamKind::Norm: return "norm";
    case ParamKind::HeadNorm: return "head_norm";
    case ParamKind::LoraA: return "lora_a";
    case ParamKind::LoraB: return "lora_b";
  }
  return "?";
}

}  // namespace exatrain
