// UTF-8 validity and repair for document text (Unicode 15, table 3-7: no overlongs, no
// surrogates, nothing above U+10FFFF).
//
// Repair replaces each "maximal subpart" of an ill-formed sequence with U+FFFD, the practice
// Unicode recommends (section 3.9) and the one Python's bytes.decode("utf-8", "replace") and
// the WHATWG encoding standard follow: "\xe2\x82" (a truncated euro sign) becomes one U+FFFD,
// "\xc0\xaf" (an overlong) becomes two.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace exatrain {

// Byte offset of the first ill-formed sequence, or std::string_view::npos if `text` is valid.
size_t find_invalid_utf8(std::string_view text);
inline bool is_valid_utf8(std::string_view text) { return find_invalid_utf8(text) == std::string_view::npos; }

// `text` with each maximal ill-formed subpart replaced by U+FFFD (EF BF BD).
std::string repair_utf8(std::string_view text);

}  // namespace exatrain
