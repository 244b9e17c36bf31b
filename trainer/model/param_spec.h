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

enum class ParamKind { Embedding, LmHead, Linear, Norm, HeadNorm };

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
std::vector<ParamSpec> build_param_specs(const ModelConfig& config);

struct ParamCounts {
  int64_t total = 0;
  int64_t embedding = 0;  // embed_tokens plus an untied lm_head
  int64_t non_embedding() const { return total - embedding; }
};
ParamCounts count_params(const std::vector<ParamSpec>& specs);

// Whether AdamW decays this parameter: linear weights always; norms and embeddings by config.
bool applies_weight_decay(const ParamSpec& spec, const OptimizerConfig& optimizer);

const char* param_kind_name(ParamKind kind);

}  // namespace exatrain
