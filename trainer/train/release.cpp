#include "trainer/train/release.h"

#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "checkpoints/dist_checkpoint.h"
#include "checkpoints/hf_io.h"
#include "checkpoints/hf_release.h"
#include "trainer/core/atomic_file.h"
#include "trainer/core/config_tree.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"
#include "trainer/model/exaone4.h"
#include "trainer/parallel/comm.h"

namespace exatrain {

namespace fs = std::filesystem;

namespace {

// The LoRA adapters of a run: base weight name -> (lora_A spec, lora_B spec).
std::map<std::string, std::pair<ParamSpec, ParamSpec>> adapters_of(const RunConfig& run) {
  std::map<std::string, std::pair<ParamSpec, ParamSpec>> out;
  for (const ParamSpec& s : build_param_specs(run.model, run.lora)) {
    if (s.kind == ParamKind::LoraA) out[s.adapts].first = s;
    if (s.kind == ParamKind::LoraB) out[s.adapts].second = s;
  }
  return out;
}

at::Tensor read_whole(CheckpointReader& reader, const ParamSpec& spec) {
  at::Tensor t = at::empty(spec.shape, at::kFloat);
  reader.read(StatePiece{spec.name, spec.shape, DType::F32, TensorSlice::whole(spec.shape), t.data_ptr()});
  return t;
}

// Base weight `name` of the checkpoint into `out` (fp32, its whole shape), merged with its LoRA
// update when the run had one: W + (alpha / r) B A, as PEFT's merge_and_unload.
void read_merged(CheckpointReader& reader, const RunConfig& run,
                 const std::map<std::string, std::pair<ParamSpec, ParamSpec>>& adapters, const std::string& name,
                 const std::vector<int64_t>& shape, float* out) {
  reader.read(StatePiece{name, shape, DType::F32, TensorSlice::whole(shape), out});
  const auto it = adapters.find(name);
  if (it == adapters.end()) return;
  at::NoGradGuard no_grad;
  const at::Tensor a = read_whole(reader, it->second.first), b = read_whole(reader, it->second.second);
  at::from_blob(out, shape, at::kFloat).add_(at::matmul(b.to(at::kDouble), a.to(at::kDouble)).mul_(run.lora.scale()).to(at::kFloat));
}

// The checkpoint's weights as a single-rank fp32 model. merged: a plain model with the LoRA
// updates merged into its weights, each rounded through `dtype` first (what an export holds);
// else the run's own model (adapters as adapters), fp32.
std::unique_ptr<Exaone4Model> checkpoint_model(CheckpointReader& reader, const RunConfig& run, DType dtype,
                                               bool merged = true) {
  auto model = std::make_unique<Exaone4Model>(run.model, at::TensorOptions().dtype(at::kFloat), TensorParallelGroups{},
                                              PipelineStage{}, merged ? LoraConfig{} : run.lora);
  const auto adapters = adapters_of(run);
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < model->specs().size(); ++i) {
    const ParamSpec& spec = model->specs()[i];
    at::Tensor p = model->params()[i];
    if (merged)
      read_merged(reader, run, adapters, spec.name, spec.shape, p.data_ptr<float>());
    else
      reader.read(StatePiece{spec.name, spec.shape, DType::F32, TensorSlice::whole(spec.shape), p.data_ptr()});
    if (dtype != DType::F32) {
      std::vector<uint16_t> half(static_cast<size_t>(p.numel()));
      convert_f32_to(dtype, p.data_ptr<float>(), half.data(), p.numel());
      convert_to_f32(dtype, half.data(), p.data_ptr<float>(), p.numel());
    }
  }
  return model;
}

}  // namespace

std::unique_ptr<Exaone4Model> load_checkpoint_model(CheckpointReader& reader, RunConfig* run) {
  const RunConfig config = parse_resolved_config(reader.info().config_yaml, reader.dir() + "/manifest.pb (config)");
  if (run) *run = config;
  return checkpoint_model(reader, config, DType::F32);
}

namespace {

// init.from_hf as the run recorded it (not read back into RunConfig: it names a directory that
// need not exist now); empty for a run that started from scratch.
std::string recorded_base_model(CheckpointReader& reader) {
  const ConfigNode recorded = parse_yaml(reader.info().config_yaml, reader.dir());
  if (const ConfigNode* init = recorded.find("init"); init && init->find("from_hf")) return init->find("from_hf")->scalar;
  return "";
}

}  // namespace

void write_peft_adapter(CheckpointReader& reader, const std::string& dir) {
  const std::string base_model = recorded_base_model(reader);
  const RunConfig run = parse_resolved_config(reader.info().config_yaml, reader.dir() + "/manifest.pb (config)");
  if (!run.lora.enabled())
    fail("checkpoint '{}' has no LoRA adapters (lora.rank was 0 in its run); export the whole model without "
         "--adapter-only", reader.dir());
  std::error_code ec;
  if (fs::exists(dir) && !fs::is_empty(dir, ec))
    fail("--output '{}' exists and is not empty; choose a new directory", dir);
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create '{}': {}", dir, ec.message());
  // PEFT's keys: the module path under base_model.model., adapter name ("default") left out.
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const ParamSpec& s : build_param_specs(run.model, run.lora))
    if (s.kind == ParamKind::LoraA || s.kind == ParamKind::LoraB)
      tensors.emplace_back("base_model.model." + s.name, read_whole(reader, s));
  save_tensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
  nlohmann::json config = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"r", run.lora.rank},
      {"lora_alpha", run.lora.alpha},
      {"lora_dropout", run.lora.dropout},
      {"target_modules", run.lora.targets},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"use_rslora", false},
      {"use_dora", false},
      {"modules_to_save", nullptr},
      {"base_model_name_or_path", base_model}};  // PEFT's keys only: it warns on any other
  write_file_atomically(dir + "/adapter_config.json", config.dump(2) + "\n");
}

ExportReport export_checkpoint(CheckpointReader& reader, const ExportOptions& o, const Communicator* world) {
  const auto start = std::chrono::steady_clock::now();
  const CheckpointInfo& info = reader.info();
  const RunConfig run = parse_resolved_config(info.config_yaml, reader.dir() + "/manifest.pb (config)");
  const ModelConfig& model = run.model;
  ExportDtype choice = o.dtype;
  if (choice == ExportDtype::Auto) choice = run.train.precision == Precision::BF16 ? ExportDtype::BF16 : ExportDtype::FP32;
  ExportReport report;
  report.dir = o.output;
  report.dtype = choice == ExportDtype::BF16 ? DType::BF16 : DType::F32;

  std::vector<ReleaseTensor> tensors;  // the base model's: LoRA updates are merged into them
  for (const auto& spec : build_param_specs(model)) {
    tensors.push_back(ReleaseTensor{spec.name, spec.shape});
    report.parameters += spec.numel();
  }
  ReleaseInfo release;
  release.dtype = report.dtype;
  release.max_shard_bytes = o.max_shard_bytes;
  release.tokenizer_json = o.tokenizer.empty() ? run.data.tokenizer : o.tokenizer;
  if (!release.tokenizer_json.empty() && !fs::exists(release.tokenizer_json))
    fail("the run's tokenizer '{}' is not there any more; pass --tokenizer PATH (the same file: sha256 {})",
         release.tokenizer_json, info.tokenizer_sha256);
  for (const auto& d : run.data.datasets) release.dataset_dirs.push_back(d.path);
  release.steps = info.step;
  release.tokens = info.tokens;
  release.layout = info.layout.describe();
  release.name = fs::path(o.output).filename().string();
  release.license = o.license;
  release.base_model = recorded_base_model(reader);
  const auto adapters = adapters_of(run);
  const TensorFiller fill = [&](size_t index, std::span<float> out) {
    const ReleaseTensor& t = tensors[index];
    read_merged(reader, run, adapters, t.name, t.shape, out.data());
  };
  if (!world || world->size() == 1) {
    write_hf_release(model, tensors, fill, release, o.output);
  } else {
    // Every rank writes its share of the shards (shard s on rank s % size), reading those
    // tensors whole from the checkpoint; rank 0 writes the rest and moves the release into place.
    if (world->rank() == 0) begin_release(model, tensors, release, o.output);
    world->barrier();
    const std::string mine = write_release_shards(model, tensors, fill, release, o.output, world->rank(), world->size());
    std::string all;
    for (const auto& lines : all_gather_strings(*world, mine)) all += lines;
    if (world->rank() == 0) finish_release(model, tensors, release, o.output, all);
    world->barrier();
  }
  // A LoRA run's release also holds its adapter, for PEFT on the base model.
  if (run.lora.enabled() && (!world || world->rank() == 0)) write_peft_adapter(reader, o.output + "/adapter");
  if (world) world->barrier();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (o.verify && (!world || world->rank() == 0)) {
    // A probe batch (fixed ids over the whole vocabulary) through three models: the export as
    // transformers would read it, the checkpoint's weights rounded to the export's dtype (must
    // equal the export: same weights, same code), and the checkpoint's fp32 weights.
    at::Tensor ids = at::randint(model.vocab_size, {2, std::min<int64_t>(32, model.max_position_embeddings)},
                                 at::make_generator<at::CPUGeneratorImpl>(0), at::kLong);
    at::NoGradGuard no_grad;
    const at::Tensor exported = load_hf_model(o.output, at::TensorOptions().dtype(at::kFloat))->forward(ids);
    const at::Tensor rounded = checkpoint_model(reader, run, report.dtype)->forward(ids);
    // The run's own model: with LoRA, the adapters unmerged (the merge is judged too).
    const at::Tensor full = checkpoint_model(reader, run, DType::F32, /*merged=*/false)->forward(ids);
    report.verify_diff = (exported - rounded).abs().max().item<double>();
    report.rounding_diff = (exported - full).abs().max().item<double>();
    // The export holds exactly the rounded weights and both run the same code: anything above
    // rounding noise of one forward pass means the export computes something else.
    if (report.verify_diff > 1e-5)
      fail("--verify: the export's logits differ from the checkpoint's by {:.3g} (max abs) on the probe batch; the "
           "export at '{}' does not compute what the checkpoint does", report.verify_diff, o.output);
  }
  return report;
}

}  // namespace exatrain
