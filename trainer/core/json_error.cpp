#include "trainer/core/json_error.h"

#include <fmt/format.h>

#include <algorithm>

namespace exatrain {

namespace {

using nlohmann::json;

// Accepts everything and remembers where the parser gave up: nlohmann's SAX interface is the one
// place that reports the position of errors other than parse_error.
class ErrorLocator : public nlohmann::json_sax<json> {
 public:
  size_t position = std::string::npos;  // bytes read when the error was found (just past the token)
  size_t token_size = 0;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t pos, const std::string& last_token, const nlohmann::detail::exception&) override {
    position = pos;
    token_size = last_token.size();
    return false;
  }
};

}  // namespace

std::string json_error_text(const nlohmann::json::exception& e, std::string_view text) {
  std::string what = e.what();  // "[json.exception.out_of_range.406] number overflow parsing '1e999'"
  if (what.rfind("[json.exception.", 0) == 0)
    if (const size_t close = what.find("] "); close != std::string::npos) what = what.substr(close + 2);
  if (dynamic_cast<const json::parse_error*>(&e)) return what;  // already "parse error at line L, column C: ..."
  ErrorLocator locator;
  json::sax_parse(text.begin(), text.end(), &locator);
  if (locator.position == std::string::npos || locator.position > text.size()) return what;
  const size_t at = locator.position - std::min(locator.token_size, locator.position);  // the token's start
  const std::string_view before = text.substr(0, at);
  const size_t line = 1 + static_cast<size_t>(std::count(before.begin(), before.end(), '\n'));
  const size_t line_start = before.rfind('\n');
  const size_t column = at - (line_start == std::string_view::npos ? 0 : line_start + 1) + 1;
  return fmt::format("{} at line {}, column {}", what, line, column);
}

}  // namespace exatrain
