// The parameter-spec registry: every parameter of the model described once. The model builds
// its tensors from these specs; checkpoints, Hugging Face import/export, sharding and the
// optimizer's grouping all read the same list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/core/config.h"
#include "trainer/core/tensor_slice.h"

namespace exatrain {

// LoraA / LoraB: a LoRA adapter of the linear named by ParamSpec::adapts (lora.* config).
enum class ParamKind { Embedding, LmHead, Linear, Norm, HeadNorm, LoraA, LoraB };

// How a parameter is laid out over tensor-parallel ranks.
enum class TpSplit {
  None,     // replicated
  Rows,     // dim 0 split: column-parallel linear (output features), vocab-parallel embedding
  Columns,  // dim 1 split: row-parallel linear (input features)
};

// How a replicated parameter's gradient is combined over tensor-parallel ranks.
enum class TpGradReduce {
  None,  // every rank computes the same full gradient
  Sum,   // each rank sees part of the data (q_norm / k_norm see different heads): sum over TP
  SumIfSequenceParallel,  // norms outside the TP regions: with sequence parallelism each rank
                          // sees part of the sequence, so sum over TP; else as None
};

struct ParamSpec {
  std::string name;            // Hugging Face name, e.g. model.layers.3.self_attn.q_proj.weight
  std::vector<int64_t> shape;  // global shape
  ParamKind kind = ParamKind::Linear;
  TpSplit tp_split = TpSplit::None;
  TpGradReduce tp_grad_reduce = TpGradReduce::None;
  int64_t layer = -1;  // decoder layer, -1 for the embedding, num_layers for final norm / lm_head
  // Indivisible units along the split dimension (heads for attention projections; 0: rows).
  // With fewer units than TP ranks (KV heads < tp) each rank holds one whole unit, replicated.
  int64_t split_units = 0;
  // False: frozen (LoRA's base weights, train.freeze): no gradient, no optimizer state; saved
  // in checkpoints as weights only.
  bool trainable = true;
  std::string adapts;  // LoraA / LoraB: the base linear's name (q_proj.weight of q_proj.lora_A.weight)

  int64_t numel() const;
};

// This rank's part of a parameter under tensor parallelism: `length` entries of dimension
// `dim` starting at `start` (dim -1: the whole tensor). `replicas` ranks hold the same part.
struct ShardSlice {
  int dim = -1;
  int64_t start = 0, length = 0;
  int replicas = 1;
  int unit = 0;  // which replicated unit (for grouping the replicas)
};
ShardSlice tp_shard(const ParamSpec& spec, int tp_rank, int tp);
std::vector<int64_t> local_shape(const ParamSpec& spec, const ShardSlice& slice);
// The same part as a box of the global tensor (for checkpoints and imports).
TensorSlice tp_slice(const ParamSpec& spec, const ShardSlice& slice);

// In model order: embedding, then per layer q,k,v,o, q_norm,k_norm, post_attention_layernorm,
// gate, up, down, post_feedforward_layernorm; final norm; lm_head unless embeddings are tied.
// With LoRA (lora.rank > 0) each targeted linear is followed by its adapters, named as PEFT
// names them under base_model.model.: model.layers.L.self_attn.q_proj.lora_A.weight [rank, in]
// and ...lora_B.weight [out, rank]; every other parameter is frozen. Under TP an adapter is
// split as its base layer: a column-parallel base (output rows split) splits B's rows and
// replicates A, whose gradient is then summed over TP (each rank back-propagates through its own
// rows of B); a row-parallel base (input columns split) splits A's columns and replicates B, whose
// gradient is summed over TP (each rank's A x is a partial sum).
std::vector<ParamSpec> build_param_specs(const ModelConfig& config, const LoraConfig& lora = {});

// train.freeze: marks the parameters whose name matches one of the glob patterns (fnmatch: *
// and ?) as frozen. A pattern that matches nothing is an error naming train.freeze and the item (a typo
// would otherwise train what was meant to stay fixed); `locs` says where it was written.
void apply_freeze(std::vector<ParamSpec>& specs, const std::vector<std::string>& patterns,
                  const ConfigLocations& locs = {});

// The run's full registry: build_param_specs with LoRA, then train.freeze. Checks the patterns.
std::vector<ParamSpec> run_param_specs(const RunConfig& run);

struct ParamCounts {
  int64_t total = 0;      // the model's parameters (adapters not included)
  int64_t embedding = 0;  // embed_tokens plus an untied lm_head
  int64_t adapters = 0;   // LoRA A and B
  int64_t trainable = 0;  // what the optimizer updates (adapters included)
  int64_t non_embedding() const { return total - embedding; }
};
ParamCounts count_params(const std::vector<ParamSpec>& specs);

// Whether AdamW decays this parameter: linear weights always; norms and embeddings by config.
bool applies_weight_decay(const ParamSpec& spec, const OptimizerConfig& optimizer);

const char* param_kind_name(ParamKind kind);

}  // namespace exatrain
