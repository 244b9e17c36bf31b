#include "checkpoints/hf_io.h"

#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <set>

#include "checkpoints/hf_config.h"
#include "checkpoints/safetensors.h"
#include "trainer/core/error.h"

namespace exatrain {

namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  return "[" + fmt::format("{}", fmt::join(shape, ", ")) + "]";
}

}  // namespace

std::unique_ptr<Exaone4Model> load_hf_model(const std::string& dir, at::TensorOptions options) {
  ModelConfig config = read_hf_config(dir);
  SafetensorsDir files(dir);
  auto model = std::make_unique<Exaone4Model>(config, options);
  at::NoGradGuard no_grad;
  std::set<std::string> expected;
  const auto& specs = model->specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const ParamSpec& spec = specs[i];
    expected.insert(spec.name);
    const SafetensorsReader* file = nullptr;
    const TensorInfo* info = files.find(spec.name, &file);
    if (!info)
      fail("{}: tensor '{}' is missing (config.json implies shape {}); is this a complete Exaone4ForCausalLM "
           "checkpoint?", dir, spec.name, shape_str(spec.shape));
    if (info->shape != spec.shape)
      fail("{}: tensor '{}' has shape {} but config.json implies {}", file->path(), spec.name,
           shape_str(info->shape), shape_str(spec.shape));
    if (info->dtype != DType::F32 && info->dtype != DType::BF16 && info->dtype != DType::F16 && info->dtype != DType::F64)
      fail("{}: tensor '{}' has dtype {}, which cannot be read as weights (expected F32, BF16, F16 or F64)",
           file->path(), spec.name, dtype_name(info->dtype));
    at::Tensor host = at::empty(spec.shape, at::kFloat);
    convert_to_f32(info->dtype, file->data(*info), host.data_ptr<float>(), info->numel());
    model->params()[i].copy_(host);
  }
  if (config.tie_embeddings) expected.insert("lm_head.weight");  // transformers may write the tied copy
  std::vector<std::string> unexpected;
  for (const auto& name : files.names())
    if (!expected.count(name)) unexpected.push_back(name);
  if (!unexpected.empty())
    fail("{}: {} tensor(s) that an Exaone4ForCausalLM with this config.json does not have, e.g. '{}'", dir,
         unexpected.size(), unexpected.front());
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

void save_hf_model(const Exaone4Model& model, const std::string& dir, bool write) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (size_t i = 0; i < model.specs().size(); ++i) tensors.emplace_back(model.specs()[i].name, model.gather_param(i));
  if (write) write_hf_directory(model.config(), tensors, dir);
}

void write_hf_directory(const ModelConfig& config, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                        const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("cannot create directory '{}': {}", dir, ec.message());
  write_hf_config(config, dir);
  save_tensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
}

}  // namespace exatrain
