#include "data/shards/shard_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

#include "trainer/core/error.h"

namespace exatrain {

ShardReader::ShardReader(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("shard '{}': cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("shard '{}': cannot stat: {}", path, std::strerror(err));
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ < kShardHeaderBytes) {
    ::close(fd);
    fail("shard '{}': truncated: {} bytes, shorter than the {}-byte header", path, size_, kShardHeaderBytes);
  }
  void* map = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) fail("shard '{}': cannot memory-map {} bytes: {}", path, size_, std::strerror(map_errno));
  data_ = static_cast<const uint8_t*>(map);

  try {
    header_ = decode_shard_header(data_, path);
    const ShardLayout layout = shard_layout(header_);
    if (size_ < layout.file_bytes)
      fail("shard '{}': truncated: {} bytes, the header promises {} ({} {} ids and {} document offsets)", path, size_,
           layout.file_bytes, header_.tokens, dtype_name(header_.dtype), header_.documents);
    if (size_ > layout.file_bytes)
      fail("shard '{}': {} bytes, {} more than the header describes ({} {} ids and {} document offsets)", path, size_,
           size_ - layout.file_bytes, header_.tokens, dtype_name(header_.dtype), header_.documents);
    ids_ = data_ + layout.ids_offset;
    mask_ = header_.has_loss_mask ? data_ + layout.mask_offset : nullptr;
    doc_starts_ = reinterpret_cast<const uint64_t*>(data_ + layout.index_offset);  // 8-aligned by layout
    for (uint64_t d = 0; d < header_.documents; ++d) {
      const uint64_t start = doc_starts_[d];
      if (start >= header_.tokens)
        fail("shard '{}': document index entry {} is offset {}, past the shard's {} tokens", path, d, start,
             header_.tokens);
      if (d > 0 && start <= doc_starts_[d - 1])
        fail("shard '{}': document index not increasing: entry {} is {}, entry {} is {}", path, d - 1,
             doc_starts_[d - 1], d, start);
    }
  } catch (...) {
    release();
    throw;
  }
}

ShardReader::~ShardReader() { release(); }

ShardReader::ShardReader(ShardReader&& other) noexcept { *this = std::move(other); }

ShardReader& ShardReader::operator=(ShardReader&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    header_ = other.header_;
    ids_ = std::exchange(other.ids_, nullptr);
    mask_ = std::exchange(other.mask_, nullptr);
    doc_starts_ = std::exchange(other.doc_starts_, nullptr);
  }
  return *this;
}

void ShardReader::release() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
}

uint32_t ShardReader::token(uint64_t i) const {
  if (header_.dtype == TokenDtype::UInt16) return reinterpret_cast<const uint16_t*>(ids_)[i];
  return reinterpret_cast<const uint32_t*>(ids_)[i];
}

void ShardReader::copy_tokens(uint64_t begin, uint64_t count, int32_t* out) const {
  if (begin > header_.tokens || count > header_.tokens - begin)
    fail("shard '{}': read of tokens [{}, {}) past its {} tokens", path_, begin, begin + count, header_.tokens);
  if (header_.dtype == TokenDtype::UInt16) {
    const auto* src = reinterpret_cast<const uint16_t*>(ids_) + begin;
    for (uint64_t i = 0; i < count; ++i) out[i] = static_cast<int32_t>(src[i]);
  } else {
    const auto* src = reinterpret_cast<const uint32_t*>(ids_) + begin;
    for (uint64_t i = 0; i < count; ++i) out[i] = static_cast<int32_t>(src[i]);
  }
}

void ShardReader::copy_loss_mask(uint64_t begin, uint64_t count, uint8_t* out) const {
  if (begin > header_.tokens || count > header_.tokens - begin)
    fail("shard '{}': read of loss mask [{}, {}) past its {} tokens", path_, begin, begin + count, header_.tokens);
  if (!mask_) {
    std::memset(out, 1, count);
    return;
  }
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t t = begin + i;
    out[i] = static_cast<uint8_t>((mask_[t / 8] >> (t % 8)) & 1);
  }
}

uint64_t ShardReader::count_loss_mask_tokens() const {
  if (!mask_) return 0;
  const uint64_t bytes = (header_.tokens + 7) / 8;
  uint64_t ones = 0;
  for (uint64_t b = 0; b < bytes; ++b) ones += static_cast<uint64_t>(std::popcount(mask_[b]));
  if (header_.tokens % 8 != 0 && (mask_[bytes - 1] >> (header_.tokens % 8)) != 0)
    fail("shard '{}': loss mask has bits set past its {} tokens (in the last mask byte {:#04x})", path_,
         header_.tokens, mask_[bytes - 1]);
  return ones;
}

void ShardReader::check_token_ids() const {
  const uint64_t vocab = header_.vocab_size;
  auto scan = [&](const auto* ids) {
    for (uint64_t i = 0; i < header_.tokens; ++i)
      if (ids[i] >= vocab)
        fail("shard '{}': token {} is id {}, outside the vocabulary (size {})", path_, i, uint64_t{ids[i]}, vocab);
  };
  if (header_.dtype == TokenDtype::UInt16)
    scan(reinterpret_cast<const uint16_t*>(ids_));
  else
    scan(reinterpret_cast<const uint32_t*>(ids_));
}

}  // namespace exatrain
