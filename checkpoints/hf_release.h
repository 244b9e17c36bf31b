// The open-weight release: a Hugging Face directory that transformers loads as it is, written
// from the parameter specs one tensor at a time (memory stays around one tensor, whatever the
// model size). No torch here: the caller hands over each tensor's full fp32 value through a
// filler (gathered from a sharded checkpoint, or read from another safetensors directory).
//
//   DIR/model.safetensors                      everything fits in one shard, or
//   DIR/model-0000K-of-0000N.safetensors       greedy in registry order (as transformers)
//   DIR/model.safetensors.index.json           metadata.total_size / total_parameters, weight_map
//   DIR/config.json                            dtype, transformers_version, the config's token ids
//   DIR/generation_config.json                 bos / eos / pad ids
//   DIR/tokenizer.json, tokenizer_config.json  with a tokenizer: the EXAONE-4 chat template
//   DIR/README.md                              model card: parameters, layout, training, datasets
//   DIR/SHA256SUMS                             `sha256sum -c SHA256SUMS` passes
//
// Everything is written into DIR.tmp, fsynced, then renamed to DIR: DIR is either absent or a
// complete release. docs/export.md describes the files and the rules.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoints/safetensors.h"
#include "trainer/core/config.h"

namespace exatrain {

// One weight of the release: its Hugging Face name and global shape.
struct ReleaseTensor {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

struct ReleaseInfo {
  DType dtype = DType::BF16;              // F32, BF16 or F16 (round to nearest even)
  uint64_t max_shard_bytes = 5000000000;  // decimal, as transformers' max_shard_size (tensor bytes)
  std::string tokenizer_json;             // the run's tokenizer.json; empty: no tokenizer files
  std::vector<std::string> dataset_dirs;  // prepared datasets (manifest.pb): listed on the model card
  int64_t steps = 0, tokens = 0;          // trained
  std::string layout;                     // e.g. "tp 2 x pp 2 x dp 1, zero 0"
  std::string name;                       // the model card's title; empty: DIR's file name
  std::string license;                    // SPDX expression of the weights; empty: "other" (not stated)
  std::string base_model;                 // optional: what the run started from (init.from_hf)
};

// The full fp32 value of tensors[index], row-major; out.size() is its element count. Called
// exactly once per tensor, in order (of the shards a call writes).
using TensorFiller = std::function<void(size_t index, std::span<float> out)>;

// Writes a release of `tensors` (exactly the registry's specs for `config`: build_param_specs'
// names and shapes, in its order; tied embeddings have no lm_head.weight) into DIR.
// DIR must not exist or be an empty directory: a release is never overwritten or mixed with
// other files. Work happens in DIR.tmp (a left-over DIR.tmp from an interrupted export is
// removed first); on any failure DIR.tmp is removed and DIR is untouched. Errors (unwritable
// directory, full disk, a tensor the dtype cannot hold, a token id that is not a special token
// of the tokenizer) are one exatrain::Error naming the path or the tensor.
void write_hf_release(const ModelConfig& config, const std::vector<ReleaseTensor>& tensors, const TensorFiller& fill,
                      const ReleaseInfo& info, const std::string& dir);

// The same in three steps, for ranks that write their own shards (the format allows it: each
// shard is a file of its own):
//   begin_release        one process: checks everything, makes DIR.tmp
//   write_release_shards every rank: shards part, part + parts, ... (the filler is called once per
//                        tensor of those shards, in order); returns a line "FILE SHA256" per shard
//   finish_release       one process, with every rank's lines: the index, config, tokenizer,
//                        card and SHA256SUMS, then DIR.tmp -> DIR
// A failure in write_release_shards leaves DIR.tmp (the next export removes it); in
// finish_release it removes DIR.tmp.
void begin_release(const ModelConfig& config, const std::vector<ReleaseTensor>& tensors, const ReleaseInfo& info,
                   const std::string& dir);
std::string write_release_shards(const ModelConfig& config, const std::vector<ReleaseTensor>& tensors,
                                 const TensorFiller& fill, const ReleaseInfo& info, const std::string& dir, int part,
                                 int parts);
void finish_release(const ModelConfig& config, const std::vector<ReleaseTensor>& tensors, const ReleaseInfo& info,
                    const std::string& dir, const std::string& shard_hashes);

// "5GB", "500MB", "10KB", "2TB", "123" (bytes), "123B"; decimal units (1KB = 1000 bytes), as
// transformers' max_shard_size; KiB/MiB/GiB are binary. Anything else is an Error saying what is
// accepted (a lower-case "b" is rejected: transformers reads "5Gb" as gigabits).
uint64_t parse_shard_size(const std::string& text);

// The shard layout, computed before any data is written.
struct ReleaseShard {
  std::string file;             // "model.safetensors" or "model-00002-of-00005.safetensors"
  std::vector<size_t> tensors;  // indices into the tensor list, ascending
  uint64_t data_bytes = 0;      // tensor bytes (without the header)
};
// Greedy in order, as huggingface_hub's split_state_dict_into_shards: a tensor that would take
// the current shard past `max_shard_bytes` starts a new one; a tensor larger than the limit gets
// a shard of its own. Unlike huggingface_hub (which appends such a tensor's shard before the one
// being filled), shards keep the registry order, so the filler is called in order.
std::vector<ReleaseShard> plan_release_shards(const std::vector<ReleaseTensor>& tensors, DType dtype,
                                              uint64_t max_shard_bytes);

// The safetensors header of one shard: the JSON (with __metadata__ {"format": "pt"}) padded with
// spaces to a multiple of 8 bytes, without the 8-byte length in front. Data offsets follow the
// order of `shard.tensors`.
std::string release_shard_header(const std::vector<ReleaseTensor>& tensors, const ReleaseShard& shard, DType dtype);

// model.safetensors.index.json for a sharded release.
std::string release_index_json(const std::vector<ReleaseTensor>& tensors, const std::vector<ReleaseShard>& shards,
                               DType dtype);

// generation_config.json: the config's bos / eos / pad ids.
std::string generation_config_json(const ModelConfig& config);

// The EXAONE-4 chat template (data/chat/exaone4_chat_template.jinja, embedded at build time).
std::string_view exaone4_chat_template();

}  // namespace exatrain
