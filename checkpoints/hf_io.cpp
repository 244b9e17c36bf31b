#include "checkpoints/hf_io.h"

#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <set>

#include "checkpoints/hf_config.h"
#include "checkpoints/hf_import.h"
#include "checkpoints/safetensors.h"
#include "trainer/core/error.h"

namespace exatrain {

std::unique_ptr<Exaone4Model> load_hf_model(const std::string& dir, at::TensorOptions options) {
  ModelConfig config = read_hf_config(dir);
  SafetensorsDir files(dir);
  auto model = std::make_unique<Exaone4Model>(config, options);
  std::vector<std::string> expected;
  for (const auto& spec : model->specs()) expected.push_back(spec.name);
  const auto unexpected = unexpected_hf_tensors(files, expected);
  if (!unexpected.empty())
    fail("{}: {} tensor(s) that an Exaone4ForCausalLM with this config.json does not have, e.g. '{}'", dir,
         unexpected.size(), unexpected.front());
  std::vector<at::Tensor> host;
  std::vector<StatePiece> targets;
  for (size_t i = 0; i < model->specs().size(); ++i) {
    const ParamSpec& spec = model->specs()[i];
    host.push_back(at::empty(spec.shape, at::kFloat));
    targets.push_back(StatePiece{spec.name, spec.shape, DType::F32, TensorSlice::whole(spec.shape), host.back().data_ptr()});
  }
  read_hf_slices(files, targets);
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < host.size(); ++i) model->params()[i].copy_(host[i]);
  return model;
}

void save_tensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> host;  // keeps the fp32 copies alive while writing
  std::vector<TensorView> views;
  for (const auto& [name, t] : tensors) {
    host.push_back(t.detach().to(at::kCPU, at::kFloat).contiguous());
    views.push_back(TensorView{name, DType::F32, host.back().sizes().vec(), host.back().data_ptr()});
  }
  write_safetensors(path, views, metadata);
}

}  // namespace exatrain
