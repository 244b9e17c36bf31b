#include "checkpoints/hf_import.h"

#include <algorithm>
#include <cstring>
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
  std::vector<float> scratch;
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
    const uint8_t* src = file->data(*info);
    const size_t in_size = dtype_size(info->dtype), out_size = dtype_size(t.dtype);
    auto* out = static_cast<uint8_t*>(t.data);
    const std::vector<CopyRun> runs =
        overlap(slice_runs(t.global_shape, TensorSlice::whole(t.global_shape)), slice_runs(t.global_shape, t.slice));
    for (const CopyRun& r : runs) {
      const uint8_t* from = src + static_cast<size_t>(r.src) * in_size;
      uint8_t* to = out + static_cast<size_t>(r.dst) * out_size;
      if (info->dtype == t.dtype) {
        std::memcpy(to, from, static_cast<size_t>(r.length) * out_size);
      } else if (t.dtype == DType::F32) {
        convert_to_f32(info->dtype, from, reinterpret_cast<float*>(to), r.length);
      } else {
        scratch.resize(static_cast<size_t>(r.length));
        convert_to_f32(info->dtype, from, scratch.data(), r.length);
        convert_f32_to(t.dtype, scratch.data(), to, r.length);
      }
    }
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
