// Test-only: writes an open-weight release (write_hf_release) from a Hugging Face save_pretrained
// directory, so that tests/parity/check_release.py can judge the writer with transformers
// without a trained checkpoint. Torch-free: weights go through the same TensorFiller streaming
// path `exatrain export` uses, one tensor at a time.
//
//   release_from_hf SRC_HF_DIR OUT_DIR [--dtype bf16|fp32|fp16] [--max-shard-size SIZE]
//                   [--tokenizer tokenizer.json] [--dataset DIR]... [--name N] [--license SPDX]
//                   [--steps N] [--tokens N] [--layout TEXT]
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoints/hf_config.h"
#include "checkpoints/hf_release.h"
#include "checkpoints/safetensors.h"
#include "trainer/core/error.h"
#include "trainer/model/param_spec.h"

namespace {

using namespace exatrain;

int run(int argc, char** argv) {
  std::vector<std::string> positional;
  ReleaseInfo info;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail("{} needs a value", arg);
      return argv[++i];
    };
    if (arg == "--dtype") {
      const std::string d = value();
      if (d == "bf16") info.dtype = DType::BF16;
      else if (d == "fp32") info.dtype = DType::F32;
      else if (d == "fp16") info.dtype = DType::F16;
      else fail("--dtype '{}': expected bf16, fp32 or fp16", d);
    } else if (arg == "--max-shard-size") {
      info.max_shard_bytes = parse_shard_size(value());
    } else if (arg == "--tokenizer") {
      info.tokenizer_json = value();
    } else if (arg == "--dataset") {
      info.dataset_dirs.push_back(value());
    } else if (arg == "--name") {
      info.name = value();
    } else if (arg == "--license") {
      info.license = value();
    } else if (arg == "--steps") {
      info.steps = std::stoll(value());
    } else if (arg == "--tokens") {
      info.tokens = std::stoll(value());
    } else if (arg == "--layout") {
      info.layout = value();
    } else if (arg.rfind("--", 0) == 0) {
      fail("unknown option '{}'", arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) fail("usage: release_from_hf SRC_HF_DIR OUT_DIR [options]");
  const std::string& src = positional[0];

  const ModelConfig config = read_hf_config(src);
  const SafetensorsDir files(src);
  std::vector<ReleaseTensor> tensors;
  for (const ParamSpec& spec : build_param_specs(config)) tensors.push_back({spec.name, spec.shape});
  const TensorFiller fill = [&](size_t index, std::span<float> out) {
    const ReleaseTensor& t = tensors[index];
    const SafetensorsReader* file = nullptr;
    const TensorInfo* info = files.find(t.name, &file);
    if (!info) fail("{}: tensor '{}' is missing", src, t.name);
    if (info->shape != t.shape || size_t(info->numel()) != out.size())
      fail("{}: tensor '{}' has another shape than config.json implies", file->path(), t.name);
    convert_to_f32(info->dtype, file->data(*info), out.data(), info->numel());
  };
  write_hf_release(config, tensors, fill, info, positional[1]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "release_from_hf: error: %s\n", e.what());
    return 1;
  }
}
