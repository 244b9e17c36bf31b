#include "data/tokenizer/added_vocabulary.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <map>
#include <set>

#include "data/tokenizer/normalizer.h"
#include "trainer/core/utf8.h"
#include "trainer/core/error.h"

namespace exatrain::tok {

bool is_regex_word_char(char32_t cp) {
  auto c = UChar32(cp);
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) return true;
  switch (u_charType(c)) {
    case U_NON_SPACING_MARK:
    case U_ENCLOSING_MARK:
    case U_COMBINING_SPACING_MARK:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_CONNECTOR_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

bool is_regex_space(char32_t cp) { return u_hasBinaryProperty(UChar32(cp), UCHAR_WHITE_SPACE); }

void AddedVocabulary::Matcher::add(std::string_view pattern, uint32_t id) {
  uint32_t node = 0;
  for (unsigned char byte : pattern) {
    auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), byte,
                               [](const auto& child, uint8_t b) { return child.first < b; });
    if (it != children.end() && it->first == byte) {
      node = it->second;
    } else {
      uint32_t created = uint32_t(nodes.size());
      children.insert(it, {byte, created});
      nodes.emplace_back();
      node = created;
    }
  }
  if (nodes[node].pattern < 0) {  // the first of duplicate patterns is the one reported
    nodes[node].pattern = int32_t(patterns.size());
  }
  patterns.push_back(id);
  first_byte[uint8_t(pattern[0])] = true;
}

bool AddedVocabulary::Matcher::next(std::string_view text, size_t from, size_t& begin, size_t& end,
                                    uint32_t& id) const {
  for (size_t start = from; start < text.size(); ++start) {
    if (!first_byte[uint8_t(text[start])]) continue;
    uint32_t node = 0;
    int32_t best = -1;
    size_t best_end = 0;
    for (size_t i = start; i < text.size(); ++i) {
      const auto& children = nodes[node].children;
      uint8_t byte = uint8_t(text[i]);
      auto it = std::lower_bound(children.begin(), children.end(), byte,
                                 [](const auto& child, uint8_t b) { return child.first < b; });
      if (it == children.end() || it->first != byte) break;
      node = it->second;
      if (nodes[node].pattern >= 0) {
        best = nodes[node].pattern;
        best_end = i + 1;
      }
    }
    if (best >= 0) {
      begin = start;
      end = best_end;
      id = patterns[size_t(best)];
      return true;
    }
  }
  return false;
}

AddedVocabulary::AddedVocabulary(const std::vector<AddedToken>& tokens, const BpeModel& model,
                                 const Normalizer& normalizer, const std::string& where) {
  // AddedVocabulary::add_tokens of `tokenizers` 0.23, step by step: ids for contents the model
  // (or an earlier added token) has, new ids from the model's size on; a later token with the
  // same content replaces the earlier one's flags.
  std::map<uint32_t, AddedToken> by_id;
  std::map<uint32_t, std::string> normalized_forms;
  std::set<std::string, std::less<>> special_set;
  const auto model_size = uint32_t(model.size());
  uint32_t next_id = model_size;
  std::string normalized_content, tmp;
  for (const AddedToken& t : tokens) {
    if (t.content.empty()) continue;
    if (auto it = ids_by_content_.find(t.content); it != ids_by_content_.end()) {
      auto existing = by_id.find(it->second);
      if (existing != by_id.end() && existing->second == t) continue;  // already there, same flags
    }
    uint32_t id;
    if (auto it = ids_by_content_.find(t.content); it != ids_by_content_.end()) {
      id = it->second;
    } else if (auto known = model.token_to_id(t.content)) {
      id = *known;
    } else {
      id = next_id++;
    }
    if (t.normalized && !normalizer.empty()) {
      std::string_view normed = normalizer.apply(t.content, normalized_content, tmp);
      if (normed != t.content) normalized_forms[id] = std::string(normed);
    }
    ids_by_content_.insert_or_assign(t.content, id);
    if (t.special) special_set.insert(t.content);
    AddedToken stored = t;
    stored.id = id;
    by_id.insert_or_assign(id, stored);
  }
  for (auto& [id, token] : by_id) {
    max_id_ = std::max(max_id_, id);
    auto form = normalized_forms.find(id);
    token.decode_form = form != normalized_forms.end() ? form->second : token.content;
    by_id_.push_back(token);
  }
  special_contents_.assign(special_set.begin(), special_set.end());

  // The matching sets: each token as it stands last, in the set its `normalized` flag picks.
  for (const AddedToken& t : by_id_) {
    if (!t.normalized) {
      raw_.add(t.content, t.id);
      continue;
    }
    std::string_view pattern = normalizer.apply(t.content, normalized_content, tmp);
    if (pattern.empty()) fail("{}: {:?} normalizes to nothing and could never match", where, t.content);
    normalized_.add(pattern, t.id);
  }
}

std::optional<uint32_t> AddedVocabulary::token_to_id(std::string_view content) const {
  auto it = ids_by_content_.find(content);
  if (it == ids_by_content_.end()) return std::nullopt;
  return it->second;
}

const AddedToken* AddedVocabulary::find(uint32_t id) const {
  auto it = std::lower_bound(by_id_.begin(), by_id_.end(), id, [](const AddedToken& t, uint32_t v) { return t.id < v; });
  return (it != by_id_.end() && it->id == id) ? &*it : nullptr;
}

bool AddedVocabulary::is_special(std::string_view content) const {
  return std::binary_search(special_contents_.begin(), special_contents_.end(), content);
}

namespace {

// `\w$` on text[..end] / `^\w` on text[begin..].
bool word_before(std::string_view text, size_t end) {
  if (end == 0) return false;
  size_t pos = end;
  return is_regex_word_char(utf8::previous_code_point(text, pos));
}
bool word_after(std::string_view text, size_t begin) {
  if (begin >= text.size()) return false;
  size_t pos = begin;
  return is_regex_word_char(utf8::next_code_point(text, pos));
}
// Start of the whitespace run that ends at `end` (`\s*$` on text[..end]).
size_t whitespace_start_before(std::string_view text, size_t end) {
  size_t pos = end;
  while (pos > 0) {
    size_t prev = pos;
    if (!is_regex_space(utf8::previous_code_point(text, prev))) break;
    pos = prev;
  }
  return pos;
}
// End of the whitespace run that starts at `begin` (`^\s*` on text[begin..]).
size_t whitespace_end_after(std::string_view text, size_t begin) {
  size_t pos = begin;
  while (pos < text.size()) {
    size_t next = pos;
    if (!is_regex_space(utf8::next_code_point(text, next))) break;
    pos = next;
  }
  return pos;
}

}  // namespace

void AddedVocabulary::split(std::string_view text, bool normalized_set, std::vector<TextSegment>& out) const {
  const Matcher& matcher = normalized_set ? normalized_ : raw_;
  size_t start_offset = 0, from = 0, begin = 0, end = 0;
  uint32_t id = 0;
  while (matcher.next(text, from, begin, end, id)) {
    from = end;  // the next search starts after this match, whatever becomes of it
    const AddedToken* token = find(id);
    size_t start = begin, stop = end;
    if (token->single_word && (word_before(text, start) || word_after(text, stop))) continue;
    if (token->lstrip) start = std::max(whitespace_start_before(text, start), start_offset);
    if (token->rstrip) stop = whitespace_end_after(text, stop);
    if (start_offset < start) out.push_back(TextSegment{uint32_t(start_offset), uint32_t(start), -1});
    out.push_back(TextSegment{uint32_t(start), uint32_t(stop), int64_t(id)});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back(TextSegment{uint32_t(start_offset), uint32_t(text.size()), -1});
}

}  // namespace exatrain::tok
