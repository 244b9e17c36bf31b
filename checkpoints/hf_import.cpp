#include "checkpoints/hf_import.h"

#include <set>

#include "trainer/core/error.h"

namespace exatrain {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (int64_t d : shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
  return "[" + s + "]";
}

}  // namespace

void read_hf_slices(const SafetensorsDir& dir, const std::vector<StatePiece>& targets) {
  for (const StatePiece& t : targets) {
    const SafetensorsReader* file = nullptr;
    const TensorInfo* info = dir.find(t.name, &file);
    if (!info)
      fail("{}: tensor '{}' is missing (config.json implies shape {}); is this a complete Exaone4ForCausalLM "
           "checkpoint?", dir.dir(), t.name, shape_text(t.global_shape));
    if (info->shape != t.global_shape)
      fail("{}: tensor '{}' has shape {} but config.json implies {}", file->path(), t.name, shape_text(info->shape),
           shape_text(t.global_shape));
    if (info->dtype != DType::F32 && info->dtype != DType::BF16 && info->dtype != DType::F16)
      fail("{}: tensor '{}' has dtype {}, which cannot be read as weights (expected F32, BF16 or F16)", file->path(),
           t.name, dtype_name(info->dtype));
    t.slice.check_inside(t.global_shape, "tensor '" + t.name + "'");
    const std::vector<CopyRun> runs =
        overlap(slice_runs(t.global_shape, TensorSlice::whole(t.global_shape)), slice_runs(t.global_shape, t.slice));
    copy_runs(file->data(*info), info->dtype, t.data, t.dtype, runs);
    EXATRAIN_CHECK(total_length(runs) == t.slice.numel(), "internal: '{}' slice {} not covered", t.name,
                   t.slice.describe());
  }
}

std::vector<std::string> unexpected_hf_tensors(const SafetensorsDir& dir, const std::vector<std::string>& expected) {
  const std::set<std::string> known(expected.begin(), expected.end());
  std::vector<std::string> out;
  for (const auto& name : dir.names())
    if (!known.count(name) && name != "lm_head.weight") out.push_back(name);
  return out;
}

}  // namespace exatrain
