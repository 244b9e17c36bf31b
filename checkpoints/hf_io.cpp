#include "checkpoints/hf_io.h"

#include <ATen/ATen.h>

#include "checkpoints/hf_config.h"
#include "checkpoints/hf_import.h"
#include "checkpoints/safetensors.h"
#include "trainer/core/error.h"

namespace exatrain {

void load_hf_weights(Exaone4Model& model, const std::string& dir) {
  const SafetensorsDir files(dir);
  std::vector<std::string> expected;
  for (const auto& spec : build_param_specs(model.config())) expected.push_back(spec.name);
  const auto unexpected = unexpected_hf_tensors(files, expected);
  if (!unexpected.empty())
    fail("{}: {} tensor(s) that an Exaone4ForCausalLM with this config.json does not have, e.g. '{}' ({})", dir,
         unexpected.size(), unexpected.front(), files.describe_location(unexpected.front()));
  if (model.config().tie_embeddings) check_tied_lm_head(files);
  std::vector<StatePiece> targets;
  std::vector<std::pair<at::Tensor, at::Tensor>> staged;  // host copy, parameter (GPU parameters)
  for (size_t i = 0; i < model.params().size(); ++i) {
    const ParamKind kind = model.specs()[i].kind;
    if (kind == ParamKind::LoraA || kind == ParamKind::LoraB) continue;  // adapters: init_adapters
    const at::Tensor& p = model.params()[i];
    at::Tensor host = p.device().is_cpu() ? p.detach() : at::empty(p.sizes(), p.options().device(at::kCPU));
    if (!p.device().is_cpu()) staged.emplace_back(host, p);
    targets.push_back(StatePiece{model.specs()[i].name, model.specs()[i].shape, DType::F32, model.slice(i),
                                 host.data_ptr()});
  }
  read_hf_slices(files, targets);
  at::NoGradGuard no_grad;
  for (auto& [host, p] : staged) p.detach().copy_(host);
}

std::unique_ptr<Exaone4Model> load_hf_model(const std::string& dir, at::TensorOptions options) {
  auto model = std::make_unique<Exaone4Model>(read_hf_config(dir), options);
  load_hf_weights(*model, dir);
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
