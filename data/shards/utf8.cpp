#include "data/shards/utf8.h"

#include <cstdint>
#include <cstring>

namespace exatrain {

namespace {

// Length of the well-formed sequence at text[i], or 0 if ill-formed; `subpart` gets the length
// of the maximal ill-formed subpart (>= 1) when it is.
size_t sequence_at(std::string_view text, size_t i, size_t& subpart) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t lead = byte(i);
  size_t need;        // continuation bytes
  uint8_t lo = 0x80;  // allowed range of the first continuation byte (table 3-7)
  uint8_t hi = 0xBF;
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 2;
    if (lead == 0xE0) lo = 0xA0;  // no overlongs
    if (lead == 0xED) hi = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 3;
    if (lead == 0xF0) lo = 0x90;  // no overlongs
    if (lead == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    subpart = 1;  // 80..BF, C0, C1, F5..FF never start a sequence
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    const bool in_range = i + k < text.size() && byte(i + k) >= (k == 1 ? lo : 0x80) && byte(i + k) <= (k == 1 ? hi : 0xBF);
    if (!in_range) {
      subpart = k;
      return 0;
    }
  }
  return need + 1;
}

// Skips 8 ASCII bytes at a time.
size_t skip_ascii(std::string_view text, size_t i) {
  while (i + 8 <= text.size()) {
    uint64_t word;
    std::memcpy(&word, text.data() + i, 8);
    if (word & 0x8080808080808080ull) break;
    i += 8;
  }
  return i;
}

}  // namespace

size_t find_invalid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    i = skip_ascii(text, i);
    if (i >= text.size()) break;
    size_t subpart = 0;
    const size_t n = sequence_at(text, i, subpart);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string repair_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  size_t i = 0;
  while (i < text.size()) {
    const size_t ascii_end = skip_ascii(text, i);
    out.append(text.data() + i, ascii_end - i);
    i = ascii_end;
    if (i >= text.size()) break;
    size_t subpart = 0;
    const size_t n = sequence_at(text, i, subpart);
    if (n > 0) {
      out.append(text.data() + i, n);
      i += n;
    } else {
      out.append("\xEF\xBF\xBD");
      i += subpart;
    }
  }
  return out;
}

}  // namespace exatrain
