#include "trainer/model/exaone4.h"

#include <map>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

#include "kernels/ops.h"
#include "trainer/core/error.h"
#include "trainer/parallel/comm.h"
#include "trainer/parallel/tp_regions.h"

namespace exatrain {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return ops::rms_norm(x, weight, eps, ops::Impl::Reference);
}

at::Tensor Exaone4Model::norm(const at::Tensor& x, const at::Tensor& weight) const {
  return ops::rms_norm(x, weight, config_.rms_norm_eps, ops::resolve_norm_impl(kernels_, x.device()));
}

namespace {

// Per-token losses [rows] -> the loss: with weights their weighted sum, else their mean over the
// tokens that count (targets -100 do not), as at::cross_entropy_loss's mean.
at::Tensor reduce_token_losses(const at::Tensor& each, const at::Tensor& targets, const at::Tensor& weights) {
  if (weights.defined()) return (each * weights.reshape({-1}).to(at::kFloat)).sum();
  return each.sum() / (targets.reshape({-1}) != -100).sum().to(at::kFloat);
}

}  // namespace

at::Tensor token_cross_entropy(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& weights,
                               KernelChoice kernels) {
  const ops::Impl impl = ops::resolve_cross_entropy_impl(kernels, logits.device());
  const at::Tensor flat = logits.reshape({-1, logits.size(-1)});
  if (impl == ops::Impl::Reference) {  // the ATen loss, as before the fused kernels (the judge)
    if (!weights.defined()) return at::cross_entropy_loss(flat.to(at::kFloat), targets.reshape({-1}));
    const at::Tensor each = at::cross_entropy_loss(flat.to(at::kFloat), targets.reshape({-1}), {}, at::Reduction::None);
    return (each * weights.reshape({-1}).to(at::kFloat)).sum();
  }
  return reduce_token_losses(ops::cross_entropy(flat, targets.reshape({-1}), impl), targets, weights);
}

at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& ids) {
  return token_cross_entropy(logits.narrow(1, 0, logits.size(1) - 1), ids.narrow(1, 1, ids.size(1) - 1));
}

PipelineStage pipeline_stage(int64_t layers, int stages, int stage) {
  PipelineStage s;
  const int64_t base = layers / stages, extra = layers % stages;
  s.first_layer = stage * base + std::min<int64_t>(stage, extra);
  s.end_layer = s.first_layer + base + (stage < extra ? 1 : 0);
  s.first = stage == 0;
  s.last = stage == stages - 1;
  return s;
}

PipelineStage pipeline_stage(const std::vector<int64_t>& layers_per_stage, int stage) {
  PipelineStage s;
  s.first_layer = 0;
  for (int i = 0; i < stage; ++i) s.first_layer += layers_per_stage[static_cast<size_t>(i)];
  s.end_layer = s.first_layer + layers_per_stage[static_cast<size_t>(stage)];
  s.first = stage == 0;
  s.last = stage + 1 == static_cast<int>(layers_per_stage.size());
  return s;
}

Exaone4Model::Exaone4Model(ModelConfig config, at::TensorOptions options, TensorParallelGroups groups,
                           PipelineStage stage, LoraConfig lora, const std::vector<std::string>& freeze)
    : config_(std::move(config)), lora_(std::move(lora)), groups_(groups), stage_(stage),
      layer_kinds_(config_.layer_kinds()) {
  if (stage_.end_layer < 0) stage_.end_layer = config_.num_layers;
  device_ = options.device();
  std::vector<ParamSpec> all = build_param_specs(config_, lora_);
  apply_freeze(all, freeze);  // over the whole model: a pattern may match another stage only
  for (auto& spec : all) {  // this stage's parameters, in model order
    const bool mine = spec.kind == ParamKind::Embedding ? stage_.first || (stage_.last && config_.tie_embeddings)
                      : spec.layer < 0 || spec.layer >= config_.num_layers
                          ? stage_.last
                          : spec.layer >= stage_.first_layer && spec.layer < stage_.end_layer;
    if (mine) specs_.push_back(std::move(spec));
  }
  if (groups_.tp) {
    tp_size_ = groups_.tp->size();
    tp_rank_ = groups_.tp->rank();
  }
  heads_ = config_.num_heads / tp_size_;
  kv_heads_ = config_.num_kv_heads >= tp_size_ ? config_.num_kv_heads / tp_size_ : 1;
  vocab_local_ = config_.vocab_size / tp_size_;
  vocab_start_ = vocab_local_ * tp_rank_;
  for (const auto& spec : specs_) {
    shards_.push_back(tp_shard(spec, tp_rank_, tp_size_));
    params_.push_back(at::empty(local_shape(spec, shards_.back()), options));
  }
  // Bound by spec name, never by position: gate_proj and up_proj have the same shape, so a
  // reordered spec list must fail here rather than swap them.
  std::map<std::string, size_t> index;
  for (size_t k = 0; k < specs_.size(); ++k) index[specs_[k].name] = k;
  auto bind = [&](const std::string& name) {
    auto it = index.find(name);
    EXATRAIN_CHECK(it != index.end(), "internal: the parameter registry has no '{}' for this stage", name);
    return params_[it->second];
  };
  int64_t target = 0;
  auto adapter = [&](const std::string& module) {  // module: model.layers.L.self_attn.q_proj
    Adapter a;
    a.target = target++;
    auto it = index.find(module + ".lora_A.weight");
    if (it == index.end()) return a;
    a.a = params_[it->second];
    a.b = bind(module + ".lora_B.weight");
    a.in_full = specs_[it->second].shape[1];
    const ShardSlice& s = shards_[it->second];
    a.in_start = s.dim == 1 ? s.start : 0;
    return a;
  };
  if (stage_.first || (stage_.last && config_.tie_embeddings)) embed_ = bind("model.embed_tokens.weight");
  for (int64_t l = stage_.first_layer; l < stage_.end_layer; ++l) {
    const std::string n = "model.layers." + std::to_string(l) + ".";
    LayerParams p;
    p.q_proj = bind(n + "self_attn.q_proj.weight");
    p.k_proj = bind(n + "self_attn.k_proj.weight");
    p.v_proj = bind(n + "self_attn.v_proj.weight");
    p.o_proj = bind(n + "self_attn.o_proj.weight");
    p.q_norm = bind(n + "self_attn.q_norm.weight");
    p.k_norm = bind(n + "self_attn.k_norm.weight");
    p.post_attention_norm = bind(n + "post_attention_layernorm.weight");
    p.gate_proj = bind(n + "mlp.gate_proj.weight");
    p.up_proj = bind(n + "mlp.up_proj.weight");
    p.down_proj = bind(n + "mlp.down_proj.weight");
    p.post_feedforward_norm = bind(n + "post_feedforward_layernorm.weight");
    target = 0;
    p.q_lora = adapter(n + "self_attn.q_proj");
    p.k_lora = adapter(n + "self_attn.k_proj");
    p.v_lora = adapter(n + "self_attn.v_proj");
    p.o_lora = adapter(n + "self_attn.o_proj");
    p.gate_lora = adapter(n + "mlp.gate_proj");
    p.up_lora = adapter(n + "mlp.up_proj");
    p.down_lora = adapter(n + "mlp.down_proj");
    layers_.push_back(p);
  }
  if (stage_.last) {
    final_norm_ = bind("model.norm.weight");
    lm_head_ = config_.tie_embeddings ? embed_ : bind("lm_head.weight");
  }
  if (options.device().type() != at::kMeta) inv_freq_ = rope_inverse_frequencies(config_).to(options.device());
}

at::Tensor Exaone4Model::param(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); ++i)
    if (specs_[i].name == name) return params_[i];
  fail("the model has no parameter '{}'", name);
}

void Exaone4Model::set_requires_grad(bool requires_grad) {
  for (size_t i = 0; i < params_.size(); ++i) params_[i].requires_grad_(requires_grad && specs_[i].trainable);
}

void Exaone4Model::hold_frozen_linears_in(at::ScalarType dtype) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamSpec& spec = specs_[i];
    if (spec.trainable || (spec.kind != ParamKind::Linear && spec.kind != ParamKind::LmHead)) continue;
    // set_data swaps the storage under every handle of this tensor (LayerParams holds copies).
    params_[i].set_data(params_[i].detach().to(dtype));
  }
}

void Exaone4Model::hold_weights_in(at::ScalarType dtype) {
  at::NoGradGuard no_grad;
  for (auto& p : params_) p.set_data(p.detach().to(dtype));
  activation_dtype_ = dtype;
}

at::Tensor Exaone4Model::project(const at::Tensor& x, const at::Tensor& weight, const Adapter& adapter, int64_t layer,
                                 const LayerContext& ctx) const {
  at::Tensor y = at::linear(x, weight);
  if (!adapter.a.defined()) return y;
  at::Tensor in = x;
  if (ctx.dropout_key >= 0 && lora_.dropout > 0) {
    // The mask of the full input width, cut to this rank's columns: every layout draws the same
    // values for the same element (the generator runs on the CPU; the mask is then moved).
    const uint64_t seed = static_cast<uint64_t>(lora_.init_seed) * 0x9E3779B97F4A7C15ull ^
                          static_cast<uint64_t>(ctx.dropout_key) * 0xBF58476D1CE4E5B9ull ^
                          static_cast<uint64_t>(layer * 16 + adapter.target) * 0x94D049BB133111EBull;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = adapter.in_full;
    const double keep = 1.0 - lora_.dropout;
    at::Tensor mask = at::empty(shape, at::kFloat).bernoulli_(keep, gen).div_(keep);
    mask = mask.narrow(-1, adapter.in_start, x.size(-1)).to(x.device(), x.scalar_type());
    in = x * mask;
  }
  return y + at::linear(at::linear(in, adapter.a), adapter.b) * lora_.scale();
}

at::Tensor Exaone4Model::lm_head_weight() const { return lm_head_; }

Exaone4Model::LayerContext Exaone4Model::make_context(int64_t seq_len, const at::Device& device,
                                                        bool sequence_parallel, const at::Tensor& segments) const {
  LayerContext ctx;
  ctx.sequence_parallel = sequence_parallel && tp_size_ > 1;
  ctx.segments = segments;
  ctx.rope = segments.defined() ? rope_tables(inv_freq_, document_positions(segments)) : rope_tables(inv_freq_, seq_len);
  // Our kernels need no mask; the reference gets one, shared by the sliding layers (and with
  // document masks one for the global layers).
  const bool reference = ops::resolve_impl(kernels_, device) == ops::Impl::Reference;
  if (reference && segments.defined()) {
    if (config_.sliding_window > 0) ctx.sliding_mask = ops::visibility_mask(seq_len, config_.sliding_window, device, segments);
    ctx.full_mask = ops::visibility_mask(seq_len, 0, device, segments);
  } else if (config_.sliding_window > 0 && config_.sliding_window < seq_len && reference) {
    ctx.sliding_mask = ops::visibility_mask(seq_len, config_.sliding_window, device);
  }
  return ctx;
}

at::Tensor Exaone4Model::attention(const LayerParams& p, int64_t layer, const at::Tensor& x,
                                   const LayerContext& ctx) const {
  const at::Tensor xt = enter_tp(x, ctx.sequence_parallel);  // [B, T, H]
  const int64_t B = xt.size(0), T = xt.size(1), D = config_.resolved_head_dim();
  const int64_t nh = heads_, nkv = kv_heads_;  // this rank's heads
  at::Tensor q = project(xt, p.q_proj, p.q_lora, layer, ctx).view({B, T, nh, D}).transpose(1, 2);   // [B, nh/tp, T, D]
  at::Tensor k = project(xt, p.k_proj, p.k_lora, layer, ctx).view({B, T, nkv, D}).transpose(1, 2);  // [B, nkv/tp, T, D]
  at::Tensor v = project(xt, p.v_proj, p.v_lora, layer, ctx).view({B, T, nkv, D}).transpose(1, 2);  // [B, nkv/tp, T, D]
  q = norm(q, p.q_norm);
  k = norm(k, p.k_norm);
  if (config_.layer_uses_rope(layer)) {
    const ops::Impl rope_impl = ops::resolve_rope_impl(kernels_, q.device());
    q = ops::rope(q, ctx.rope, rope_impl);
    k = ops::rope(k, ctx.rope, rope_impl);
  }
  // Under bf16 autocast the norms return fp32; attention runs in v's dtype.
  q = q.to(v.scalar_type());
  k = k.to(v.scalar_type());
  // GQA (query head h reads KV head h / (nh / nkv)) and the window live in the operator.
  ops::AttentionSpec spec;
  spec.window = layer_kinds_[static_cast<size_t>(layer)] == LayerKind::Sliding ? config_.sliding_window : 0;
  spec.scale = 1.0 / std::sqrt(static_cast<double>(D));
  spec.mask = spec.window > 0 ? ctx.sliding_mask : ctx.full_mask;
  spec.segments = ctx.segments;
  at::Tensor out = ops::attention(q, k, v, spec, ops::resolve_impl(kernels_, q.device()));  // [B, nh/tp, T, D]
  out = out.transpose(1, 2).reshape({B, T, nh * D});  // [B, T, nh/tp * D]
  out = project(out, p.o_proj, p.o_lora, layer, ctx);  // row-parallel: partial sums
  return leave_tp(out, ctx.sequence_parallel);
}

at::Tensor Exaone4Model::enter_tp(const at::Tensor& x, bool sequence_parallel) const {
  if (!groups_.tp) return x;
  return sequence_parallel ? gather_from_sp(x, *groups_.tp, 1) : copy_to_tp(x, *groups_.tp);
}

at::Tensor Exaone4Model::leave_tp(const at::Tensor& x, bool sequence_parallel) const {
  if (!groups_.tp) return x;
  return sequence_parallel ? reduce_scatter_to_sp(x, *groups_.tp, 1) : reduce_from_tp(x, *groups_.tp);
}

at::Tensor Exaone4Model::layer_forward(int64_t layer, const at::Tensor& x, const LayerContext& ctx) const {
  const LayerParams& p = layers_[static_cast<size_t>(layer - stage_.first_layer)];
  at::Tensor h = x + norm(attention(p, layer, x, ctx), p.post_attention_norm);
  const at::Tensor ht = enter_tp(h, ctx.sequence_parallel);
  const at::Tensor gate = project(ht, p.gate_proj, p.gate_lora, layer, ctx);  // [B, T, I/tp]
  const at::Tensor up = project(ht, p.up_proj, p.up_lora, layer, ctx);
  const ops::Impl swiglu_impl = ops::resolve_swiglu_impl(kernels_, gate.device(), gate.scalar_type());
  at::Tensor mlp = project(ops::swiglu(gate, up, swiglu_impl), p.down_proj, p.down_lora, layer, ctx);
  mlp = leave_tp(mlp, ctx.sequence_parallel);
  return h + norm(mlp, p.post_feedforward_norm);
}

namespace {

// Activation recomputation: the forward keeps only the layer input; the backward runs the
// layer again with autograd on and back-propagates through it. Parameter gradients accumulate
// directly into the (leaf) parameters, so only the input's gradient is returned.
struct RecomputedLayer : public torch::autograd::Function<RecomputedLayer> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor x, int64_t model_address,
                            int64_t layer, at::Tensor cos, at::Tensor sin, at::Tensor mask, bool sequence_parallel,
                            int64_t dropout_key, at::Tensor segments, at::Tensor full_mask) {
    const auto* model = reinterpret_cast<const Exaone4Model*>(model_address);
    ctx->save_for_backward({x, cos, sin, mask, segments, full_mask});
    ctx->saved_data["model"] = model_address;
    ctx->saved_data["layer"] = layer;
    ctx->saved_data["sp"] = sequence_parallel;
    ctx->saved_data["dropout_key"] = dropout_key;
    ctx->saved_data["autocast"] = at::autocast::is_autocast_enabled(x.device().type());
    auto given = [](const at::Tensor& t) { return t.numel() > 0 ? t : at::Tensor(); };
    Exaone4Model::LayerContext lc{RopeTables{cos, sin}, sequence_parallel, given(mask), dropout_key, given(segments),
                                  given(full_mask)};
    return model->layer_forward(layer, x, lc);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto* model = reinterpret_cast<const Exaone4Model*>(ctx->saved_data["model"].toInt());
    const int64_t layer = ctx->saved_data["layer"].toInt();
    at::Tensor x = saved[0].detach().requires_grad_(true);
    const at::DeviceType device = x.device().type();
    const bool was_autocast = at::autocast::is_autocast_enabled(device);
    at::autocast::set_autocast_enabled(device, ctx->saved_data["autocast"].toBool());
    at::Tensor y;
    {
      at::AutoGradMode enable(true);
      auto given = [](const at::Tensor& t) { return t.numel() > 0 ? t : at::Tensor(); };
      Exaone4Model::LayerContext lc{RopeTables{saved[1], saved[2]}, ctx->saved_data["sp"].toBool(), given(saved[3]),
                                    ctx->saved_data["dropout_key"].toInt(), given(saved[4]), given(saved[5])};
      y = model->layer_forward(layer, x, lc);
    }
    at::autocast::set_autocast_enabled(device, was_autocast);
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(),     at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor Exaone4Model::stage_forward(const at::Tensor& input, bool recompute, bool sequence_parallel,
                                       const at::Tensor& segments) const {
  if (stage_.first) EXATRAIN_CHECK(input.dim() == 2, "token ids must be [batch, seq], got {} dimensions", input.dim());
  const bool sp = sequence_parallel && tp_size_ > 1;
  const int64_t seq_len = input.size(1) * (sp && !stage_.first ? tp_size_ : 1);
  EXATRAIN_CHECK(!sp || seq_len % tp_size_ == 0, "sequence parallelism: sequence length {} is not divisible by tp {}",
                 seq_len, tp_size_);
  EXATRAIN_CHECK(!segments.defined() || (segments.dim() == 2 && segments.size(1) == seq_len),
                 "document segments must be [batch, {}], got {}", seq_len, c10::str(segments.sizes()));
  LayerContext ctx = make_context(seq_len, input.device(), sp, segments);
  if (lora_.enabled() && lora_.dropout > 0 && at::GradMode::is_enabled())  // training: one key per forward
    ctx.dropout_key = dropout_step_ * 65536 + dropout_forwards_++;
  const at::Tensor no_mask = at::empty({0}, at::TensorOptions().dtype(at::kBool).device(input.device()));
  at::Tensor h = stage_.first ? embed(input, sp) : input;  // [B, T, H], or [B, T / tp, H] with sp
  for (int64_t l = stage_.first_layer; l < stage_.end_layer; ++l) {
    if (recompute && at::GradMode::is_enabled()) {
      // Autograd runs a Function's backward only when an input needs a gradient; a frozen
      // embedding (LoRA) gives the first layer an input that does not, while the layer's
      // adapters do: let the input ask for one (its gradient is then simply unused).
      if (!h.requires_grad()) h = h.detach().requires_grad_(true);
      // No mask (our kernels): an empty tensor, as autograd functions take no undefined inputs.
      h = RecomputedLayer::apply(h, reinterpret_cast<int64_t>(this), l, ctx.rope.cos, ctx.rope.sin,
                                 ctx.sliding_mask.defined() ? ctx.sliding_mask : no_mask, sp, ctx.dropout_key,
                                 ctx.segments.defined() ? ctx.segments : no_mask,
                                 ctx.full_mask.defined() ? ctx.full_mask : no_mask);
    } else {
      h = layer_forward(l, h, ctx);
    }
  }
  if (!stage_.last) return h;
  h = norm(h, final_norm_);
  return at::linear(enter_tp(h, sp), lm_head_);  // [B, T, vocab/tp]
}

// Vocab-parallel embedding: each rank looks up the ids in its rows, zeroes the others, and the
// all-reduce (with sequence parallelism: reduce-scatter over the sequence) assembles the full
// embedding.
at::Tensor Exaone4Model::embed(const at::Tensor& ids, bool sequence_parallel) const {
  if (tp_size_ == 1) return at::embedding(embed_, ids, config_.pad_token_id);
  at::Tensor local = ids - vocab_start_;
  at::Tensor mine = (local >= 0).logical_and(local < vocab_local_);
  local = at::where(mine, local, at::zeros_like(local));
  const int64_t pad = config_.pad_token_id - vocab_start_;
  at::Tensor h = at::embedding(embed_, local, pad >= 0 && pad < vocab_local_ ? pad : -1);
  h = h * mine.unsqueeze(-1).to(h.scalar_type());
  return leave_tp(h, sequence_parallel);
}

at::Tensor Exaone4Model::forward(const at::Tensor& ids, bool recompute) const {
  EXATRAIN_CHECK(stage_.first && stage_.last, "forward() runs the whole model; under pipeline parallelism "
                 "use stage_forward() from a schedule");
  return stage_forward(ids, recompute);
}

at::Tensor Exaone4Model::full_logits(const at::Tensor& ids) const {
  at::Tensor logits = forward(ids);
  return tp_size_ == 1 ? logits : groups_.tp->all_gather(logits, -1);
}

at::Tensor Exaone4Model::loss(const at::Tensor& inputs, const at::Tensor& targets, bool recompute) const {
  return loss_from_logits(forward(inputs, recompute), targets);
}

at::Tensor Exaone4Model::loss_from_logits(const at::Tensor& logits, const at::Tensor& targets,
                                          const at::Tensor& weights) const {
  if (tp_size_ == 1) return token_cross_entropy(logits, targets, weights, kernels_);
  const at::Tensor each = vocab_parallel_cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
                                                       vocab_start_, *groups_.tp,
                                                       ops::resolve_cross_entropy_impl(kernels_, logits.device()));
  return reduce_token_losses(each, targets, weights);
}

at::Tensor Exaone4Model::gather_param(size_t i) const {
  const ShardSlice& s = shards_[i];
  if (s.dim < 0 || tp_size_ == 1) return params_[i];
  at::NoGradGuard no_grad;
  at::Tensor all = groups_.tp->all_gather(params_[i].detach(), s.dim);
  if (s.replicas == 1) return all;
  std::vector<at::Tensor> units;  // one copy of each replicated unit
  auto chunks = all.chunk(tp_size_, s.dim);
  for (int r = 0; r < tp_size_; r += s.replicas) units.push_back(chunks[static_cast<size_t>(r)]);
  return at::cat(units, s.dim);
}

bool Exaone4Model::canonical(size_t i) const {
  if (specs_[i].kind == ParamKind::Embedding && !stage_.first) return false;  // the tied copy on the last stage
  const ShardSlice& s = shards_[i];
  return s.dim >= 0 ? tp_rank_ % s.replicas == 0 : tp_rank_ == 0;
}

TensorSlice Exaone4Model::slice(size_t i) const { return tp_slice(specs_[i], shards_[i]); }

namespace {

bool is_adapter(const ParamSpec& spec) { return spec.kind == ParamKind::LoraA || spec.kind == ParamKind::LoraB; }

// Parameters `which` selects: each full tensor from a generator seeded from (seed, its name),
// so values do not depend on which parameters this rank holds (pipeline stages, TP shards);
// this rank keeps its shard.
void init_each(Exaone4Model& model, uint64_t seed, bool adapters) {
  at::NoGradGuard no_grad;
  const auto& specs = model.specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const ParamSpec& spec = specs[i];
    if (is_adapter(spec) != adapters) continue;
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char ch : spec.name) h = (h ^ ch) * 1099511628211ull;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ h);
    at::Tensor p = model.params()[i];
    at::Tensor value;
    if (spec.kind == ParamKind::Norm || spec.kind == ParamKind::HeadNorm) {
      value = at::ones(spec.shape, at::kFloat);
    } else if (spec.kind == ParamKind::LoraB) {
      value = at::zeros(spec.shape, at::kFloat);
    } else if (spec.kind == ParamKind::LoraA) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(spec.shape[1]));  // kaiming_uniform, a = sqrt(5)
      value = at::empty(spec.shape, at::kFloat).uniform_(-bound, bound, gen);
    } else {
      value = at::empty(spec.shape, at::kFloat);
      value.normal_(0.0, model.config().init_std, gen);
      if (spec.kind == ParamKind::Embedding) value[model.config().pad_token_id].zero_();
    }
    const ShardSlice& s = model.shards()[i];
    p.copy_(s.dim < 0 ? value : value.narrow(s.dim, s.start, s.length));
  }
}

}  // namespace

void init_parameters(Exaone4Model& model, uint64_t seed) {
  init_each(model, seed, /*adapters=*/false);
  init_adapters(model);
}

void init_adapters(Exaone4Model& model) {
  init_each(model, static_cast<uint64_t>(model.lora().init_seed), /*adapters=*/true);
}

}  // namespace exatrain
