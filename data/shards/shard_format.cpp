#include "data/shards/shard_format.h"

#include <fmt/format.h>

#include <bit>
#include <cstring>

#include "trainer/core/error.h"

namespace exatrain {

static_assert(std::endian::native == std::endian::little, "shards are little-endian; add byte swapping");

namespace {

void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

std::string printable(const uint8_t* bytes, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i)
    s += (bytes[i] >= 32 && bytes[i] < 127) ? std::string(1, static_cast<char>(bytes[i])) : fmt::format("\\x{:02x}", bytes[i]);
  return s;
}

}  // namespace

TokenDtype dtype_for_vocab(uint64_t vocab_size) {
  return vocab_size <= 65536 ? TokenDtype::UInt16 : TokenDtype::UInt32;
}

const char* dtype_name(TokenDtype dtype) { return dtype == TokenDtype::UInt16 ? "uint16" : "uint32"; }

ShardLayout shard_layout(const ShardHeader& header) {
  ShardLayout layout;
  const uint64_t ids_end = layout.ids_offset + header.tokens * dtype_bytes(header.dtype);
  layout.mask_offset = (ids_end + 7) / 8 * 8;
  layout.mask_bytes = header.has_loss_mask ? (header.tokens + 7) / 8 : 0;
  layout.index_offset = (layout.mask_offset + layout.mask_bytes + 7) / 8 * 8;
  layout.file_bytes = layout.index_offset + header.documents * 8;
  return layout;
}

void encode_shard_header(const ShardHeader& header, uint8_t out[kShardHeaderBytes]) {
  if (header.version < kOldestShardFormatVersion || header.version > kShardFormatVersion ||
      (header.version < 2 && header.has_loss_mask))
    fail("shard header: cannot write format version {}{}", header.version, header.has_loss_mask ? " with a loss mask" : "");
  std::memset(out, 0, kShardHeaderBytes);
  std::memcpy(out, kShardMagic, 8);
  put_u32(out + 8, header.version);
  put_u32(out + 12, static_cast<uint32_t>(header.dtype));
  put_u64(out + 16, header.tokens);
  put_u64(out + 24, header.documents);
  put_u64(out + 32, header.vocab_size);
  put_u32(out + 40, header.has_loss_mask ? kShardFlagLossMask : 0);
}

ShardHeader decode_shard_header(const uint8_t in[kShardHeaderBytes], const std::string& file) {
  if (std::memcmp(in, kShardMagic, 8) != 0)
    fail("shard '{}': not an exatrain token shard (magic is \"{}\", expected \"EXASHARD\")", file, printable(in, 8));
  const uint32_t version = get_u32(in + 8);
  if (version < kOldestShardFormatVersion || version > kShardFormatVersion)
    fail("shard '{}': format version {}, this exatrain reads versions {} to {}", file, version,
         kOldestShardFormatVersion, kShardFormatVersion);
  const uint32_t width = get_u32(in + 12);
  if (width != 2 && width != 4)
    fail("shard '{}': token width {} bytes in the header, expected 2 (uint16) or 4 (uint32)", file, width);
  const size_t reserved_from = version >= 2 ? 44 : 40;
  for (size_t i = reserved_from; i < kShardHeaderBytes; ++i)
    if (in[i] != 0) fail("shard '{}': reserved header byte {} is {:#04x}, expected 0", file, i, in[i]);
  const uint32_t flags = version >= 2 ? get_u32(in + 40) : 0;
  if ((flags & ~kShardFlagLossMask) != 0)
    fail("shard '{}': unknown header flags {:#x} (this exatrain knows only {:#x}, the loss mask)", file, flags,
         kShardFlagLossMask);
  ShardHeader header;
  header.version = version;
  header.has_loss_mask = (flags & kShardFlagLossMask) != 0;
  header.dtype = static_cast<TokenDtype>(width);
  header.tokens = get_u64(in + 16);
  header.documents = get_u64(in + 24);
  header.vocab_size = get_u64(in + 32);
  if (header.vocab_size == 0) fail("shard '{}': vocabulary size 0 in the header", file);
  if (header.vocab_size > (uint64_t{1} << 31))
    fail("shard '{}': vocabulary size {} in the header; ids must fit int32", file, header.vocab_size);
  if (header.dtype == TokenDtype::UInt16 && header.vocab_size > 65536)
    fail("shard '{}': uint16 ids but vocabulary size {} (> 65536)", file, header.vocab_size);
  // Guards shard_layout() against overflow on a corrupt header.
  if (header.tokens > (uint64_t{1} << 56) || header.documents > header.tokens)
    fail("shard '{}': header counts are impossible ({} tokens, {} documents)", file, header.tokens, header.documents);
  return header;
}

std::string shard_file_name(uint64_t index) { return fmt::format("shard-{:05d}.bin", index); }

}  // namespace exatrain
