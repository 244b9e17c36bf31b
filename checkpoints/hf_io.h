// A Hugging Face directory as a single-process model (config.json plus safetensors, one file or
// shards with model.safetensors.index.json), read through the parameter specs; and a small
// safetensors writer for tensors such as logits. Releases: checkpoints/hf_release.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trainer/model/exaone4.h"

namespace exatrain {

// Fills the model's parameters (this rank's slices: its TP shards, its pipeline stage) from the
// safetensors of DIR, reading only those slices; names, shapes and dtypes are checked against the
// specs, and a tensor the model has no place for is an error. init.from_hf and load_hf_model.
void load_hf_weights(Exaone4Model& model, const std::string& dir);

// Reads DIR/config.json and every weight into a single-process model.
std::unique_ptr<Exaone4Model> load_hf_model(const std::string& dir, at::TensorOptions options);

// Writes named tensors (converted to fp32 on the CPU) to one safetensors file.
void save_tensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  const std::map<std::string, std::string>& metadata = {});

}  // namespace exatrain
