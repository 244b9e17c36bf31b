#include "trainer/plan/cost_model.h"

#include <fmt/format.h>

#include <algorithm>

#include "trainer/core/error.h"
#include "trainer/model/exaone4.h"
#include "trainer/model/param_spec.h"

namespace exatrain {

namespace {

constexpr double kGiB = 1024.0 * 1024 * 1024;

bool is_gate(const ParamSpec& s) { return s.name.find("mlp.gate_proj") != std::string::npos; }

// Whether a spec exists in this model variant (GPT-style: no gate, no q/k norms).
bool in_variant(const ParamSpec& s, const ModelVariant& v) {
  if (!v.gated_mlp && is_gate(s)) return false;
  if (!v.qk_norm && s.kind == ParamKind::HeadNorm) return false;
  return true;
}

// How many keys a query of this layer attends to (PaLM's T in 12 L H Q T): the sequence for
// global layers, the window for sliding ones.
double attention_span(const ModelConfig& m, const ModelVariant& v, LayerKind kind, int64_t seq_len) {
  return static_cast<double>(kind == LayerKind::Sliding && !v.full_attention ? std::min(seq_len, m.sliding_window)
                                                                             : seq_len);
}

// TorchTitan's 'op' selective checkpointing recomputes every second matmul of a layer's forward
// (the spec registry lists a layer's linears in forward order: q, k, v, o, gate, up, down).
std::vector<bool> op_recomputed(const std::vector<ParamSpec>& specs) {
  std::vector<bool> out(specs.size(), false);
  int64_t layer = -2, count = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].kind != ParamKind::Linear) continue;
    if (specs[i].layer != layer) layer = specs[i].layer, count = 0;
    out[i] = ++count % 2 == 0;
  }
  return out;
}

PipelineStage stage_of_layout(const ModelConfig& m, const CostLayout& l, int s) {
  return l.pipeline_layers.empty() ? pipeline_stage(m.num_layers, static_cast<int>(l.pp), s)
                                   : pipeline_stage(l.pipeline_layers, s);
}

// This stage's TP shards, as Exaone4Model decides which parameters a stage holds: all of them,
// those that train (gradients and optimizer state), the bytes of the frozen ones (linears held in
// bf16 by a bf16 run, Exaone4Model::hold_frozen_linears_in), and the most any one decoder layer
// of the stage holds.
struct StageParams {
  int64_t elements = 0, trainable = 0, largest_layer = 0;
  double frozen_bytes = 0;
};

StageParams stage_params(const std::vector<ParamSpec>& specs, const ModelConfig& m, const PipelineStage& stage,
                         int64_t tp, Precision precision, bool bf16_weights) {
  StageParams out;
  std::map<int64_t, int64_t> per_layer;
  for (const ParamSpec& spec : specs) {
    const bool mine = spec.kind == ParamKind::Embedding ? stage.first || (stage.last && m.tie_embeddings)
                      : spec.layer < 0 || spec.layer >= m.num_layers
                          ? stage.last
                          : spec.layer >= stage.first_layer && spec.layer < stage.end_layer;
    if (!mine) continue;
    int64_t n = 1;
    for (int64_t d : local_shape(spec, tp_shard(spec, 0, static_cast<int>(tp)))) n *= d;
    out.elements += n;
    if (spec.layer >= 0 && spec.layer < m.num_layers) per_layer[spec.layer] += n;
    if (spec.trainable) {
      out.trainable += n;
    } else {
      const bool half = bf16_weights || (precision == Precision::BF16 &&
                                         (spec.kind == ParamKind::Linear || spec.kind == ParamKind::LmHead));
      out.frozen_bytes += (half ? 2.0 : 4.0) * static_cast<double>(n);
    }
  }
  for (const auto& [layer, n] : per_layer) out.largest_layer = std::max(out.largest_layer, n);
  return out;
}

// Activation bytes of one micro-batch on one stage, from what each operator of
// Exaone4Model::layer_forward saves for backward (docs/planning.md lists them).
struct ActivationModel {
  double saved = 0;      // kept from the forward until the backward
  double workspace = 0;  // the backward's largest transient on top of what is still saved
};

ActivationModel stage_activations(const ModelConfig& m, const ModelVariant& v, const CostLayout& l,
                                  const PipelineStage& stage) {
  const double B = static_cast<double>(l.micro_batch), T = static_cast<double>(l.seq_len);
  const double H = static_cast<double>(m.hidden_size), D = static_cast<double>(m.resolved_head_dim());
  const int64_t tp = l.tp;
  const bool sp = l.sequence_parallel && tp > 1;
  const double heads = static_cast<double>(m.num_heads / tp);
  const double kv = static_cast<double>(std::max<int64_t>(m.num_kv_heads / tp, 1));
  const double inter = static_cast<double>(m.intermediate_size / tp);
  const double vocab = static_cast<double>(m.vocab_size / tp);
  const double rows = sp ? T / static_cast<double>(tp) : T;  // residual-stream positions on this rank
  // bf16 autocast: GEMM outputs and attention in 2 bytes, and the residual stream stays fp32
  // (norm outputs are fp32 weight times bf16). The norms (the fused ops::rms_norm on the CPU)
  // save their input as it is and one fp32 1/rms per row.
  const double act = l.precision == Precision::BF16 ? 2.0 : 4.0, f32 = 4.0;
  const double layers = static_cast<double>(stage.end_layer - stage.first_layer);
  const auto kinds = m.layer_kinds();
  bool any_sliding = false;
  for (int64_t i = stage.first_layer; i < stage.end_layer; ++i)
    any_sliding = any_sliding || (kinds[static_cast<size_t>(i)] == LayerKind::Sliding && !v.full_attention);

  // One decoder layer's saved tensors (bytes).
  const double residual = 2 * B * rows * H * (f32 + act);  // input, mid h (fp32); o_proj out, down out (norm inputs)
  const double gathered = sp ? 2 * B * T * H * f32 : 0;  // all-gathered inputs of attention and MLP
  const double q_saves = v.qk_norm ? 2 : 1, k_saves = v.qk_norm ? 2 : 1;  // projection (the norm's input), rotated
  const double attention = (q_saves + 1) * B * T * heads * D * act  // ... and the attention output
                           + (k_saves + 1) * B * T * kv * D * act    // k as q; v
                           + B * heads * T * f32                     // log-sum-exp
                           + (v.qk_norm ? B * T * (heads + kv) * f32 : 0) + 2 * B * rows * f32;  // rsqrt of norms
  // MLP: gate, silu, up, product | up, gelu. The fused SwiGLU (ops::swiglu: auto, fp32 on the
  // CPU, fp32 and bf16 on a GPU) keeps gate and up and not silu(gate): one [B, T, I] less. bf16
  // is counted as the reference (what a CPU runs, where the fused kernel is not faster): on a GPU
  // an upper bound by that one tensor per layer.
  const bool fused_swiglu = v.gated_mlp && !l.attention_mask && l.precision == Precision::FP32;
  const double mlp = (v.gated_mlp ? (fused_swiglu ? 3 : 4) : 2) * B * T * inter * act;
  const double layer_saved = residual + gathered + attention + mlp;
  // Per micro-batch and stage: RoPE tables (cos, sin: [T, D] fp32) and, when attention runs the
  // reference (SDPA), the [T, T] bool mask of sliding layers (the flash kernels need none); the
  // stage's output (held by the schedule, or the final norm's input).
  double context = 2 * T * D * f32 + (any_sliding && l.attention_mask && m.sliding_window < l.seq_len ? T * T : 0);
  // Document masks: per-token RoPE tables and segment ids; with the reference, the boolean
  // [B, 1, T, T] masks make_context builds (sliding, if the model has a window, and global,
  // whatever layers the stage runs), and per layer the float copy of its mask that SDPA keeps for
  // backward (one layer's under recomputation; measured: tiny, B 4, T 256, reference: 71.5 MB
  // peak against 67.9 MB without document masks; this model says 72.0 and 67.2).
  if (l.document_mask)
    context = 2 * B * T * D * f32 + B * T * 4 +
              (l.attention_mask ? (m.sliding_window > 0 ? 2 : 1) * B * T * T +
                                      (l.recompute == Recompute::Full ? 1 : layers) * B * T * T * f32
                                : 0);
  const bool recompute = l.recompute == Recompute::Full;
  ActivationModel a;
  a.saved = (recompute ? layers * B * rows * H * f32 : layers * layer_saved) + context + B * rows * H * f32;
  // The backward of one layer (the last of the stage, first to run) holds on top of what is still
  // saved: the residual branch's gradient [B, T, H] and either the MLP product's gradient plus
  // the gate and up gradients ([B, T, I] each, the product itself released: net 2 x [B, T, I]),
  // or, one node earlier, the product's gradient and down_proj's weight-gradient temporary
  // ([H, I], before it is accumulated) with the incoming gradient. Recomputation first rebuilds
  // the layer's saved set. By then the loss and the final norm have released what they saved.
  const double bti = B * T * inter * act, bth = B * T * H * f32;
  const double weight_grad = H * inter * f32;
  double layer_ws = std::max(2 * bti, bti + weight_grad + bth) + bth;
  if (recompute) layer_ws += layer_saved;
  double head = 0, loss_ws = 0;
  if (stage.last) {
    // Final norm (normalized, lm_head input) and the loss. The fused loss (ops::cross_entropy,
    // train.kernels: auto) keeps the logits and two floats per row, nothing [B*T, V/tp] of its
    // own; its backward writes the logits' gradient beside them. The reference (attention_mask
    // is set exactly when train.kernels is reference): the vocab-parallel cross-entropy keeps its
    // softmax [B*T, V/tp]; while it runs, logits, shifted logits and their exponentials exist
    // too (tp 1: logits and the log-softmax); backward: the logits' gradient beside the saved
    // softmax (tp 1: nll's and log-softmax's gradients). Then lm_head's weight-gradient
    // temporary [V/tp, H] and its input gradient.
    const double logits = B * T * vocab * f32;
    const bool fused_loss = !l.attention_mask;
    head = B * rows * H * f32 + B * T * H * f32 + logits;
    const double loss_fwd = fused_loss ? 0 : (tp > 1 ? 3 : 1) * logits;
    const double loss_bwd = std::max((fused_loss || tp > 1 ? 1 : 2) * logits, vocab * H * f32 + B * T * H * f32);
    loss_ws = std::max(loss_fwd, loss_bwd);
  }
  // The embedding's backward, last of the stage (its micro-batch's activations released): the
  // dense weight gradient [V/tp, H] before it is accumulated, beside layer 0's input gradient
  // (residual plus the q, k, v paths: 3 x [B, T, H]). With tied embeddings on a one-stage model
  // the lm_head's weight gradient waits for it in autograd's input buffer and the two are
  // summed into a third.
  double embedding_ws = 0;
  if (stage.first)
    embedding_ws = vocab * H * f32 * (m.tie_embeddings && stage.last ? 3 : 1) + 3 * B * rows * H * f32;
  // The peak of one micro-batch is the largest of three moments: the loss (everything saved,
  // plus the loss's transients), the first layer backward (the head's tensors released) and the
  // embedding's backward (nothing of it saved any more).
  const double saved_total = a.saved + head;
  // (At the first layer backward of the last stage the final norm has released its input, the
  // stage's output.)
  // A stage after the first posts the next micro-batch's receive before a backward in the steady
  // phase (trainer/parallel/pipeline.cpp), so its buffer [B, T (/tp), H] is allocated meanwhile.
  const bool receive_posted = !stage.first && l.micro_batches() > 1;
  const double layer_phase =
      a.saved - (stage.last ? B * rows * H * f32 : 0) + layer_ws + (receive_posted ? B * rows * H * f32 : 0);
  const double peak = std::max({saved_total + loss_ws, layer_phase, embedding_ws});
  a.saved = saved_total;
  a.workspace = peak - saved_total;
  return a;
}

}  // namespace

CostLayout CostLayout::of(const RunConfig& c, int64_t tp, int64_t pp, int64_t dp) {
  CostLayout l;
  l.tp = tp;
  l.pp = pp;
  l.dp = dp;
  l.zero = c.parallel.zero;
  l.sequence_parallel = c.parallel.sequence_parallel;
  l.pipeline_layers = c.parallel.pipeline_layers;
  l.micro_batch = c.train.micro_batch;
  l.global_batch = c.train.global_batch;
  l.seq_len = c.train.seq_len;
  l.recompute = c.train.recompute;
  l.grad_overlap = c.parallel.grad_overlap;
  l.precision = c.train.precision;
  l.compute_dtype_weights = c.train.weights == Precision::BF16;
  l.attention_mask = c.train.kernels == KernelChoice::Reference;
  l.document_mask = c.data.document_mask;
  l.lora = c.lora;
  l.freeze = c.train.freeze;
  return l;
}

const StageMemory& LayoutCost::largest() const {
  EXATRAIN_CHECK(!stages.empty(), "internal: a layout with no stages");
  return *std::max_element(stages.begin(), stages.end(),
                           [](const StageMemory& a, const StageMemory& b) { return a.total() < b.total(); });
}

const StageMemory& LayoutCost::largest_static() const {
  EXATRAIN_CHECK(!stages.empty(), "internal: a layout with no stages");
  return *std::max_element(stages.begin(), stages.end(), [](const StageMemory& a, const StageMemory& b) {
    return a.static_bytes() < b.static_bytes();
  });
}

double train_flops_per_token(const ModelConfig& m, int64_t seq_len, const ModelVariant& v) {
  double matmul_params = 0;
  for (const auto& s : build_param_specs(m))
    if ((s.kind == ParamKind::Linear || s.kind == ParamKind::LmHead) && in_variant(s, v))
      matmul_params += static_cast<double>(s.numel());
  if (m.tie_embeddings) matmul_params += static_cast<double>(m.vocab_size * m.hidden_size);  // lm_head reuses it
  double attention = 0;
  for (const auto kind : m.layer_kinds())
    attention += 12.0 * static_cast<double>(m.num_heads * m.resolved_head_dim()) * attention_span(m, v, kind, seq_len);
  return 6.0 * matmul_params + attention;
}

LayoutCost estimate_cost(const ModelConfig& m, const CostLayout& l, const ModelVariant& v) {
  EXATRAIN_CHECK(l.tp >= 1 && l.pp >= 1 && l.dp >= 1 && l.micro_batch >= 1, "internal: bad layout {}x{}x{}", l.tp,
                 l.pp, l.dp);
  std::vector<ParamSpec> all = build_param_specs(m, l.lora);  // with LoRA adapters and train.freeze
  apply_freeze(all, l.freeze);
  std::vector<ParamSpec> specs;
  for (ParamSpec& s : all)
    if (in_variant(s, v)) specs.push_back(std::move(s));
  LayoutCost cost;
  const int64_t M = std::max<int64_t>(l.micro_batches(), 1);
  for (int s = 0; s < l.pp; ++s) {
    const PipelineStage stage = stage_of_layout(m, l, s);
    StageMemory r;
    r.stage = s;
    r.layers = stage.end_layer - stage.first_layer;
    const StageParams params = stage_params(specs, m, stage, l.tp, l.precision, l.compute_dtype_weights);
    r.elements = params.elements;
    r.trainable = params.trainable;
    const int64_t largest_layer = params.largest_layer;
    const bool zero1 = l.zero == 1 && l.dp > 1, zero3 = l.zero == 3;
    r.owned = zero1 || zero3 ? (r.trainable + l.dp - 1) / l.dp : r.trainable;
    if (zero3) {
      // FSDP (as TorchTitan's FSDP2 with bf16 compute): fp32 shards of weights, gradients and the
      // two Adam moments; the weights of the layer running and of the one prefetched, gathered in
      // the compute dtype; one layer's full gradient (compute dtype, then fp32 for the
      // reduce-scatter). No separate reduction bucket or master copy: the shard is the master.
      // Under PP (TorchTitan: reshard_after_forward off) the stage's weights are gathered once per
      // step and stay whole, and its gradients accumulate whole (compute dtype) until the last
      // micro-batch's backward reduce-scatters them. (Published runs only: every weight trains.)
      const double gathered = l.precision == Precision::BF16 ? 2.0 : 4.0;
      const double owned = static_cast<double>(r.owned);
      const double whole = l.pp > 1 ? static_cast<double>(r.elements) : 2.0 * static_cast<double>(largest_layer);
      r.weights = 4.0 * owned + gathered * whole;
      r.gradients = 4.0 * owned + (gathered + (gathered < 4.0 ? 4.0 : 0.0)) * whole / (l.pp > 1 ? 1.0 : 2.0);
      r.reduce_buffer = 0;
      r.optimizer = 8.0 * owned;
    } else {
      // Gradients accumulate in the fp32 reduction buffer (grad_buckets.h): a parameter's own
      // .grad lives only from its AccumulateGrad to the hook that adds it there (the backward's
      // transient, as before). Optimizer: fp32 master weights and two moments on the owned
      // elements, and with ZeRO-1 the reduce-scattered gradient slice and (bf16 weights) the
      // owned weights' bf16 copy that is all-gathered. fp32 weights without ZeRO-1 are views of
      // the master weights (DistributedOptimizer::aliases_params): the optimizer adds only the
      // moments.
      r.gradients = 0;
      r.reduce_buffer = 4.0 * static_cast<double>(r.trainable);
      r.weights = (l.compute_dtype_weights ? 2.0 : 4.0) * static_cast<double>(r.trainable) + params.frozen_bytes;
      const double master = zero1 || l.compute_dtype_weights ? 4.0 : 0.0;
      r.optimizer = (master + 8.0 + (zero1 ? 4.0 + (l.compute_dtype_weights ? 2.0 : 0.0) : 0.0)) *
                    static_cast<double>(r.owned);
    }
    const ActivationModel a = stage_activations(m, v, l, stage);
    r.in_flight = std::min<int64_t>(l.pp - s, M);  // 1F1B: warm-up forwards + the one being run
    r.saved_per_micro_batch = a.saved;
    r.workspace = a.workspace;
    r.activations = static_cast<double>(r.in_flight) * a.saved + a.workspace;
    cost.stages.push_back(r);
  }

  // FLOPs: the model's (6N + attention) per token, times the step's tokens; recomputation runs
  // every layer's forward again (a third of the layers' share).
  const double tokens = static_cast<double>(l.global_batch * l.seq_len);
  const double per_token = train_flops_per_token(m, l.seq_len, v);
  cost.model_flops_per_step = per_token * tokens;
  const double lm_head = 6.0 * static_cast<double>(m.vocab_size * m.hidden_size);
  const double layers_share = per_token - lm_head;
  double extra = l.recompute == Recompute::Full ? layers_share / 3.0 : 0.0;
  if (l.recompute != Recompute::Full && l.op_recompute) {
    const std::vector<bool> again = op_recomputed(specs);
    for (size_t i = 0; i < specs.size(); ++i)
      if (again[i]) extra += 2.0 * static_cast<double>(specs[i].numel());
  }
  cost.hardware_flops_per_step = (per_token + extra) * tokens;

  // Bytes handed to each collective in a step by the ranks of the first pipeline stage (world
  // rank 0, whose counts metrics.jsonl logs), as the trainer counts them: fp32 on the wire; see
  // docs/parallelism.md. Other stages differ: the last one adds the loss's reductions and the
  // final norm, a middle one sends activations and gradients both.
  const double B = static_cast<double>(l.micro_batch), T = static_cast<double>(l.seq_len);
  const double H = static_cast<double>(m.hidden_size), Dh = static_cast<double>(m.resolved_head_dim());
  const StageMemory& first = cost.stages.front();
  const bool also_last = l.pp == 1;
  const double Ls = static_cast<double>(first.layers), Mb = static_cast<double>(M);
  const bool sp = l.sequence_parallel && l.tp > 1;
  auto& c = cost.collective_bytes;
  // The global gradient norm and mean loss (fp64) and the step's agreement (3 x int64).
  if (l.tp * l.pp * l.dp > 1) c["world.all_reduce"] = 8 + 8 + 3 * 8;
  if (l.tp > 1) {
    // Per micro-batch: 4 per layer (attention and MLP, forward and backward), the embedding, and
    // on the last stage the lm_head input (in the residual stream's dtype: bf16 with bf16
    // weights), and the cross-entropy's three [B*T] fp32 reductions.
    // Full recomputation runs each layer's forward collectives again in the backward: 6 per layer.
    const double per_layer = l.recompute == Recompute::Full ? 6 : 4;
    const double activations = (per_layer * Ls + 1 + (also_last ? 1 : 0)) * B * T * H * (l.compute_dtype_weights ? 2 : 4);
    const double loss = also_last ? Mb * 3 * B * T * 4 : 0;
    const double norms = (v.qk_norm ? 2 * Ls * Dh * 4 : 0);
    if (sp) {
      c["tp.reduce_scatter"] = Mb * activations;
      c["tp.all_gather"] = Mb * activations / static_cast<double>(l.tp);
      c["tp.all_reduce"] = loss + norms + (2 * Ls + (also_last ? 1 : 0)) * H * 4;  // + sequence-split norms
    } else {
      c["tp.all_reduce"] = Mb * activations + loss + norms;
    }
    if (l.tp > m.num_kv_heads) c["kv.all_reduce"] = Ls * 2 * Dh * H * 4;  // replicated KV heads
  }
  // Tied embeddings under PP: the first and last stage sum their copies' gradients once a step.
  if (l.pp > 1 && m.tie_embeddings)
    c["embedding.all_reduce"] = static_cast<double>(m.vocab_size / l.tp * m.hidden_size) * 4;
  // Activations out, in the residual stream's dtype (bf16 with bf16 weights).
  if (l.pp > 1)
    c["pp.send_recv"] = Mb * B * (sp ? T / static_cast<double>(l.tp) : T) * H * (l.compute_dtype_weights ? 2 : 4);
  if (l.dp > 1) {
    const double padded = static_cast<double>((first.elements + l.dp - 1) / l.dp * l.dp);
    const double compute_dtype = l.precision == Precision::BF16 ? 2 : 4;
    if (l.zero == 3 && l.pp > 1) {  // once per step: the stage's weights stay whole (FSDP under PP)
      c["dp.reduce_scatter"] = padded * 4;
      c["dp.all_gather"] = padded / static_cast<double>(l.dp) * compute_dtype;
    } else if (l.zero == 3) {  // per micro-batch: gathered for the forward and again for the backward
      c["dp.reduce_scatter"] = Mb * padded * 4;
      c["dp.all_gather"] = Mb * 2 * padded / static_cast<double>(l.dp) * compute_dtype;
    } else if (l.zero == 1 && l.compute_dtype_weights) {
      c["dp.reduce_scatter"] = padded * 4;
      c["dp.all_gather"] = padded / static_cast<double>(l.dp) * compute_dtype;
    } else if (l.zero == 1) {
      c["dp.reduce_scatter"] = padded * 4;
      c["dp.all_gather"] = padded / static_cast<double>(l.dp) * 4;
    } else {
      c["dp.all_reduce"] = padded * 4;
    }
  }
  return cost;
}

namespace {

// HBM bytes the memory-bound kernels move for one micro-batch on one stage (docs/planning.md,
// "Elementwise kernels"). Per forward pass and layer: the two norms and two residual adds over
// the residual stream's rows (t / tp with sequence parallelism, t without), RoPE on q and k, the
// q/k norms, the MLP's activation (and product); eager adds the fp32 upcasts and downcasts,
// repeat_kv's copy of k and v to the query heads and the attention output's transpose. A
// backward moves about twice its forward's bytes (reads the output gradient and the saved
// inputs, writes the input gradient), recomputation runs the forward again; the loss (last
// stage) once forward and once backward. Float8 (torchao's dynamic tensorwise scaling): each
// linear's input, and in the backward its output gradient, read for the amax, read and written
// as fp8 for the GEMM, and both transposed for the weight gradient's fp8 GEMM; its weight
// likewise once per forward and once for the backward.
double memory_bound_bytes(const ModelConfig& m, const ModelVariant& v, const CostLayout& l, const PipelineStage& stage,
                          const std::vector<ParamSpec>& specs) {
  const double B = static_cast<double>(l.micro_batch), T = static_cast<double>(l.seq_len);
  const double H = static_cast<double>(m.hidden_size), D = static_cast<double>(m.resolved_head_dim());
  const double tp = static_cast<double>(l.tp);
  const double q = static_cast<double>(m.num_heads / l.tp) * D;
  const double kv = static_cast<double>(std::max<int64_t>(m.num_kv_heads / l.tp, 1)) * D;
  const double inter = static_cast<double>(m.intermediate_size / l.tp);
  const double rows = l.sequence_parallel && l.tp > 1 ? T / tp : T;
  const double e = l.precision == Precision::BF16 ? 2.0 : 4.0;
  const bool eager = l.elementwise == CostLayout::Elementwise::Eager;
  const double casts = eager && e < 4.0 ? 2.0 * (e + 4.0) : 0.0;  // x.float() and .type_as(x)
  // Bytes per element: eager RMSNorm = pow (4 + 4), mean (4), x * rsqrt (4 + 4), * weight (2e), the
  // casts; fused: read, write. Residual add: read two, write one. RoPE (eager: complex multiply in
  // fp32, 4 + 4, and the casts). Activation: eager silu (2e) and product (3e), fused one kernel
  // (3e); GPT's GeLU 2e either way.
  const double norm = eager ? 20.0 + 2.0 * e + casts : 2.0 * e;
  const double rope = eager ? 8.0 + casts : 2.0 * e;
  const double mlp = v.gated_mlp ? (eager ? 5.0 * e : 3.0 * e) : 2.0 * e;
  double layer = B * rows * H * (2.0 * norm + 2.0 * 3.0 * e) + (v.rope ? B * T * (q + kv) * rope : 0.0) +
                 B * T * inter * mlp;
  if (v.qk_norm) layer += B * T * (q + kv) * norm;
  if (eager) layer += B * T * (kv < q ? 2.0 * e * (kv + q) : 0.0) + B * T * q * 2.0 * e;
  const bool recompute = l.recompute == Recompute::Full || l.op_recompute;  // 'op' recomputes all but the saved ops
  const double forwards = recompute ? 2.0 : 1.0;
  const double layers = static_cast<double>(stage.end_layer - stage.first_layer);
  double bytes = (forwards + 2.0) * layers * layer;
  if (stage.last) {  // the loss over [t, V / tp], per element
    const double V = static_cast<double>(m.vocab_size / l.tp);
    const double upcast = e < 4.0 ? e + 4.0 : 0.0;
    double per = 3.0 * e;  // fused: read; read, write the gradient
    // eager: upcast and downcast; log-softmax (read, write); NLL's dense gradient (write);
    // log-softmax backward (read two, write)
    if (l.loss == CostLayout::Loss::Eager) per = 2.0 * upcast + 8.0 + 4.0 + 12.0;
    // Megatron-LM: upcast, max (read), -= max, exp (read, write each), sum (read), div_ (read,
    // write); backward mul_ (read, write), downcast
    if (l.loss == CostLayout::Loss::Megatron) per = 2.0 * upcast + 4.0 + 8.0 + 8.0 + 4.0 + 8.0 + 8.0;
    bytes += B * T * V * per;
  }
  if (l.attention == CostLayout::Attention::Unfused) {
    // Per element of the [b, heads / tp, t, t] scores, the activation dtype: forward, QK^T's write,
    // softmax (read, write), dropout (read, write, and its 1-byte mask), AV's read; backward, the
    // probabilities' gradient (write), dropout's backward (read it and the mask, write), softmax's
    // (read the gradient and the output, write), the scores' gradient read by the two GEMMs of
    // dQ and dK, and the probabilities read for dV.
    const double heads = static_cast<double>(m.num_heads / l.tp);
    bytes += layers * B * heads * T * T * (forwards * (6.0 * e + 1.0) + 9.0 * e + 1.0);
  }
  if (l.float8) {
    for (const ParamSpec& spec : specs) {
      if (spec.kind != ParamKind::Linear || spec.layer < stage.first_layer || spec.layer >= stage.end_layer) continue;
      const std::vector<int64_t> shape = local_shape(spec, tp_shard(spec, 0, static_cast<int>(l.tp)));
      const double out = static_cast<double>(shape[0]), in = static_cast<double>(shape[1]);
      const double cast = 2.0 * e + 1.0;  // amax read, cast read + fp8 write
      bytes += B * T * (forwards * cast * in + cast * out + 2.0 * (in + out));
      bytes += (forwards + 1.0) * cast * out * in;
    }
  }
  return bytes;
}

}  // namespace

StepTime predict_step_time(const ModelConfig& m, const CostLayout& l, const LayoutCost& cost, const Hardware& hw,
                           const ModelVariant& v, bool overlap_comm) {
  StepTime t;
  const double B = static_cast<double>(l.micro_batch), T = static_cast<double>(l.seq_len);
  const double H = static_cast<double>(m.hidden_size), tp = static_cast<double>(l.tp);
  const double M = static_cast<double>(std::max<int64_t>(l.micro_batches(), 1));
  const bool recompute = l.recompute == Recompute::Full;
  // Per token, per layer: matmul FLOPs (6 per weight; 8 with recomputation's extra forward) and
  // attention FLOPs; the lm_head on the last stage.
  std::vector<ParamSpec> specs;
  for (ParamSpec& s : build_param_specs(m))
    if (in_variant(s, v)) specs.push_back(std::move(s));
  // FLOPs per token of a linear: its forward (once, twice with recomputation), the backward's
  // input gradient and weight gradient, 2 per weight each.
  auto linear_cost = [](const ParamSpec& spec, double forwards) {
    return 2.0 * static_cast<double>(spec.numel()) * (forwards + 2.0);
  };
  // Matmul FLOPs per token and layer (6 per weight, 8 with recomputation's extra forward; TorchTitan's
  // 'op' checkpointing runs every second matmul's forward again).
  std::vector<double> layer_matmul(static_cast<size_t>(m.num_layers), 0.0);
  const std::vector<bool> again = op_recomputed(specs);
  double head = 0;
  for (size_t k = 0; k < specs.size(); ++k) {
    const ParamSpec& s = specs[k];
    if (s.kind == ParamKind::LmHead) head += linear_cost(s, 1.0);
    if (s.kind != ParamKind::Linear || s.layer < 0 || s.layer >= m.num_layers) continue;
    const double forwards = recompute || (again[k] && l.op_recompute) ? 2.0 : 1.0;
    layer_matmul[static_cast<size_t>(s.layer)] += linear_cost(s, forwards);
  }
  if (m.tie_embeddings) {  // the lm_head is the embedding's matrix: a [V, h] GEMM all the same
    for (const ParamSpec& s : specs)
      if (s.kind == ParamKind::Embedding) head += linear_cost(s, 1.0);
  }
  const auto kinds = m.layer_kinds();
  // One micro-batch's forward + backward on each stage (compute and its TP collectives).
  std::vector<double> stage_compute, stage_elementwise, stage_comm;
  for (int s = 0; s < l.pp; ++s) {
    const PipelineStage stage = stage_of_layout(m, l, s);
    double gemm = 0, attention = 0;
    for (int64_t i = stage.first_layer; i < stage.end_layer; ++i) {
      gemm += layer_matmul[static_cast<size_t>(i)];
      attention += (recompute ? 16.0 : 12.0) * static_cast<double>(m.num_heads * m.resolved_head_dim()) *
                   attention_span(m, v, kinds[static_cast<size_t>(i)], l.seq_len);
    }
    // Float8 runs the decoder layers' linears at the fp8 peak; the lm_head and attention stay bf16.
    EXATRAIN_CHECK(!l.float8 || hw.fp8_peak_flops > 0, "float8: {} has no fp8 peak (fp8_dense_tflops)", hw.name);
    const double layer_peak = l.float8 ? hw.fp8_peak_flops : hw.peak_flops;
    const double tokens = B * T / tp;  // each TP rank does 1/tp of every GEMM and head
    const double compute = tokens * (gemm / (layer_peak * hw.gemm_efficiency) +
                                     (stage.last ? head : 0.0) / (hw.peak_flops * hw.gemm_efficiency) +
                                     attention / (hw.peak_flops * (l.attention == CostLayout::Attention::Unfused
                                                                       ? hw.gemm_efficiency
                                                                       : hw.attention_efficiency)));
    // TP: 4 all-reduces of [B, T, H] per layer (2 forward, 2 backward; 2 more with
    // recomputation), one more at the embedding and at the lm_head; a ring moves 2 (tp - 1) / tp
    // of the bytes. GEMM outputs are bf16 under autocast, fp32 otherwise.
    double comm = 0;
    if (l.tp > 1) {
      const double act = l.precision == Precision::BF16 ? 2.0 : 4.0;
      const double per_layer = recompute ? 6.0 : 4.0;
      const double count = per_layer * static_cast<double>(stage.end_layer - stage.first_layer) +
                           (stage.first ? 1.0 : 0.0) + (stage.last ? 1.0 : 0.0);
      comm = count * B * T * H * act * 2.0 * (tp - 1) / tp / hw.intra_node_bytes_per_s;
    }
    stage_compute.push_back(compute);
    stage_elementwise.push_back(hw.memory_bytes_per_s > 0 ? memory_bound_bytes(m, v, l, stage, specs) / hw.memory_bytes_per_s : 0.0);
    stage_comm.push_back(comm);
  }
  // 1F1B: the slowest stage runs all M micro-batches; before its first and after its last, every
  // other stage runs one (warm-up and drain). With even stages that is (pp - 1) slots of the
  // slowest; with uneven ones (the lm_head on the last stage) less.
  size_t slowest = 0;
  double sum = 0;
  auto slot = [&](size_t s) { return stage_compute[s] + stage_elementwise[s] + stage_comm[s]; };
  for (size_t s = 0; s < stage_compute.size(); ++s) {
    sum += slot(s);
    if (slot(s) > slot(slowest)) slowest = s;
  }
  t.compute = M * stage_compute[slowest];
  t.elementwise = M * stage_elementwise[slowest];
  t.tp_comm = M * stage_comm[slowest];
  t.pp_bubble = (sum - slot(slowest)) / static_cast<double>(std::max<int64_t>(l.virtual_stages, 1));
  const int64_t per_node = std::max<int64_t>(hw.gpus_per_node, 1);
  if (l.pp > 1) {
    // fp32 activation buffers ([B, T/tp, H] with sequence parallelism), one each way per
    // micro-batch; over the network once a stage spans nodes (tp * dp ranks per stage).
    const double rows = l.sequence_parallel && l.tp > 1 ? T / tp : T;
    const double bw = l.tp * l.dp >= per_node ? hw.inter_node_bytes_per_s : hw.intra_node_bytes_per_s;
    const double v = static_cast<double>(std::max<int64_t>(l.virtual_stages, 1));  // boundaries per micro-batch
    t.pp_comm = (M * v + static_cast<double>(l.pp - 1)) * 2.0 * B * rows * H * 4.0 / bw;
  }
  if (l.pp > 1 && m.tie_embeddings) {  // the tied copies' gradient sum, first with last stage
    const double bw = l.tp * l.dp * l.pp > per_node ? hw.inter_node_bytes_per_s : hw.intra_node_bytes_per_s;
    t.pp_comm += static_cast<double>(m.vocab_size / l.tp * m.hidden_size) * 4.0 / bw;
  }
  const StageMemory& big = cost.largest_static();
  // DP: what is gathered before the forward (ZeRO-1's updated weights, ZeRO-3's per layer) and
  // what is reduced after the backward.
  double dp_gather = 0, dp_reduce = 0;
  if (l.dp > 1) {
    const double d = static_cast<double>(l.dp), ring = (d - 1) / d;
    // A DP group that spans nodes has per_node / tp of its ranks on each node (TP ranks innermost,
    // then DP: world_rank = tp_rank + tp (dp_rank + dp pp_rank), as Megatron-LM and TorchTitan
    // order them too). NCCL's ring crosses each node boundary once per channel, one channel per
    // NIC, so the node's share of the ring's traffic leaves through the NICs of all those ranks:
    // per rank, the network bandwidth times their number, at most NVLink's.
    const double members = static_cast<double>(std::max<int64_t>(per_node / l.tp, 1));
    const double bw = l.tp * l.dp > per_node
                          ? std::min(hw.inter_node_bytes_per_s * members, hw.intra_node_bytes_per_s)
                          : hw.intra_node_bytes_per_s;
    const double n = static_cast<double>(big.elements);
    const double compute_dtype = l.precision == Precision::BF16 ? 2.0 : 4.0;
    if (l.zero == 3 && l.pp > 1) {  // under PP: gather once before the first forward, reduce-scatter once
      dp_gather = compute_dtype * n * ring / bw;
      dp_reduce = 4.0 * n * ring / bw;
    } else if (l.zero == 3) {  // per micro-batch: gather (compute dtype) forward and backward, reduce-scatter fp32
      dp_gather = M * compute_dtype * n * ring / bw;
      dp_reduce = M * (compute_dtype + 4.0) * n * ring / bw;
    } else if (l.zero == 1) {  // reduce-scatter fp32 gradients, all-gather the updated weights
      dp_gather = (l.compute_dtype_weights ? compute_dtype : 4.0) * n * ring / bw;
      dp_reduce = 4.0 * n * ring / bw;
    } else {
      dp_reduce = 4.0 * n * 2.0 * ring / bw;  // fp32 gradients, ring all-reduce
    }
    t.dp_comm = dp_gather + dp_reduce;
  }
  // AdamW: reads gradient, master, two moments, writes master, two moments and the weight.
  if (hw.memory_bytes_per_s > 0) t.optimizer = 32.0 * static_cast<double>(big.owned) / hw.memory_bytes_per_s;
  if (overlap_comm) {  // hidden behind compute as far as compute lasts: only the excess is exposed
    const double busy = t.compute + t.elementwise;
    if (l.tp_overlap == CostLayout::TpOverlap::All) {
      t.tp_comm = std::max(0.0, t.tp_comm - busy);
    } else if (l.tp_overlap == CostLayout::TpOverlap::Forward) {
      // The forward passes' share of the layers' collectives (2 of 4 per layer, 4 of 6 with
      // recomputation); the backward's stay exposed.
      const double share = l.recompute == Recompute::Full ? 4.0 / 6.0 : 2.0 / 4.0;
      t.tp_comm = t.tp_comm * (1.0 - share) + std::max(0.0, t.tp_comm * share - busy);
    }
    t.pp_comm = std::max(0.0, t.pp_comm - busy);
    // ZeRO-3 gathers and reduces layer by layer in every micro-batch, behind all of them (under
    // PP once per step, as ZeRO-1). The DP reduction of ZeRO 0/1 waits for the gradients of the
    // last micro-batch, so only its backward hides it, and the next step's first forward hides
    // the weights' all-gather (Megatron-LM's --overlap-grad-reduce, --overlap-param-gather).
    const double hiding = l.zero == 3 && l.pp == 1 ? busy : busy / M;
    t.dp_comm = std::max(0.0, dp_gather - hiding / 3.0) + std::max(0.0, dp_reduce - hiding * 2.0 / 3.0);
  } else if (l.grad_overlap && l.zero <= 1) {
    // exatrain (parallel.grad_overlap): the gradient buckets start reducing in the last
    // micro-batch's backward (2/3 of its compute); the all-gather waits for the optimizer.
    const double busy = (t.compute + t.elementwise) / M;
    t.dp_comm = dp_gather + std::max(0.0, dp_reduce - busy * 2.0 / 3.0);
  }
  return t;
}

std::string describe_total(const StageMemory& r) {
  return fmt::format("weights {:.2f} GiB + gradients {:.2f} GiB + reduction bucket {:.2f} GiB + optimizer state "
                     "{:.2f} GiB + activations {:.2f} GiB ({} micro-batch{} in flight) = {:.2f} GiB",
                     r.weights / kGiB, r.gradients / kGiB, r.reduce_buffer / kGiB, r.optimizer / kGiB,
                     r.activations / kGiB, r.in_flight, r.in_flight == 1 ? "" : "es", r.total() / kGiB);
}

}  // namespace exatrain
