// SHA-256 (FIPS 180-4), one-shot and streaming: the tokenizer's content hash and the checksums
// of shards and input files in dataset manifests. Uses the x86 SHA extensions when the CPU has
// them (about 1.5-2 GB/s; checksums are most of what `data verify` and `data prepare` spend),
// else portable C++.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace exatrain {

class Sha256 {
 public:
  Sha256();
  void update(std::span<const uint8_t> bytes);
  void update(const void* data, size_t size) { update({static_cast<const uint8_t*>(data), size}); }
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  std::array<uint8_t, 32> digest();  // finishes; call reset() before hashing again
  std::string hex_digest();          // lower-case, 64 characters
  std::string finish_hex() { return hex_digest(); }
  void reset() { *this = Sha256(); }

 private:
  void compress(const uint8_t* blocks, size_t count);  // `count` 64-byte blocks
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

std::string sha256_hex(std::span<const uint8_t> bytes);
inline std::string sha256_hex(std::string_view bytes) {
  return sha256_hex(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}
// True when the x86 SHA extensions are in use (EXATRAIN_SHA256_PORTABLE=1 forces the portable
// code, for testing it on such CPUs).
bool sha256_uses_cpu_extensions();
// Streams the file; errors name it.
std::string sha256_file_hex(const std::string& path);

}  // namespace exatrain
