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

// Reads DIR/config.json and every weight; checks names, shapes and dtypes against the specs.
std::unique_ptr<Exaone4Model> load_hf_model(const std::string& dir, at::TensorOptions options);

// Writes named tensors (converted to fp32 on the CPU) to one safetensors file.
void save_tensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  const std::map<std::string, std::string>& metadata = {});

}  // namespace exatrain
