// One prepared dataset opened for reading: its manifest and its shards, memory-mapped, seen
// as one stream of tokens with document starts. Opening checks the structure of every shard
// against the manifest (sizes and counts); reading checks every id against the vocabulary.
// Checksums are `exatrain data verify`'s job, and the loader's (shard_verifier.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/shards/manifest.h"
#include "data/shards/shard_reader.h"

namespace exatrain {

class TokenDataset {
 public:
  explicit TokenDataset(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const DatasetManifest& manifest() const { return manifest_; }
  uint64_t tokens() const { return total_tokens_; }
  // sha256 over the tokenizer hash and every shard's checksum: names the data, not its files.
  const std::string& identity() const { return identity_; }

  // Tokens [begin, begin + count) of the stream, widened to int32. An id outside the manifest's
  // vocabulary (a corrupt shard) is an Error naming the shard and the token's position in it.
  void read(uint64_t begin, uint64_t count, int32_t* out) const;
  // Loss-mask values of tokens [begin, begin + count) as 0/1; all 1 for a dataset without a mask.
  void read_loss_mask(uint64_t begin, uint64_t count, uint8_t* out) const;
  bool has_loss_mask() const { return manifest_.has_loss_mask; }
  // Documents in the stream, and document i's tokens [begin, end) (its EOS included).
  uint64_t documents() const { return shard_doc_begin_.back(); }
  std::pair<uint64_t, uint64_t> document(uint64_t i) const;
  // Appends p - begin for every document start p in [begin, begin + count).
  void document_starts(uint64_t begin, uint64_t count, std::vector<int32_t>& out) const;

  size_t shard_count() const { return shards_.size(); }
  const ShardReader& shard(size_t i) const { return shards_[i]; }
  // The shards holding stream tokens [begin, begin + count): [first, last], count > 0.
  std::pair<size_t, size_t> shards_of(uint64_t begin, uint64_t count) const;

 private:
  size_t shard_of(uint64_t position) const;  // the shard holding stream position `position`
  template <class Fn>
  void for_each_piece(uint64_t begin, uint64_t count, const char* what, Fn&& fn) const;
  std::string dir_;
  DatasetManifest manifest_;
  std::vector<ShardReader> shards_;
  std::vector<uint64_t> shard_begin_;  // stream position of each shard's first token; size shards + 1
  std::vector<uint64_t> shard_doc_begin_;  // documents starting before each shard; size shards + 1
  uint64_t total_tokens_ = 0;
  std::string identity_;
};

}  // namespace exatrain
