// SHA-256 (FIPS 180-4): a one-shot hex digest and a streaming hasher. Used for the tokenizer's
// content hash and for dataset manifests (shards, input files).
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
  void update(std::string_view bytes) {
    update(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
  void update(const void* data, size_t size) { update(std::span<const uint8_t>(static_cast<const uint8_t*>(data), size)); }
  // Finishes the hash; the object must not be updated afterwards (reset() starts over).
  std::array<uint8_t, 32> finish();
  std::string finish_hex();  // lower-case, 64 characters
  std::array<uint8_t, 32> digest() { return finish(); }
  std::string hex_digest() { return finish_hex(); }
  void reset();

 private:
  void compress(const uint8_t* block);
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_;
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// Lower-case hex digest of `bytes`.
std::string sha256_hex(std::span<const uint8_t> bytes);
std::string sha256_hex(std::string_view bytes);
// Streams a file; throws exatrain::Error if it cannot be read.
std::string sha256_file_hex(const std::string& path);

}  // namespace exatrain
