// Hugging Face config.json <-> ModelConfig for Exaone4ForCausalLM. Reads both the transformers 5
// layout (rope_parameters) and the older one (rope_theta + rope_scaling); writes the
// transformers 5 layout, which AutoConfig.from_pretrained loads as it is. No torch here.
#pragma once

#include <string>

#include "trainer/core/config.h"

namespace exatrain {

// Reads DIR/config.json; every problem is an Error naming that file and the key.
ModelConfig read_hf_config(const std::string& dir);

// Writes DIR/config.json (atomically) with every field spelled out, layer_types included.
void write_hf_config(const ModelConfig& m, const std::string& dir);

}  // namespace exatrain
