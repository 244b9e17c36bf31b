// nlohmann::json's errors as one line a user can act on. A syntax error (parse_error) names its
// line and column; a number that overflows a double ("1e999": out_of_range 406) names neither
// and, caught as anything but a parse_error, used to escape as an "internal error". Every site
// that parses JSON from a file or a user catches nlohmann::json::exception and reports
// json_error_text, prefixed with the file.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace exatrain {

// The reason without nlohmann's "[json.exception.parse_error.101] " prefix, always with the
// line and column in `text` (the text that was parsed) where the problem is:
//   "parse error at line 2, column 1: syntax error while parsing object key - ..."
//   "number overflow parsing '1e999' at line 3, column 12"
std::string json_error_text(const nlohmann::json::exception& e, std::string_view text);

}  // namespace exatrain
