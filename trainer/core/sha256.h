// SHA-256 (FIPS 180-4), one-shot and streaming: the tokenizer's content hash and the checksums
// of shards and input files in dataset manifests. OpenSSL's libcrypto does the hashing (it uses
// the x86 SHA extensions or AVX2 where the CPU has them); OpenSSL stays out of this header.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace exatrain {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256& other);  // the same state: both go on from the bytes hashed so far
  Sha256& operator=(const Sha256& other);
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&& other) noexcept;

  void update(std::span<const uint8_t> bytes);
  void update(const void* data, size_t size) { update({static_cast<const uint8_t*>(data), size}); }
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  std::array<uint8_t, 32> digest();  // finishes, then starts over (as after reset())
  std::string hex_digest();          // lower-case, 64 characters
  std::string finish_hex() { return hex_digest(); }
  void reset();  // forgets the bytes hashed so far

 private:
  struct FreeContext {
    void operator()(evp_md_ctx_st* ctx) const;
  };
  std::unique_ptr<evp_md_ctx_st, FreeContext> ctx_;  // null only after a move; made again on use
};

std::string sha256_hex(std::span<const uint8_t> bytes);
inline std::string sha256_hex(std::string_view bytes) {
  return sha256_hex(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}
// Streams the file; errors name it.
std::string sha256_file_hex(const std::string& path);

}  // namespace exatrain
