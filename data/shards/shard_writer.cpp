#include "data/shards/shard_writer.h"

#include <filesystem>

#include "trainer/core/sha256.h"
#include "trainer/core/error.h"

namespace exatrain {

namespace fs = std::filesystem;

ShardWriter::ShardWriter(std::string dir, uint64_t vocab_size, uint64_t shard_tokens, bool loss_mask)
    : dir_(std::move(dir)),
      vocab_size_(vocab_size),
      shard_tokens_(shard_tokens),
      dtype_(dtype_for_vocab(vocab_size)),
      loss_mask_(loss_mask) {
  if (vocab_size == 0 || vocab_size > (uint64_t{1} << 31))
    fail("shard writer: vocabulary size {} (must be 1 .. 2^31)", vocab_size);
  if (shard_tokens == 0) fail("shard writer: shard size must be at least one token");
}

ShardWriter::~ShardWriter() {
  if (kept_) return;
  file_.abandon();
  std::error_code ignored;
  for (const auto& shard : shards_) fs::remove(fs::path(dir_) / shard.file, ignored);
}

void ShardWriter::open_shard() {
  file_.open((fs::path(dir_) / shard_file_name(shards_.size())).string());
  const uint8_t placeholder[kShardHeaderBytes] = {};  // the real header goes in when the counts are known
  file_.write(placeholder, sizeof placeholder);
  shard_token_count_ = 0;
  doc_starts_.clear();
  mask_bits_.clear();
  mask_ones_ = 0;
}

void ShardWriter::write_ids(std::span<const uint32_t> ids) {
  if (dtype_ == TokenDtype::UInt32) {
    file_.write(ids.data(), ids.size_bytes());
    return;
  }
  convert_.resize(ids.size() * 2);
  auto* out = reinterpret_cast<uint16_t*>(convert_.data());
  for (size_t i = 0; i < ids.size(); ++i) out[i] = static_cast<uint16_t>(ids[i]);
  file_.write(convert_.data(), convert_.size());
}

void ShardWriter::add_document(std::span<const uint32_t> ids, std::span<const uint8_t> mask) {
  if (finished_) fail("shard writer: add_document after finish");
  if (ids.empty()) fail("shard writer: empty document (every document ends with EOS)");
  if (loss_mask_ && mask.size() != ids.size())
    fail("shard writer: a document of {} ids came with {} loss-mask values", ids.size(), mask.size());
  if (!loss_mask_ && !mask.empty()) fail("shard writer: a loss mask given to a writer made without one");
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= vocab_size_)
      fail("shard writer: id {} at position {} of a document is outside the vocabulary (size {})", ids[i], i,
           vocab_size_);
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i] > 1) fail("shard writer: loss-mask value {} at position {} of a document (must be 0 or 1)", mask[i], i);
  bool first_piece = true;
  while (!ids.empty()) {
    if (!file_.is_open()) open_shard();
    if (first_piece) doc_starts_.push_back(shard_token_count_);
    first_piece = false;
    const uint64_t take = std::min<uint64_t>(ids.size(), shard_tokens_ - shard_token_count_);
    write_ids(ids.first(take));
    if (loss_mask_) {
      for (uint64_t i = 0; i < take; ++i) {
        const uint64_t t = shard_token_count_ + i;
        if (t % 8 == 0) mask_bits_.push_back(0);
        mask_bits_.back() |= static_cast<uint8_t>(mask[i] << (t % 8));
        mask_ones_ += mask[i];
      }
      mask = mask.subspan(take);
    }
    shard_token_count_ += take;
    total_tokens_ += take;
    ids = ids.subspan(take);
    if (shard_token_count_ == shard_tokens_) close_shard();
  }
}

void ShardWriter::close_shard() {
  ShardHeader header;
  header.dtype = dtype_;
  header.tokens = shard_token_count_;
  header.documents = doc_starts_.size();
  header.vocab_size = vocab_size_;
  header.has_loss_mask = loss_mask_;
  const ShardLayout layout = shard_layout(header);
  const uint64_t ids_end = layout.ids_offset + header.tokens * dtype_bytes(dtype_);
  const uint8_t zeros[8] = {};
  file_.write(zeros, layout.mask_offset - ids_end);
  if (loss_mask_) {
    file_.write(mask_bits_.data(), mask_bits_.size());  // == layout.mask_bytes
    file_.write(zeros, layout.index_offset - layout.mask_offset - layout.mask_bytes);
  }
  file_.write(doc_starts_.data(), doc_starts_.size() * sizeof(uint64_t));
  uint8_t bytes[kShardHeaderBytes];
  encode_shard_header(header, bytes);
  file_.write_at(0, bytes);
  file_.flush();

  ManifestShard info;
  info.file = shard_file_name(shards_.size());
  info.sha256 = exatrain::sha256_file_hex(file_.temp_path());  // re-read from the page cache
  info.tokens = header.tokens;
  info.documents = header.documents;
  info.bytes = layout.file_bytes;
  info.loss_mask_tokens = mask_ones_;  // 0 without a mask
  file_.commit();
  shards_.push_back(std::move(info));
}

std::vector<ManifestShard> ShardWriter::finish() {
  if (finished_) fail("shard writer: finish called twice");
  if (file_.is_open()) close_shard();
  finished_ = true;
  return shards_;
}

}  // namespace exatrain
