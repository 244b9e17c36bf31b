#include "trainer/core/sha256.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "trainer/core/error.h"

namespace exatrain {

namespace {

// The calls below fail only when OpenSSL cannot allocate or is misconfigured.
void check(int ok, const char* call) {
  if (ok != 1) fail("sha256: OpenSSL {} failed", call);
}

evp_md_ctx_st* new_context() {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) fail("sha256: OpenSSL EVP_MD_CTX_new failed (out of memory?)");
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    fail("sha256: OpenSSL EVP_DigestInit_ex failed");
  }
  return ctx;
}

}  // namespace

void Sha256::FreeContext::operator()(evp_md_ctx_st* ctx) const { EVP_MD_CTX_free(ctx); }

Sha256::Sha256() : ctx_(new_context()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&& other) noexcept = default;
Sha256& Sha256::operator=(Sha256&& other) noexcept = default;

Sha256::Sha256(const Sha256& other) : ctx_(new_context()) {
  if (other.ctx_) check(EVP_MD_CTX_copy_ex(ctx_.get(), other.ctx_.get()), "EVP_MD_CTX_copy_ex");
}

Sha256& Sha256::operator=(const Sha256& other) {
  if (this != &other) *this = Sha256(other);
  return *this;
}

void Sha256::reset() {
  if (!ctx_) ctx_.reset(new_context());
  check(EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr), "EVP_DigestInit_ex");
}

void Sha256::update(std::span<const uint8_t> bytes) {
  if (!ctx_) ctx_.reset(new_context());
  check(EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size()), "EVP_DigestUpdate");
}

std::array<uint8_t, 32> Sha256::digest() {
  if (!ctx_) ctx_.reset(new_context());
  std::array<uint8_t, 32> out;
  unsigned size = 0;
  check(EVP_DigestFinal_ex(ctx_.get(), out.data(), &size), "EVP_DigestFinal_ex");
  if (size != out.size()) fail("sha256: OpenSSL returned a digest of {} bytes", size);
  reset();
  return out;
}

std::string Sha256::hex_digest() {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (uint8_t byte : digest()) {
    hex += digits[byte >> 4];
    hex += digits[byte & 15];
  }
  return hex;
}

std::string sha256_hex(std::span<const uint8_t> bytes) {
  Sha256 h;
  h.update(bytes);
  return h.hex_digest();
}

std::string sha256_file_hex(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) fail("cannot read '{}': {}", path, std::strerror(errno));
  Sha256 h;
  std::vector<uint8_t> buf(1 << 20);
  for (;;) {
    const size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    h.update({buf.data(), n});
    if (n < buf.size()) {
      if (std::ferror(f.get())) fail("error reading '{}': {}", path, std::strerror(errno));
      break;
    }
  }
  return h.hex_digest();
}

}  // namespace exatrain
