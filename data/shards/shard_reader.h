// Reads one token shard through a read-only memory map. Opening checks the structure (size,
// magic, version, dtype, document index); check_token_ids() checks every id (a full pass).
// Every error names the file and what is wrong.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "data/shards/shard_format.h"

namespace exatrain {

class ShardReader {
 public:
  explicit ShardReader(const std::string& path);
  ~ShardReader();
  ShardReader(ShardReader&& other) noexcept;
  ShardReader& operator=(ShardReader&& other) noexcept;
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  const std::string& path() const { return path_; }
  const ShardHeader& header() const { return header_; }
  uint64_t tokens() const { return header_.tokens; }
  uint64_t documents() const { return header_.documents; }
  TokenDtype dtype() const { return header_.dtype; }
  bool has_loss_mask() const { return header_.has_loss_mask; }

  uint32_t token(uint64_t i) const;
  // Ids [begin, begin + count) widened to int32; the range must lie inside the shard.
  void copy_tokens(uint64_t begin, uint64_t count, int32_t* out) const;
  // Loss-mask values [begin, end) as 0/1 bytes; all 1 when the shard has no mask.
  void copy_loss_mask(uint64_t begin, uint64_t count, uint8_t* out) const;
  // Tokens whose mask bit is 1 (a full pass; 0 without a mask). Fails if an unused bit of the
  // mask's last byte is set.
  uint64_t count_loss_mask_tokens() const;
  // Offsets (within this shard) of the documents that start here; strictly increasing.
  std::span<const uint64_t> document_starts() const { return {doc_starts_, header_.documents}; }

  // Fails at the first id >= the header's vocabulary size, naming its position.
  void check_token_ids() const;
  // The whole file as mapped (for checksums).
  std::span<const uint8_t> file_bytes() const { return {data_, size_}; }

 private:
  void release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  ShardHeader header_;
  const uint8_t* ids_ = nullptr;
  const uint8_t* mask_ = nullptr;  // the mask bits, or nullptr
  const uint64_t* doc_starts_ = nullptr;
};

}  // namespace exatrain
