#include "trainer/train/release.h"

#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>

#include "checkpoints/dist_checkpoint.h"
#include "checkpoints/hf_io.h"
#include "checkpoints/hf_release.h"
#include "trainer/core/config_tree.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"
#include "trainer/model/exaone4.h"
#include "trainer/parallel/comm.h"

namespace exatrain {

namespace fs = std::filesystem;

namespace {

// The checkpoint's weights as a single-rank fp32 model, each rounded through `dtype` first.
std::unique_ptr<Exaone4Model> checkpoint_model(CheckpointReader& reader, const ModelConfig& config, DType dtype) {
  auto model = std::make_unique<Exaone4Model>(config, at::TensorOptions().dtype(at::kFloat));
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < model->specs().size(); ++i) {
    const ParamSpec& spec = model->specs()[i];
    at::Tensor p = model->params()[i];
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
  return checkpoint_model(reader, config.model, DType::F32);
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

  std::vector<ReleaseTensor> tensors;
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
  // init.from_hf is not read back into `run` (it names a directory that need not exist now).
  const ConfigNode recorded = parse_yaml(info.config_yaml, reader.dir());
  if (const ConfigNode* init = recorded.find("init"); init && init->find("from_hf"))
    release.base_model = init->find("from_hf")->scalar;
  const TensorFiller fill = [&](size_t index, std::span<float> out) {
    const ReleaseTensor& t = tensors[index];
    reader.read(StatePiece{t.name, t.shape, DType::F32, TensorSlice::whole(t.shape), out.data()});
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
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (o.verify && (!world || world->rank() == 0)) {
    // A probe batch (fixed ids over the whole vocabulary) through three models: the export as
    // transformers would read it, the checkpoint's weights rounded to the export's dtype (must
    // equal the export: same weights, same code), and the checkpoint's fp32 weights.
    at::Tensor ids = at::randint(model.vocab_size, {2, std::min<int64_t>(32, model.max_position_embeddings)},
                                 at::make_generator<at::CPUGeneratorImpl>(0), at::kLong);
    at::NoGradGuard no_grad;
    const at::Tensor exported = load_hf_model(o.output, at::TensorOptions().dtype(at::kFloat))->forward(ids);
    const at::Tensor rounded = checkpoint_model(reader, model, report.dtype)->forward(ids);
    const at::Tensor full = checkpoint_model(reader, model, DType::F32)->forward(ids);
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
