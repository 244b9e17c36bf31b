// Oniguruma regexes as `tokenizers` uses them: compiled with the library's default syntax
// (ONIG_SYNTAX_ONIGURUMA in 6.9) and UTF-8, iterated like the `onig` crate's find_iter (an
// empty match right after a match is skipped; after an empty match the search moves on one
// character). oniguruma.h stays out of this header.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace exatrain::tok {

struct Span {
  uint32_t begin;
  uint32_t end;
};

// A match region per thread (Oniguruma writes match positions into it).
class RegexScratch {
 public:
  RegexScratch();
  RegexScratch(const RegexScratch&) = delete;
  RegexScratch& operator=(const RegexScratch&) = delete;
  ~RegexScratch();
  void* region() const { return region_; }

 private:
  void* region_;
};

class OnigRegex {
 public:
  // Throws exatrain::Error with Oniguruma's message if the pattern does not compile.
  explicit OnigRegex(std::string_view pattern);
  OnigRegex(OnigRegex&& other) noexcept;
  OnigRegex& operator=(OnigRegex&& other) noexcept;
  OnigRegex(const OnigRegex&) = delete;
  OnigRegex& operator=(const OnigRegex&) = delete;
  ~OnigRegex();

  const std::string& pattern() const { return pattern_; }
  // Appends every match of find_iter over `text` (which must be valid UTF-8), in order.
  void find_all(std::string_view text, std::vector<Span>& matches, RegexScratch& scratch) const;
  // True if the regex matches somewhere in `text`.
  bool search(std::string_view text, RegexScratch& scratch) const;

 private:
  std::string pattern_;
  void* regex_ = nullptr;  // regex_t*
};

// Escapes `literal` the way Rust's regex::escape does (SplitPattern::String is compiled that way).
std::string escape_regex(std::string_view literal);

}  // namespace exatrain::tok
