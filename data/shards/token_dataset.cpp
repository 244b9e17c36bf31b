#include "data/shards/token_dataset.h"

#include <algorithm>
#include <filesystem>

#include "trainer/core/sha256.h"
#include "trainer/core/error.h"

namespace exatrain {

TokenDataset::TokenDataset(const std::string& dir) : dir_(dir), manifest_(read_manifest(dir)) {
  if (manifest_.shards.empty()) fail("dataset '{}': the manifest lists no shards", dir);
  shard_begin_.push_back(0);
  shard_doc_begin_.push_back(0);
  exatrain::Sha256 identity;
  identity.update(manifest_.tokenizer_sha256.data(), manifest_.tokenizer_sha256.size());
  for (const auto& entry : manifest_.shards) {
    shards_.emplace_back((std::filesystem::path(dir) / entry.file).string());
    const ShardReader& shard = shards_.back();
    if (shard.has_loss_mask() != manifest_.has_loss_mask)
      fail("shard '{}': {} a loss mask, but the manifest says the dataset {}; run `exatrain data verify {}`",
           shard.path(), shard.has_loss_mask() ? "has" : "has no", manifest_.has_loss_mask ? "has one" : "has none", dir);
    if (shard.tokens() != entry.tokens || shard.documents() != entry.documents || shard.dtype() != manifest_.dtype ||
        shard.header().vocab_size != manifest_.vocab_size)
      fail("shard '{}': holds {} {} tokens and {} documents (vocabulary {}), the manifest says {} {} tokens and {} "
           "documents (vocabulary {}); run `exatrain data verify {}`",
           shard.path(), shard.tokens(), dtype_name(shard.dtype()), shard.documents(), shard.header().vocab_size,
           entry.tokens, dtype_name(manifest_.dtype), entry.documents, manifest_.vocab_size, dir);
    total_tokens_ += shard.tokens();
    shard_begin_.push_back(total_tokens_);
    shard_doc_begin_.push_back(shard_doc_begin_.back() + shard.documents());
    identity.update(entry.sha256.data(), entry.sha256.size());
  }
  if (total_tokens_ != manifest_.total_tokens)
    fail("dataset '{}': shards hold {} tokens, the manifest's total is {}", dir, total_tokens_, manifest_.total_tokens);
  identity_ = identity.hex_digest();
}

size_t TokenDataset::shard_of(uint64_t position) const {
  // The last shard whose first token is at or before `position`.
  const auto it = std::upper_bound(shard_begin_.begin(), shard_begin_.end() - 1, position);
  return static_cast<size_t>(it - shard_begin_.begin()) - 1;
}

// Calls fn(shard, local begin, count) for each shard's part of stream tokens [begin, begin + count).
template <class Fn>
void TokenDataset::for_each_piece(uint64_t begin, uint64_t count, const char* what, Fn&& fn) const {
  if (begin > total_tokens_ || count > total_tokens_ - begin)
    fail("dataset '{}': read of {} [{}, {}) past its {} tokens", dir_, what, begin, begin + count, total_tokens_);
  for (size_t s = shard_of(begin); count > 0; ++s) {
    const uint64_t local = begin - shard_begin_[s];
    const uint64_t take = std::min(count, shards_[s].tokens() - local);
    fn(shards_[s], local, take);
    begin += take;
    count -= take;
  }
}

void TokenDataset::read(uint64_t begin, uint64_t count, int32_t* out) const {
  const uint64_t vocab = manifest_.vocab_size;
  for_each_piece(begin, count, "tokens", [&](const ShardReader& shard, uint64_t local, uint64_t take) {
    shard.copy_tokens(local, take, out);
    // One comparison per token, before any id can reach an embedding lookup.
    for (uint64_t i = 0; i < take; ++i)
      if (static_cast<uint32_t>(out[i]) >= vocab)  // ids above 2^31 - 1 came in negative
        fail("shard '{}': token {} is id {}, outside the dataset's vocabulary (size {}); the shard is corrupt: check "
             "it with `exatrain data verify {}` and prepare the dataset again",
             shard.path(), local + i, uint32_t(out[i]), vocab, dir_);
    out += take;
  });
}

std::pair<size_t, size_t> TokenDataset::shards_of(uint64_t begin, uint64_t count) const {
  return {shard_of(begin), shard_of(begin + count - 1)};
}

void TokenDataset::read_loss_mask(uint64_t begin, uint64_t count, uint8_t* out) const {
  for_each_piece(begin, count, "loss mask", [&](const ShardReader& shard, uint64_t local, uint64_t take) {
    shard.copy_loss_mask(local, take, out);
    out += take;
  });
}

std::pair<uint64_t, uint64_t> TokenDataset::document(uint64_t i) const {
  if (i >= documents()) fail("dataset '{}': no document {} (it has {})", dir_, i, documents());
  auto start = [&](uint64_t d) {  // the stream position where document d starts
    const auto it = std::upper_bound(shard_doc_begin_.begin(), shard_doc_begin_.end(), d);
    const size_t s = static_cast<size_t>(it - shard_doc_begin_.begin()) - 1;
    return shard_begin_[s] + shards_[s].document_starts()[d - shard_doc_begin_[s]];
  };
  return {start(i), i + 1 < documents() ? start(i + 1) : total_tokens_};
}

void TokenDataset::document_starts(uint64_t begin, uint64_t count, std::vector<int32_t>& out) const {
  const uint64_t end = std::min(begin + count, total_tokens_);
  for (size_t s = shard_of(begin); s < shards_.size() && shard_begin_[s] < end; ++s) {
    const auto starts = shards_[s].document_starts();
    const uint64_t base = shard_begin_[s];
    const uint64_t lo = begin > base ? begin - base : 0;
    auto it = std::lower_bound(starts.begin(), starts.end(), lo);
    for (; it != starts.end() && base + *it < end; ++it) out.push_back(static_cast<int32_t>(base + *it - begin));
  }
}

}  // namespace exatrain
