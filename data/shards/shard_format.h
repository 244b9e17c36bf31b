// The token shard file: the one place that knows its byte layout. Little-endian throughout.
//
//   offset                 size            content
//   0                      8               magic "EXASHARD"
//   8                      4               format version (u32): 2 (written), 1 (still read)
//   12                     4               bytes per token id: 2 (uint16) or 4 (uint32)
//   16                     8               tokens in this shard (u64)
//   24                     8               documents that START in this shard (u64)
//   32                     8               vocabulary size the ids are below (u64)
//   40                     4               flags (u32; version 2): bit 0 = the shard has a loss mask;
//                                          the other bits are zero
//   44                     20              reserved, zero
//   64                     tokens * width  token ids
//   ...                    0..7            zero padding to a multiple of 8
//   mask_offset            ceil(tokens/8)  (only with the loss-mask flag) the loss mask, one bit per
//                                          token: token t's bit is bit (t % 8) of byte t / 8, 1 where
//                                          token t is a training target; unused bits of the last
//                                          byte are zero
//   ...                    0..7            zero padding to a multiple of 8
//   index_offset           documents * 8   document start offsets (u64), strictly increasing,
//                                          each < tokens; offsets are within this shard
//   file ends exactly at index_offset + documents * 8
//
// Version 1 is version 2 without flags (bytes 40..63 all zero, no mask section). A shard without
// a mask trains on every token.
//
// Shards hold a fixed number of tokens (all but a dataset's last), so a document may begin in
// one shard and end in a later one: a shard whose first offset is not 0 starts inside a
// document carried over from the previous shard. Every document ends with EOS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace exatrain {

enum class TokenDtype : uint32_t { UInt16 = 2, UInt32 = 4 };

inline constexpr char kShardMagic[8] = {'E', 'X', 'A', 'S', 'H', 'A', 'R', 'D'};
inline constexpr uint32_t kShardFormatVersion = 2;        // written
inline constexpr uint32_t kOldestShardFormatVersion = 1;  // still read
inline constexpr uint32_t kShardFlagLossMask = 1;
inline constexpr uint64_t kShardHeaderBytes = 64;

struct ShardHeader {
  TokenDtype dtype = TokenDtype::UInt16;
  uint64_t tokens = 0;
  uint64_t documents = 0;
  uint64_t vocab_size = 0;
  uint32_t version = kShardFormatVersion;
  bool has_loss_mask = false;
};

// Where each part starts and how long the file must be.
struct ShardLayout {
  uint64_t ids_offset = kShardHeaderBytes;
  uint64_t mask_offset = 0;  // == index_offset when there is no mask
  uint64_t mask_bytes = 0;   // ceil(tokens / 8) with a mask, else 0
  uint64_t index_offset = 0;
  uint64_t file_bytes = 0;
};

// uint16 when every id fits (vocab_size <= 65536), else uint32.
TokenDtype dtype_for_vocab(uint64_t vocab_size);
inline uint64_t dtype_bytes(TokenDtype dtype) { return static_cast<uint64_t>(dtype); }
const char* dtype_name(TokenDtype dtype);  // "uint16" / "uint32"

ShardLayout shard_layout(const ShardHeader& header);

// The 64 header bytes (header.version is written as it is: 1 only for a header without a mask).
void encode_shard_header(const ShardHeader& header, uint8_t out[kShardHeaderBytes]);
// Parses and checks magic, version (1 or 2), dtype, flags and the reserved bytes; errors name `file`.
ShardHeader decode_shard_header(const uint8_t in[kShardHeaderBytes], const std::string& file);

// "shard-00000.bin", "shard-00001.bin", ...
std::string shard_file_name(uint64_t index);

}  // namespace exatrain
