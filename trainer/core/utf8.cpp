#include "trainer/core/utf8.h"

#include <cstring>

namespace exatrain::utf8 {

namespace {

// Length of the well-formed sequence at p[0..n) (Unicode Table 3-7), or, when it is ill-formed,
// minus the length of its maximal subpart (at least 1).
inline long well_formed_length(const uint8_t* p, size_t n) {
  uint8_t b0 = p[0];
  if (b0 < 0x80) return 1;
  uint8_t lo = 0x80, hi = 0xBF;
  size_t need;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return -1;  // C0, C1, F5..FF, or a stray continuation byte
  }
  // The second byte has the lead-specific range; the rest are plain continuation bytes.
  for (size_t i = 1; i <= need; ++i) {
    if (i >= n) return -long(i);
    uint8_t b = p[i];
    uint8_t l = (i == 1) ? lo : 0x80, h = (i == 1) ? hi : 0xBF;
    if (b < l || b > h) return -long(i);
  }
  return long(need + 1);
}

}  // namespace

size_t valid_prefix_length(std::string_view text) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, p + i, 8);
      if (word & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    long len = well_formed_length(p + i, n - i);
    if (len < 0) return i;
    i += size_t(len);
  }
  return n;
}

size_t append_replacing_invalid(std::string_view text, std::string& out) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t replaced = 0;
  size_t i = 0;
  while (i < n) {
    size_t valid = valid_prefix_length(text.substr(i));
    out.append(text.data() + i, valid);
    i += valid;
    if (i >= n) break;
    long len = well_formed_length(p + i, n - i);  // negative here: the maximal subpart
    out.append("\xEF\xBF\xBD");
    ++replaced;
    i += size_t(-len);
  }
  return replaced;
}

void append_code_point(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

}  // namespace exatrain::utf8
