// Hugging Face directories <-> the model: config.json plus safetensors (one file or shards with
// model.safetensors.index.json), read and written through the parameter specs.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trainer/model/exaone4.h"

namespace exatrain {

// Reads DIR/config.json and every weight; checks names, shapes and dtypes against the specs.
std::unique_ptr<Exaone4Model> load_hf_model(const std::string& dir, at::TensorOptions options);

// Writes DIR/config.json and DIR/model.safetensors (fp32; no lm_head.weight when tied).
// Collective under tensor parallelism (every TP rank calls it; shards are gathered); only
// ranks with `write` touch the disk.
void save_hf_model(const Exaone4Model& model, const std::string& dir, bool write = true);

// Writes DIR/config.json and DIR/model.safetensors from full (unsharded) tensors, named and
// ordered as the registry's specs.
void write_hf_directory(const ModelConfig& config, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                        const std::string& dir);

// Writes named tensors (converted to fp32 on the CPU) to one safetensors file.
void save_tensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  const std::map<std::string, std::string>& metadata = {});

}  // namespace exatrain
