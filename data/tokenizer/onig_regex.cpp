#include "data/tokenizer/onig_regex.h"

#include <oniguruma.h>

#include <mutex>

#include "trainer/core/utf8.h"
#include "trainer/core/error.h"

namespace exatrain::tok {

namespace {

void initialize_oniguruma() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

std::string error_text(int code, OnigErrorInfo* info) {
  UChar buffer[ONIG_MAX_ERROR_MESSAGE_LEN];
  int n = info ? onig_error_code_to_str(buffer, code, info) : onig_error_code_to_str(buffer, code);
  return std::string(reinterpret_cast<const char*>(buffer), size_t(n > 0 ? n : 0));
}

}  // namespace

RegexScratch::RegexScratch() : region_(onig_region_new()) {}
RegexScratch::~RegexScratch() { onig_region_free(static_cast<OnigRegion*>(region_), 1); }

OnigRegex::OnigRegex(std::string_view pattern) : pattern_(pattern) {
  initialize_oniguruma();
  regex_t* reg = nullptr;
  OnigErrorInfo info;
  const auto* p = reinterpret_cast<const UChar*>(pattern_.data());
  int rc = onig_new(&reg, p, p + pattern_.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
  if (rc != ONIG_NORMAL) fail("regex {:?} does not compile: {}", pattern_, error_text(rc, &info));
  regex_ = reg;
}

OnigRegex::OnigRegex(OnigRegex&& other) noexcept : pattern_(std::move(other.pattern_)), regex_(other.regex_) {
  other.regex_ = nullptr;
}

OnigRegex& OnigRegex::operator=(OnigRegex&& other) noexcept {
  if (this != &other) {
    if (regex_) onig_free(static_cast<regex_t*>(regex_));
    pattern_ = std::move(other.pattern_);
    regex_ = other.regex_;
    other.regex_ = nullptr;
  }
  return *this;
}

OnigRegex::~OnigRegex() {
  if (regex_) onig_free(static_cast<regex_t*>(regex_));
}

void OnigRegex::find_all(std::string_view text, std::vector<Span>& matches, RegexScratch& scratch) const {
  auto* reg = static_cast<regex_t*>(regex_);
  auto* region = static_cast<OnigRegion*>(scratch.region());
  const auto* begin = reinterpret_cast<const UChar*>(text.data());
  const auto* end = begin + text.size();
  size_t last_end = 0;
  bool skip_next_empty = false;
  while (last_end <= text.size()) {
    int rc = onig_search(reg, begin, end, begin + last_end, end, region, ONIG_OPTION_NONE);
    if (rc == ONIG_MISMATCH) break;
    if (rc < 0) fail("regex {:?}: search failed: {}", pattern_, error_text(rc, nullptr));
    auto s = size_t(region->beg[0]), e = size_t(region->end[0]);
    last_end = e;
    if (s == e) {
      // Step over one character (one byte at the end of the text, which ends the loop).
      last_end += last_end < text.size() ? utf8::sequence_length(uint8_t(text[last_end])) : 1;
      if (skip_next_empty) {
        skip_next_empty = false;
        continue;
      }
    } else {
      skip_next_empty = true;
    }
    matches.push_back(Span{uint32_t(s), uint32_t(e)});
  }
}

bool OnigRegex::search(std::string_view text, RegexScratch& scratch) const {
  auto* reg = static_cast<regex_t*>(regex_);
  auto* region = static_cast<OnigRegion*>(scratch.region());
  const auto* begin = reinterpret_cast<const UChar*>(text.data());
  const auto* end = begin + text.size();
  int rc = onig_search(reg, begin, end, begin, end, region, ONIG_OPTION_NONE);
  if (rc == ONIG_MISMATCH) return false;
  if (rc < 0) fail("regex {:?}: search failed: {}", pattern_, error_text(rc, nullptr));
  return true;
}

std::string escape_regex(std::string_view literal) {
  // Rust regex-syntax's is_meta_character.
  static constexpr std::string_view meta = "\\.+*?()|[]{}^$#&-~";
  std::string out;
  out.reserve(literal.size() * 2);
  for (char c : literal) {
    if (meta.find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace exatrain::tok
