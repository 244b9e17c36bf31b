#include "data/shards/spdx.h"

#include <cctype>

namespace exatrain {

bool is_spdx_expression(std::string_view text) {
  // Identifiers (MIT, Apache-2.0, GPL-2.0+, LicenseRef-x, DocumentRef-a:LicenseRef-b) joined by
  // AND / OR / WITH, with parentheses. The syntax only: the license list itself is not embedded.
  int depth = 0;
  bool expect_id = true;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == ' ') {
      ++i;
    } else if (c == '(') {
      if (!expect_id) return false;
      ++depth;
      ++i;
    } else if (c == ')') {
      if (expect_id || --depth < 0) return false;
      ++i;
    } else {
      size_t j = i;
      while (j < text.size() && (std::isalnum(static_cast<unsigned char>(text[j])) || text[j] == '-' || text[j] == '.' ||
                                 text[j] == '+' || text[j] == ':'))
        ++j;
      if (j == i) return false;
      const std::string_view word = text.substr(i, j - i);
      const bool op = word == "AND" || word == "OR" || word == "WITH";
      if (op == expect_id) return false;
      expect_id = op;
      i = j;
    }
  }
  return !expect_id && depth == 0;
}

}  // namespace exatrain
