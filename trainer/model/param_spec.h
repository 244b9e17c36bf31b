// The parameter-spec registry: every parameter of the model described once. The model builds
// its tensors from these specs; checkpoints, Hugging Face import/export, sharding and the
// optimizer's grouping all read the same list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/core/config.h"

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
};

struct ParamSpec {
  std::string name;            // Hugging Face name, e.g. model.layers.3.self_attn.q_proj.weight
  std::vector<int64_t> shape;  // global shape
  ParamKind kind = ParamKind::Linear;
  TpSplit tp_split = TpSplit::None;
  TpGradReduce tp_grad_reduce = TpGradReduce::None;
  int64_t layer = -1;  // decoder layer, -1 for the embedding, num_layers for final norm / lm_head

  int64_t numel() const;
};

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
