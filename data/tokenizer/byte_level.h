// The GPT-2 byte-to-character table of byte-level BPE: bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF
// stand for themselves; the other 68 bytes, in ascending order, map to U+0100, U+0101, ...
// (space -> U+0120 'Ġ', newline -> U+010A 'Ċ').
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace exatrain::byte_level {

char32_t char_for_byte(uint8_t byte);
// The byte a table character stands for, or -1 for a character outside the table.
int byte_for_char(char32_t cp);
// UTF-8 of char_for_byte(byte) (one or two bytes).
std::string_view utf8_for_byte(uint8_t byte);
// Appends the table characters of every byte of `bytes`.
void append_mapped(std::string_view bytes, std::string& out);

}  // namespace exatrain::byte_level
