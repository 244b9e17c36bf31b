// Hugging Face weights into any layout: each rank fills the slices it holds (its TP shards,
// a pipeline stage's parameters) straight from the memory-mapped safetensors files, reading
// only the bytes of those slices. The same slice arithmetic as checkpoint loading, with
// another file format. No torch here.
#pragma once

#include <string>
#include <vector>

#include "checkpoints/dist_checkpoint.h"
#include "checkpoints/safetensors.h"

namespace exatrain {

// Fills every target (a slice of the tensor target.name) from `dir`, converting F32/BF16/F16
// to the target's dtype. Errors name the file and tensor: absent, another shape, another dtype.
void read_hf_slices(const SafetensorsDir& dir, const std::vector<StatePiece>& targets);

// For a model with tie_word_embeddings: true. A stored lm_head.weight equal to
// model.embed_tokens.weight (some exporters write both) is fine: transformers ties them too.
// One that differs is an Error. transformers 5 then loads the model untied (using the stored
// lm_head.weight) and warns that config.json is wrong; exatrain used to tie it (dropping the
// stored lm_head.weight), so the two computed different logits. The file contradicts itself:
// following either reading silently would guess, so the message names the two ways to fix it.
void check_tied_lm_head(const SafetensorsDir& dir);

// Names in `dir` that none of `expected` is (a tied model's lm_head.weight is allowed: some
// exporters write it).
std::vector<std::string> unexpected_hf_tensors(const SafetensorsDir& dir, const std::vector<std::string>& expected);

}  // namespace exatrain
