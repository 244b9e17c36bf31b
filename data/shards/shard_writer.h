// Writes a dataset's token shards: documents go in one after another and a new shard starts
// every `shard_tokens` tokens (a document may continue in the next shard). Each shard is
// written through an AtomicFileWriter (NAME.tmp.<pid>), finished (document index, header),
// hashed and committed, so a file with a final name is always complete. A writer made with a loss mask takes one mask value per id
// and stores it as the shard's mask section (shard_format.h). A writer destroyed before keep() removes every file it made:
// a failed preparation leaves no partial dataset behind.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/shards/manifest.h"
#include "data/shards/shard_format.h"
#include "trainer/core/atomic_file.h"

namespace exatrain {

class ShardWriter {
 public:
  ShardWriter(std::string dir, uint64_t vocab_size, uint64_t shard_tokens, bool loss_mask = false);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // One whole document, its EOS included; every id must be below vocab_size. A writer with a
  // loss mask needs `mask` (one 0/1 per id); one without takes none.
  void add_document(std::span<const uint32_t> ids, std::span<const uint8_t> mask = {});
  // Closes the last shard; returns every shard in order.
  std::vector<ManifestShard> finish();
  // The shards stay on disk when the writer goes (call once the manifest is written).
  void keep() { kept_ = true; }

  TokenDtype dtype() const { return dtype_; }
  bool has_loss_mask() const { return loss_mask_; }
  uint64_t tokens_written() const { return total_tokens_; }
  uint64_t shards_finished() const { return shards_.size(); }

 private:
  void open_shard();
  void write_ids(std::span<const uint32_t> ids);
  void close_shard();

  std::string dir_;
  uint64_t vocab_size_;
  uint64_t shard_tokens_;
  TokenDtype dtype_;
  AtomicFileWriter file_;  // the open shard
  uint64_t shard_token_count_ = 0;
  std::vector<uint64_t> doc_starts_;  // of the open shard
  std::vector<uint8_t> convert_;      // ids narrowed to the shard's width
  bool loss_mask_;
  std::vector<uint8_t> mask_bits_;    // of the open shard (with a loss mask)
  uint64_t mask_ones_ = 0;            // of the open shard
  std::vector<ManifestShard> shards_;
  uint64_t total_tokens_ = 0;
  bool finished_ = false;
  bool kept_ = false;
};

}  // namespace exatrain
