// One model of cost: memory per rank, FLOPs per step and bytes per collective of a layout, from
// the parameter-spec registry (trainer/model/param_spec.h) and what the trainer allocates. The
// trainer's fit check and MFU, `model info`, `config check`, `bench` and `plan` all call this;
// docs/planning.md gives the formulas and what they leave out.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trainer/core/config.h"

namespace exatrain {

// What the cost model must express besides EXAONE-4 (published runs use GPT-style models).
struct ModelVariant {
  bool gated_mlp = true;        // SwiGLU (gate, up, down); false: GPT's up -> GeLU -> down
  bool qk_norm = true;          // per-head RMSNorm on q and k (EXAONE-4)
  bool full_attention = false;  // ignore the sliding window: every layer attends to the whole prefix
  bool rope = true;             // rotary positions on q and k; false: GPT's learned position embedding
};

struct CostLayout {
  int64_t tp = 1, pp = 1, dp = 1;
  // 0: DP all-reduce; 1: ZeRO-1 (optimizer state sharded over DP); 3: FSDP / ZeRO-3, weights,
  // gradients and optimizer state all sharded over DP, weights all-gathered before each layer's
  // forward and again before its backward, gradients reduce-scattered (planner only: published
  // runs use it, exatrain does not, so `plan` never proposes it).
  int64_t zero = 0;
  bool sequence_parallel = false;
  std::vector<int64_t> pipeline_layers;  // empty: the trainer's even split
  int64_t micro_batch = 1, global_batch = 1, seq_len = 128;
  // Planner only: the interleaved 1F1B schedule with this many model chunks per pipeline rank
  // (Megatron-LM's virtual pipeline stages, TorchTitan's Interleaved1F1B): warm-up and drain
  // shrink v-fold (Narayanan et al. 2021, section 2.2.2: a bubble of (pp - 1) / v micro-batch
  // slots), each micro-batch crosses v times as many stage boundaries. Memory is counted as 1F1B.
  int64_t virtual_stages = 1;
  // exatrain's parallel.grad_overlap: the DP reduction (all-reduce, ZeRO-1's reduce-scatter)
  // starts bucket by bucket during the last micro-batch's backward; ZeRO-1's all-gather of the
  // updated weights waits for the optimizer. Only for exatrain's own plans (without overlap_comm).
  bool grad_overlap = false;
  Recompute recompute = Recompute::None;
  // Planner only: TorchTitan's per-operator selective checkpointing ('op' policy): each layer's
  // forward saves every matmul output except every second one (k, o, up in forward order), which
  // the backward recomputes; attention outputs are saved. Memory is counted as without it.
  bool op_recompute = false;
  // train.weights: bf16 (Megatron-LM's distributed optimizer: bf16 params, fp32 main params in
  // the optimizer): weights held in the compute dtype, ZeRO-1 all-gathers them in it, and the
  // residual stream (and what the pipeline sends) is in it too.
  bool compute_dtype_weights = false;
  // Planner only: Float8 training (torchao's Float8Linear, as TorchTitan): the decoder layers'
  // linears run fp8 GEMMs, forward and backward; attention, norms and the lm_head stay bf16.
  bool float8 = false;
  // With overlap_comm, which TP collectives hide behind compute: All (Megatron-LM's
  // --tp-comm-overlap), Forward (TorchTitan's AsyncTP, the compiled forward's all-gather + matmul
  // and matmul + reduce-scatter; the recomputed forward too), None (only DP and PP communication).
  enum class TpOverlap { None, Forward, All };
  TpOverlap tp_overlap = TpOverlap::All;
  // The memory-bound elementwise kernels (norms, RoPE, the MLP's activation and product, residual
  // adds, the loss): Fused, one kernel per operation that reads its inputs and writes its output
  // once (exatrain's fused kernels, docs/kernels.md; Megatron-LM's fused kernels;
  // torch.compile); Eager, PyTorch's eager op sequence of TorchTitan's Llama (fp32 upcasts and
  // downcasts, one kernel per op, GQA's repeat_kv and the attention output's transpose copied).
  enum class Elementwise { Fused, Eager };
  Elementwise elementwise = Elementwise::Fused;
  // The loss over [t, V / tp]: Fused (exatrain's ops::cross_entropy: the logits read once forward,
  // read and their gradient written once backward), Eager (F.cross_entropy on an fp32 upcast, as
  // TorchTitan, which does not compile its loss), Megatron (Megatron-LM's unfused
  // vocab_parallel_cross_entropy: fp32 upcast, max, subtract, exp, sum, divide; multiply and
  // downcast in the backward).
  enum class Loss { Fused, Eager, Megatron };
  Loss loss = Loss::Fused;
  // Attention: Flash (a fused kernel at the attention efficiency, no [t, t] tensor), or Unfused
  // (before FlashAttention, as Megatron-LM in 2021: QK^T and AV as batched GEMMs at the GEMM
  // efficiency, the scores, their fused scale-mask-softmax and dropout written to and read from
  // HBM as [b, heads / tp, t, t] tensors in the activation dtype, plus a 1-byte dropout mask).
  enum class Attention { Flash, Unfused };
  Attention attention = Attention::Flash;
  Precision precision = Precision::FP32;
  // Attention runs the reference (train.kernels: reference), which keeps a [seq, seq] mask for
  // the sliding layers; the flash kernels (auto) keep none. (A GPU run in fp32, or with a head_dim
  // the CUDA kernel lacks, also falls back to the reference; that case is not modelled.)
  bool attention_mask = false;
  // data.document_mask: per-token RoPE tables [B, 1, T, D] and segment ids; with the reference,
  // [B, 1, T, T] masks for the sliding layers (when the model has a window) and the global ones.
  bool document_mask = false;
  // What trains: with LoRA only the adapters, minus train.freeze patterns. Frozen parameters have
  // no gradient, bucket or optimizer state; in bf16 their linears are held in bf16. (Activations
  // and FLOPs are modelled as for training every weight: an upper bound for LoRA, whose frozen
  // base needs no weight gradients.)
  LoraConfig lora;
  std::vector<std::string> freeze;

  int64_t micro_batches() const { return global_batch / (micro_batch * dp); }  // per DP rank and step
  // The layout of a run config (dp 0 resolved from `world`).
  static CostLayout of(const RunConfig& config, int64_t tp, int64_t pp, int64_t dp);
};

// Bytes one pipeline stage's rank holds. Trained weights as held (fp32, or bf16 with
// train.weights: bf16), their gradients in the fp32 reduction bucket (where they accumulate: no
// separate per-parameter gradients); frozen weights as held (bf16 linears in bf16 runs, all of
// them with bf16 weights), with no gradient; optimizer state: fp32 master copy and two Adam
// moments over the owned trainable elements (all, or 1/dp with ZeRO-1, which also keeps its
// reduce-scattered gradient slice), plus their bf16 copy with bf16 weights.
struct StageMemory {
  int stage = 0;
  int64_t layers = 0;
  int64_t elements = 0, owned = 0;  // parameters on the rank; optimizer elements it owns
  int64_t trainable = 0;            // of `elements`, those that train
  double weights = 0, gradients = 0, reduce_buffer = 0, optimizer = 0;
  // Activations: what one micro-batch saves for backward, how many micro-batches 1F1B keeps in
  // flight on this stage, and the peak above the step's start: the other in-flight micro-batches'
  // saved activations plus the peak of one micro-batch's backward (its saved set plus
  // `workspace`; negative when the peak comes after most of it is released, at the embedding's
  // weight gradient); as the trainer's memory tracker measures it.
  double saved_per_micro_batch = 0, workspace = 0;
  int64_t in_flight = 1;
  double activations = 0;
  double static_bytes() const { return weights + gradients + reduce_buffer + optimizer; }
  double total() const { return static_bytes() + activations; }
};

struct LayoutCost {
  std::vector<StageMemory> stages;
  const StageMemory& largest() const;  // the stage whose rank needs the most memory in total
  const StageMemory& largest_static() const;  // ... before activations
  // Model FLOPs of one step over all ranks (6N + attention, PaLM convention; no recomputation)
  // and the FLOPs the hardware executes (with recomputation's extra forward).
  double model_flops_per_step = 0, hardware_flops_per_step = 0;
  // Bytes handed to each collective per rank per step ("tp.all_reduce", "dp.reduce_scatter",
  // "pp.send" ...), as the trainer counts them in metrics.jsonl's comm_bytes.
  std::map<std::string, double> collective_bytes;
};

LayoutCost estimate_cost(const ModelConfig& model, const CostLayout& layout, const ModelVariant& variant = {});

// Training model FLOPs per token: 6 * N_matmul + 12 * sum over layers of (heads * head_dim *
// context), context = seq_len for global layers, min(seq_len, window) for sliding ones (PaLM's
// 12·L·H·Q·T with each layer's own span; N_matmul: every linear and lm_head, not the lookup).
double train_flops_per_token(const ModelConfig& model, int64_t seq_len, const ModelVariant& variant = {});

// One accelerator and its links (configs/hardware.yaml says where each figure comes from).
struct Hardware {
  std::string name;
  double memory_bytes = 0;         // usable device memory
  double peak_flops = 0;           // dense bf16 (or the CPU's measured fp32 GEMM peak)
  double fp8_peak_flops = 0;       // dense fp8 (0: none)
  double gemm_efficiency = 1;      // share of the peak the linears reach
  double attention_efficiency = 1; // share of the peak the attention reaches
  double memory_bytes_per_s = 0;   // HBM, at the stated share memory-bound kernels reach
  double intra_node_bytes_per_s = 0;  // per GPU, one direction (NVLink)
  double inter_node_bytes_per_s = 0;  // per GPU, one direction (InfiniBand / RoCE)
  int64_t gpus_per_node = 8;
};

// Predicted time of one optimizer step of a layout (seconds), and its parts, which add up: what
// `overlap_comm` hides behind compute is left out of the communication parts.
struct StepTime {
  double compute = 0;      // the busiest stage's forward + backward (+ recomputation), all micro-batches
  double elementwise = 0;  // its memory-bound elementwise kernels (and Float8's scaling and casts)
  double tp_comm = 0;      // its TP collectives
  double pp_bubble = 0;    // 1F1B warm-up and drain: one micro-batch of every other stage
  double pp_comm = 0;      // activation and gradient send/recv between stages
  double dp_comm = 0;      // the gradient all-reduce (ZeRO-1: reduce-scatter + all-gather)
  double optimizer = 0;    // AdamW over the owned elements (memory bound)
  double total() const { return compute + elementwise + tp_comm + pp_bubble + pp_comm + dp_comm + optimizer; }
};
// `overlap_comm`: predict a trainer that hides TP, PP and DP communication behind compute where
// compute lasts long enough (Megatron-LM's --tp-comm-overlap, --overlap-grad-reduce, FSDP's
// prefetch). Published runs that overlapped are predicted with true. exatrain's own plans use
// false: its TP and PP communication is exposed, and its DP reduction hides behind the last
// micro-batch's backward when layout.grad_overlap says the trainer overlaps it.
StepTime predict_step_time(const ModelConfig& model, const CostLayout& layout, const LayoutCost& cost,
                           const Hardware& hw, const ModelVariant& variant = {}, bool overlap_comm = false);

// "... + activations 2.1 GiB (3 micro-batches in flight) = 6.7 GiB".
std::string describe_total(const StageMemory& m);

}  // namespace exatrain
