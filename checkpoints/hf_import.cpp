#include "checkpoints/hf_import.h"

#include <algorithm>
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

void check_tied_lm_head(const SafetensorsDir& dir) {
  const SafetensorsReader *head_file = nullptr, *embed_file = nullptr;
  const TensorInfo* head = dir.find("lm_head.weight", &head_file);
  const TensorInfo* embed = dir.find("model.embed_tokens.weight", &embed_file);
  if (!head || !embed) return;  // nothing stored to disagree (a missing embedding is reported by the reader)
  bool equal = head->shape == embed->shape;
  // Compared as values, as transformers does (torch.equal after loading), a block at a time.
  constexpr int64_t kBlock = 1 << 16;
  std::vector<float> a(kBlock), b(kBlock);
  const int64_t n = equal ? embed->numel() : 0;
  for (int64_t i = 0; equal && i < n; i += kBlock) {
    const int64_t m = std::min(kBlock, n - i);
    convert_to_f32(head->dtype, head_file->data(*head) + i * dtype_size(head->dtype), a.data(), m);
    convert_to_f32(embed->dtype, embed_file->data(*embed) + i * dtype_size(embed->dtype), b.data(), m);
    equal = std::equal(a.begin(), a.begin() + m, b.begin());
  }
  if (!equal)
    fail("{}: config.json says tie_word_embeddings: true, but lm_head.weight is stored and differs from "
         "model.embed_tokens.weight (transformers then does not tie them and warns that config.json is wrong): set "
         "\"tie_word_embeddings\": false in config.json to use both as stored, or remove lm_head.weight to tie them",
         head_file->path());
}

std::vector<std::string> unexpected_hf_tensors(const SafetensorsDir& dir, const std::vector<std::string>& expected) {
  const std::set<std::string> known(expected.begin(), expected.end());
  std::vector<std::string> out;
  for (const auto& name : dir.names())
    if (!known.count(name) && name != "lm_head.weight") out.push_back(name);
  return out;
}

}  // namespace exatrain
