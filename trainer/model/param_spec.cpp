#include "trainer/model/param_spec.h"

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

std::vector<ParamSpec> build_param_specs(const ModelConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.resolved_head_dim();
  const int64_t q_out = c.num_heads * D, kv_out = c.num_kv_heads * D;
  std::vector<ParamSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape, ParamKind kind, TpSplit split,
                 TpGradReduce reduce, int64_t layer, int64_t units = 0) {
    specs.push_back(ParamSpec{std::move(name), std::move(shape), kind, split, reduce, layer, units});
  };
  add("model.embed_tokens.weight", {c.vocab_size, H}, ParamKind::Embedding, TpSplit::Rows, TpGradReduce::None, -1);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "self_attn.q_proj.weight", {q_out, H}, ParamKind::Linear, TpSplit::Rows, TpGradReduce::None, i, c.num_heads);
    // KV heads fewer than TP ranks are replicated; the replicas' partial gradients are summed.
    add(p + "self_attn.k_proj.weight", {kv_out, H}, ParamKind::Linear, TpSplit::Rows, TpGradReduce::None, i, c.num_kv_heads);
    add(p + "self_attn.v_proj.weight", {kv_out, H}, ParamKind::Linear, TpSplit::Rows, TpGradReduce::None, i, c.num_kv_heads);
    add(p + "self_attn.o_proj.weight", {H, q_out}, ParamKind::Linear, TpSplit::Columns, TpGradReduce::None, i, c.num_heads);
    // One weight of size head_dim shared by all heads; under TP each rank normalises its own
    // heads, so the partial gradients must be summed.
    add(p + "self_attn.q_norm.weight", {D}, ParamKind::HeadNorm, TpSplit::None, TpGradReduce::Sum, i);
    add(p + "self_attn.k_norm.weight", {D}, ParamKind::HeadNorm, TpSplit::None, TpGradReduce::Sum, i);
    add(p + "post_attention_layernorm.weight", {H}, ParamKind::Norm, TpSplit::None, TpGradReduce::SumIfSequenceParallel, i);
    add(p + "mlp.gate_proj.weight", {I, H}, ParamKind::Linear, TpSplit::Rows, TpGradReduce::None, i);
    add(p + "mlp.up_proj.weight", {I, H}, ParamKind::Linear, TpSplit::Rows, TpGradReduce::None, i);
    add(p + "mlp.down_proj.weight", {H, I}, ParamKind::Linear, TpSplit::Columns, TpGradReduce::None, i);
    add(p + "post_feedforward_layernorm.weight", {H}, ParamKind::Norm, TpSplit::None, TpGradReduce::SumIfSequenceParallel, i);
  }
  add("model.norm.weight", {H}, ParamKind::Norm, TpSplit::None, TpGradReduce::SumIfSequenceParallel, c.num_layers);
  if (!c.tie_embeddings)
    add("lm_head.weight", {c.vocab_size, H}, ParamKind::LmHead, TpSplit::Rows, TpGradReduce::None, c.num_layers);
  return specs;
}

ParamCounts count_params(const std::vector<ParamSpec>& specs) {
  ParamCounts counts;
  for (const auto& s : specs) {
    counts.total += s.numel();
    if (s.kind == ParamKind::Embedding || s.kind == ParamKind::LmHead) counts.embedding += s.numel();
  }
  return counts;
}

bool applies_weight_decay(const ParamSpec& spec, const OptimizerConfig& optimizer) {
  switch (spec.kind) {
    case ParamKind::Linear: return true;
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
  }
  return "?";
}

}  // namespace exatrain
