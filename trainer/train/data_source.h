// Training input until the tokenized-shard loader exists: one file of token ids, either
// uint32 little-endian ids or UTF-8 text read as bytes (ids 0-255). Batches are windows at
// seeded random offsets, so batch k depends only on (seed, k), never on what ran before.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/core/config.h"

namespace exatrain {

class TokenFileSource {
 public:
  // Reads the whole file; every id must be below `vocab_size`, and the file must hold at least
  // one window of `window` tokens. Errors name the file, and the offset of a bad id.
  TokenFileSource(const std::string& path, DataFormat format, int64_t vocab_size, int64_t window);

  // [count, window] int64 windows for draw number `index` (a step and micro-batch).
  at::Tensor batch(uint64_t seed, uint64_t index, int64_t count) const;

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<int32_t> tokens_;
  int64_t window_;
};

// Reads "1 2 3\n4 5 6\n" into [lines, tokens] int64; every line must have the same length and
// every id must be below vocab_size.
at::Tensor read_token_lines(const std::string& path, int64_t vocab_size);

// Bytes as ids for text-trained models; and ids back to text (ids >= 256 are dropped).
std::vector<int64_t> text_to_byte_ids(const std::string& text);
std::string byte_ids_to_text(const std::vector<int64_t>& ids);

}  // namespace exatrain
