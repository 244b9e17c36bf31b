// Added tokens (tokenizer.json "added_tokens"), matched the way `tokenizers` matches them:
// tokens with normalized=false on the raw text first, then tokens with normalized=true on each
// normalized remaining piece; leftmost-longest, non-overlapping; single_word rejects a match
// with a word character (Rust regex \w) right before or after it in the same piece; lstrip and
// rstrip absorb the adjacent whitespace (\s); a rejected match is not rescanned.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/bpe.h"

namespace exatrain::tok {

class Normalizer;

struct AddedToken {
  std::string content;
  uint32_t id = 0;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
  // What decode and id_to_token give for this id: the normalized content for a token with
  // normalized=true that the normalizer changes (as tokenizers 0.23 does), else the content.
  std::string decode_form;
  bool operator==(const AddedToken& o) const {  // id excluded, as in `tokenizers`
    return content == o.content && single_word == o.single_word && lstrip == o.lstrip && rstrip == o.rstrip &&
           normalized == o.normalized && special == o.special;
  }
};

// A stretch of text: either plain text (id < 0) or one added token.
struct TextSegment {
  uint32_t begin, end;
  int64_t id;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // `tokens` in file order; their ids come from the model's vocabulary or are assigned from the
  // model's size on, as `tokenizers` assigns them (the file's "id" fields are not trusted).
  AddedVocabulary(const std::vector<AddedToken>& tokens, const BpeModel& model, const Normalizer& normalizer,
                  const std::string& where);

  bool has_raw_patterns() const { return !raw_.patterns.empty(); }
  bool has_normalized_patterns() const { return !normalized_.patterns.empty(); }
  // Splits `text` at the tokens of the raw (normalized=false) or normalized set, appending
  // segments that cover it, in order.
  void split(std::string_view text, bool normalized_set, std::vector<TextSegment>& out) const;

  std::optional<uint32_t> token_to_id(std::string_view content) const;
  const AddedToken* find(uint32_t id) const;  // the token that holds `id`, if any
  bool is_special(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return by_id_; }  // sorted by id
  uint32_t max_id() const { return max_id_; }

 private:
  // A byte trie over the patterns, matched leftmost-longest.
  struct Matcher {
    struct Node {
      std::vector<std::pair<uint8_t, uint32_t>> children;  // sorted by byte
      int32_t pattern = -1;
    };
    std::vector<Node> nodes{Node{}};
    std::vector<uint32_t> patterns;  // pattern index -> token id
    bool first_byte[256] = {};
    void add(std::string_view pattern, uint32_t id);
    // Finds the leftmost-longest match at or after `from`; returns false when there is none.
    bool next(std::string_view text, size_t from, size_t& begin, size_t& end, uint32_t& id) const;
  };

  StringIdMap ids_by_content_;           // added_tokens_map
  std::vector<AddedToken> by_id_;        // added_tokens_map_r, sorted by id
  std::vector<std::string> special_contents_;
  Matcher raw_, normalized_;
  uint32_t max_id_ = 0;
};

// Rust regex \w (Alphabetic, marks, decimal digits, connector punctuation, Join_Control) and \s
// (White_Space), through ICU.
bool is_regex_word_char(char32_t cp);
bool is_regex_space(char32_t cp);

}  // namespace exatrain::tok
