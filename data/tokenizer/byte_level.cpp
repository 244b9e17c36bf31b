#include "data/tokenizer/byte_level.h"

#include <array>

#include "trainer/core/utf8.h"

namespace exatrain::byte_level {

namespace {

struct Table {
  std::array<char32_t, 256> chars{};
  std::array<std::string, 256> utf8;
  std::array<int16_t, 256 + 68> bytes{};  // code point -> byte, -1 outside the table
  Table() {
    bytes.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      chars[b] = self ? char32_t(b) : next++;
      utf8::append_code_point(chars[b], utf8[b]);
      bytes[chars[b]] = int16_t(b);
    }
  }
};

const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

char32_t char_for_byte(uint8_t byte) { return table().chars[byte]; }

int byte_for_char(char32_t cp) { return cp < 256 + 68 ? table().bytes[cp] : -1; }

std::string_view utf8_for_byte(uint8_t byte) { return table().utf8[byte]; }

void append_mapped(std::string_view bytes, std::string& out) {
  const Table& t = table();
  for (unsigned char b : bytes) out.append(t.utf8[b]);
}

}  // namespace exatrain::byte_level
