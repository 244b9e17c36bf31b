// UTF-8 helpers. Invalid input follows one policy everywhere: each maximal invalid subsequence
// (Unicode's "maximal subpart", what Python's bytes.decode("utf-8", "replace") and Rust's
// String::from_utf8_lossy do) becomes one U+FFFD.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace exatrain::utf8 {

// Length of the longest valid UTF-8 prefix of `text` (== text.size() when all of it is valid).
size_t valid_prefix_length(std::string_view text);
inline bool is_valid(std::string_view text) { return valid_prefix_length(text) == text.size(); }

// Appends `text` to `out` with every maximal invalid subsequence replaced by U+FFFD; returns how
// many replacements were made.
size_t append_replacing_invalid(std::string_view text, std::string& out);

void append_code_point(char32_t cp, std::string& out);

// Number of bytes of the UTF-8 sequence starting with `lead` (1 for continuation/invalid bytes).
inline size_t sequence_length(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the code point at text[pos] (text must be valid UTF-8) and advances pos.
inline char32_t next_code_point(std::string_view text, size_t& pos) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data()) + pos;
  uint8_t b0 = p[0];
  if (b0 < 0x80) {
    pos += 1;
    return b0;
  }
  if (b0 < 0xE0) {
    pos += 2;
    return char32_t((b0 & 0x1F) << 6 | (p[1] & 0x3F));
  }
  if (b0 < 0xF0) {
    pos += 3;
    return char32_t((b0 & 0x0F) << 12 | (p[1] & 0x3F) << 6 | (p[2] & 0x3F));
  }
  pos += 4;
  return char32_t((b0 & 0x07) << 18 | (p[1] & 0x3F) << 12 | (p[2] & 0x3F) << 6 | (p[3] & 0x3F));
}

// Decodes the code point that ends at text[pos] (exclusive; text valid UTF-8) and moves pos back.
inline char32_t previous_code_point(std::string_view text, size_t& pos) {
  size_t start = pos - 1;
  while (start > 0 && (uint8_t(text[start]) & 0xC0) == 0x80) --start;
  size_t p = start;
  char32_t cp = next_code_point(text, p);
  pos = start;
  return cp;
}

}  // namespace exatrain::utf8
