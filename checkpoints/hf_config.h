// Hugging Face config.json <-> ModelConfig for Exaone4ForCausalLM. Reads both the transformers 5
// layout (rope_parameters) and the older one (rope_theta + rope_scaling); writes the
// transformers 5 layout, which AutoConfig.from_pretrained loads as it is. No torch here.
#pragma once

#include <string>

#include "checkpoints/safetensors.h"
#include "trainer/core/config.h"

namespace exatrain {

// Reads DIR/config.json; every problem is an Error naming that file and the key.
ModelConfig read_hf_config(const std::string& dir);

// The transformers version our files declare (config.json, generation_config.json): the one the
// tests judge with, read from launch/requirements.txt at configure time (CMakeLists.txt).
const char* hf_transformers_version();

// transformers' name of a weight dtype: "float32", "bfloat16", "float16".
const char* hf_dtype_name(DType dtype);

// The config.json text with every field spelled out, layer_types included; `dtype` is the dtype of
// the weights stored next to it (transformers 5's "dtype" key).
std::string hf_config_json(const ModelConfig& m, DType dtype = DType::F32);

// Writes DIR/config.json (atomically): hf_config_json(m, dtype).
void write_hf_config(const ModelConfig& m, const std::string& dir, DType dtype = DType::F32);

}  // namespace exatrain
