// The trainer's view of its data: this rank's rows of each global batch, with a loss mask, from
// either prepared datasets (the streaming loader: blending, validation splits, prefetch) or one
// raw file (data.path: quick experiments, no validation). Also the run's tokenizer, if any.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "trainer/core/config.h"

namespace exatrain {

class Tokenizer;
struct Topology;

struct RankBatch {
  at::Tensor tokens;  // [rows, seq_len + 1] int64: inputs are [:, :-1], targets [:, 1:]
  at::Tensor mask;    // [rows, seq_len] float: 1 where target t counts in the loss (undefined: all)
  // data.document_mask: [rows, seq_len] int32, the document of each input token within its row
  // (0, 1, ...: non-decreasing; a document cut at the row's start is a document of its own).
  // Attention stays within a document and RoPE positions restart at 0 in each. Undefined: off.
  at::Tensor segments;
  RankBatch to(const at::Device& device) const {
    auto move = [&](const at::Tensor& t) { return t.defined() ? t.to(device) : t; };
    return {tokens.to(device), move(mask), move(segments)};
  }
};

class TrainData {
 public:
  // Opens and checks everything (files, manifests, tokenizer hash, vocabulary) before any work.
  TrainData(const RunConfig& config, const Topology& topo);
  ~TrainData();

  // This DP rank's rows of global batch `step` (steps are consumed in order).
  RankBatch next(int64_t step);

  // Validation sets (one per dataset with a split).
  struct ValidationSet {
    size_t dataset = 0;
    std::string name;
    int64_t batches = 0;  // this evaluation's batches (train.eval_batches caps it)
  };
  const std::vector<ValidationSet>& validation_sets() const { return validation_; }
  RankBatch validation_batch(const ValidationSet& set, int64_t index) const;

  // Where next() continues, as the loader's state bytes (empty for data.path: its batches
  // depend only on the seed and the step). restore() takes a state saved under any DP size.
  std::vector<uint8_t> state() const;
  void restore(const std::vector<uint8_t>& state);

  // Blocks until every shard's checksum is checked (in the background since the datasets were
  // opened); throws naming the first shard that does not match. The trainer calls it before each
  // checkpoint, so no checkpoint holds state trained on unchecked data.
  void wait_verified() const;

  // Seconds next() spent waiting for data (loader prefetch or file reads) since the last call.
  double take_wait_seconds();

  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  // Ids of a sample prompt, and text of ids: through the tokenizer, else bytes (text data).
  std::vector<int64_t> encode_prompt(const std::string& text) const;
  std::string decode(const std::vector<int64_t>& ids) const;
  // Lines for the log: what each source is.
  std::vector<std::string> describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<ValidationSet> validation_;
};

}  // namespace exatrain
