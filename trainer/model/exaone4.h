// The EXAONE-4 decoder, numerically as transformers' Exaone4ForCausalLM:
//   h = embed(ids)
//   per layer:  h = h + post_attention_layernorm(attn(h))
//               h = h + post_feedforward_layernorm(mlp(h))        (no pre-norm)
//   logits = lm_head(norm(h))
// Attention: q/k/v projections, per-head RMSNorm on q and k BEFORE RoPE, GQA (query head h
// reads KV head h / (heads / kv_heads)), scale head_dim^-0.5. In hybrid models sliding layers
// use RoPE and a window (q - W < k <= q); global layers use no positional encoding.
// Parameters come from the spec registry (param_spec.h), one tensor per spec.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "trainer/core/config.h"
#include "trainer/model/param_spec.h"
#include "trainer/model/rope.h"

namespace exatrain {

// RMSNorm in fp32, cast back to the input dtype, then scaled: weight * (x / rms(x)); the
// reference (ATen) implementation of ops::rms_norm. The model calls its norm() member, which
// runs the implementation train.kernels picks.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// Query head -> KV head under GQA.
inline int64_t kv_head_of(int64_t query_head, int64_t num_heads, int64_t num_kv_heads) {
  return query_head / (num_heads / num_kv_heads);
}

// Mean cross-entropy over all positions: logits [batch, seq, vocab], targets [batch, seq].
// Computed in fp32. With `weights` [batch, seq]: sum over positions of weight x cross-entropy.
// Targets -100 count for nothing (torch's ignore_index): no loss, not in the mean's count.
// `kernels` picks the implementation of ops::cross_entropy (the reference: at::cross_entropy_loss).
at::Tensor token_cross_entropy(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& weights = {},
                               KernelChoice kernels = KernelChoice::Reference);
// The causal-LM objective on one sequence set: logits[:, t] predicts ids[:, t + 1]
// (as transformers' ForCausalLMLoss with labels = input ids).
at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& ids);

class Communicator;

// Tensor parallelism as the model sees it: the TP group, and the group of ranks holding the
// same replicated KV head (when num_kv_heads < tp). Null means one rank.
struct TensorParallelGroups {
  const Communicator* tp = nullptr;
  const Communicator* kv_replicas = nullptr;
};

// The layers this pipeline stage runs: [first_layer, end_layer); the first stage also embeds,
// the last also applies the final norm and lm_head. Default: the whole model.
struct PipelineStage {
  int64_t first_layer = 0, end_layer = -1;  // -1: num_layers
  bool first = true, last = true;
};
// Even split of `layers` over `stages` (earlier stages take the remainder).
PipelineStage pipeline_stage(int64_t layers, int stages, int stage);
// An explicit split: `layers_per_stage[s]` decoder layers on stage s (e.g. lighter first and
// last stages, which also hold the embedding and the lm_head).
PipelineStage pipeline_stage(const std::vector<int64_t>& layers_per_stage, int stage);

class Exaone4Model {
 public:
  // Allocates one tensor per spec: this rank's shard under tensor parallelism (uninitialised;
  // see init_parameters or load_hf_model). On the meta device nothing is allocated, which is
  // how the 32B model is inspected.
  // Only this stage's parameters exist; with tied embeddings the last stage holds a copy of
  // the embedding as its lm_head (kept equal by summing the two gradients).
  // With `lora` (rank > 0) the targeted linears get adapters (param_spec.h) and every other
  // parameter is frozen; `freeze` (train.freeze patterns) freezes more.
  Exaone4Model(ModelConfig config, at::TensorOptions options, TensorParallelGroups groups = {},
               PipelineStage stage = {}, LoraConfig lora = {}, const std::vector<std::string>& freeze = {});

  const ModelConfig& config() const { return config_; }
  const LoraConfig& lora() const { return lora_; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  const std::vector<at::Tensor>& params() const { return params_; }
  const std::vector<ShardSlice>& shards() const { return shards_; }
  const TensorParallelGroups& groups() const { return groups_; }
  int tp_size() const { return tp_size_; }
  at::Device device() const { return device_; }
  const PipelineStage& stage() const { return stage_; }
  // The stage's computation: ids (first stage) or the previous stage's hidden states
  // [batch, seq, hidden] -> hidden states, or local logits [batch, seq, vocab/tp] on the last.
  // With sequence_parallel (and tp > 1) the hidden states between layers and stages are this
  // rank's part of the sequence, [batch, seq / tp, hidden]; ids and logits stay whole.
  // `segments` [batch, seq] int32 (data.document_mask; undefined: off): attention stays within a
  // document and RoPE positions restart in each; always the whole sequence, on every stage.
  at::Tensor stage_forward(const at::Tensor& input, bool recompute = false, bool sequence_parallel = false,
                           const at::Tensor& segments = {}) const;
  // The loss from this stage's logits (last stage): the mean over positions, or with `weights`
  // [batch, seq] the weighted sum (a loss mask divided by the batch's count of counted tokens).
  at::Tensor loss_from_logits(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& weights = {}) const;
  // The full (unsharded) value of parameter i, gathered over the TP group.
  at::Tensor gather_param(size_t i) const;
  // Mean cross-entropy of predicting `targets` [batch, seq] from `inputs` [batch, seq]; with TP
  // it is the vocab-parallel loss on the local logits.
  at::Tensor loss(const at::Tensor& inputs, const at::Tensor& targets, bool recompute = false) const;
  at::Tensor param(const std::string& name) const;
  // Whether this rank's copy of parameter i is the one counted once over the layout (in the
  // global gradient norm, in checkpoints): a TP shard on the first rank of its replica group,
  // a TP-replicated parameter on TP rank 0, the tied embedding on the first stage only.
  bool canonical(size_t i) const;
  // The part of the global tensor that parameter i's local shard is.
  TensorSlice slice(size_t i) const;
  // requires_grad on the trainable parameters (ParamSpec::trainable); frozen ones never.
  void set_requires_grad(bool requires_grad);
  // Frozen linear weights (LoRA's base, train.freeze) held in `dtype` from now on (bf16 runs:
  // half the memory; autocast computes with them in bf16 anyway). Norms and embeddings stay.
  void hold_frozen_linears_in(at::ScalarType dtype);
  // Every weight held in `dtype` from now on (train.weights: bf16; the optimizer keeps the fp32
  // master copy): the residual stream then runs in that dtype too, as transformers' bf16 model.
  void hold_weights_in(at::ScalarType dtype);
  // The dtype of the hidden states between layers and stages (the pipeline sends it).
  at::ScalarType activation_dtype() const { return activation_dtype_; }
  // LoRA dropout: masks are drawn from (lora.init_seed, the step, the forward's index within
  // the step, layer, target), so a recomputed layer draws the same mask and TP ranks agree.
  void begin_step(int64_t step) const { dropout_step_ = step, dropout_forwards_ = 0; }
  // Which implementation of the fused operators runs (kernels/ops.h); auto by default.
  void set_kernels(KernelChoice kernels) { kernels_ = kernels; }
  KernelChoice kernels() const { return kernels_; }

  // ids [batch, seq] int64 -> logits [batch, seq, vocab / tp] (this rank's vocabulary slice).
  at::Tensor forward(const at::Tensor& ids, bool recompute = false) const;
  // Full-vocabulary logits [batch, seq, vocab], gathered over TP (collective under TP).
  at::Tensor full_logits(const at::Tensor& ids) const;
  at::Tensor lm_head_weight() const;

  // One decoder layer: [batch, seq, hidden] -> [batch, seq, hidden].
  struct LayerContext {
    RopeTables rope;
    bool sequence_parallel = false;  // x is [batch, seq / tp, hidden]
    // Only when attention runs the reference (ATen SDPA) and a window is shorter than the
    // sequence: the [seq, seq] visibility mask, built once per forward for all sliding layers.
    at::Tensor sliding_mask;
    int64_t dropout_key = -1;  // LoRA dropout on (a training forward): part of the mask's seed; -1 off
    // Document masks: the segments [batch, seq] (attention and RoPE), and for the reference the
    // [batch, 1, seq, seq] masks of the global layers (sliding_mask then has that shape too).
    at::Tensor segments;
    at::Tensor full_mask;
  };
  at::Tensor layer_forward(int64_t layer, const at::Tensor& x, const LayerContext& ctx) const;
  LayerContext make_context(int64_t seq_len, const at::Device& device, bool sequence_parallel = false,
                            const at::Tensor& segments = {}) const;

 private:
  // A LoRA adapter (undefined without one): this rank's A and B, and where A's input columns
  // start in the full input (a row-parallel base splits them) for the dropout mask.
  struct Adapter {
    at::Tensor a, b;
    int64_t in_start = 0, in_full = 0, target = 0;
  };
  struct LayerParams {
    at::Tensor q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, post_attention_norm;
    at::Tensor gate_proj, up_proj, down_proj, post_feedforward_norm;
    Adapter q_lora, k_lora, v_lora, o_lora, gate_lora, up_lora, down_lora;
  };
  // RMSNorm (ops::rms_norm) with the implementation kernels_ picks on x's device.
  at::Tensor norm(const at::Tensor& x, const at::Tensor& weight) const;
  // x W^T, plus the adapter's (alpha / r) * dropout(x) A^T B^T when there is one.
  at::Tensor project(const at::Tensor& x, const at::Tensor& weight, const Adapter& adapter, int64_t layer,
                     const LayerContext& ctx) const;
  at::Tensor attention(const LayerParams& p, int64_t layer, const at::Tensor& x, const LayerContext& ctx) const;
  // Into a TP region (copy, or all-gather of the sequence) and out of it (all-reduce, or
  // reduce-scatter of the sequence).
  at::Tensor enter_tp(const at::Tensor& x, bool sequence_parallel) const;
  at::Tensor leave_tp(const at::Tensor& x, bool sequence_parallel) const;

  at::Tensor embed(const at::Tensor& ids, bool sequence_parallel = false) const;

  ModelConfig config_;
  LoraConfig lora_;
  mutable int64_t dropout_step_ = 0, dropout_forwards_ = 0;
  TensorParallelGroups groups_;
  PipelineStage stage_;
  at::Device device_ = at::kCPU;
  at::ScalarType activation_dtype_ = at::kFloat;
  KernelChoice kernels_ = KernelChoice::Auto;
  int tp_size_ = 1, tp_rank_ = 0;
  int64_t heads_ = 0, kv_heads_ = 0;          // local to this TP rank
  int64_t vocab_start_ = 0, vocab_local_ = 0;  // this rank's vocabulary rows
  std::vector<ParamSpec> specs_;
  std::vector<ShardSlice> shards_;
  std::vector<at::Tensor> params_;
  std::vector<LayerParams> layers_;
  std::vector<LayerKind> layer_kinds_;
  at::Tensor embed_, final_norm_, lm_head_;
  at::Tensor inv_freq_;  // fp32 [head_dim / 2]
};

// Normal(0, init_std) for linears and embeddings (pad row zero), ones for norms; deterministic
// in `seed` and independent of the device and of the layout (each parameter has its own
// generator; each rank generates the full tensor and keeps its shard).
// LoRA adapters (when the model has them) are initialised as init_adapters does.
void init_parameters(Exaone4Model& model, uint64_t seed);
// Only the LoRA adapters, from lora.init_seed: A uniform(+-1/sqrt(in)) (PEFT's default
// kaiming_uniform with a = sqrt(5)), B zero; independent of the layout, as init_parameters.
void init_adapters(Exaone4Model& model);

}  // namespace exatrain
