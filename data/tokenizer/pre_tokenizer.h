// Pre-tokenizers of tokenizer.json: Split (a regex or a literal, five delimiter behaviors,
// invert), ByteLevel (add_prefix_space, use_regex with the GPT-2 pattern) and Sequence (the
// steps in order). ByteLevel's byte-to-character mapping is deferred: pieces stay raw bytes
// until a later step needs the mapped text, and the BPE model maps them (or its cache answers).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/onig_regex.h"

namespace exatrain::tok {

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// The GPT-2 pattern ByteLevel splits with when use_regex is true.
inline constexpr std::string_view kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// One pre-token: bytes [begin, begin + length) of the input text or of the scratch arena.
struct PieceRef {
  uint32_t begin;
  uint32_t length;
  bool in_arena;
};

// A match or a gap between matches, as a split sees them.
struct SplitEntry {
  uint32_t begin, end;
  bool is_match;
};

struct PreTokenizeScratch {
  std::vector<PieceRef> pieces;
  std::vector<PieceRef> next;
  std::vector<Span> matches;
  std::vector<SplitEntry> entries, merged;
  std::string arena;
  RegexScratch regex;
  std::string_view text;

  std::string_view view(const PieceRef& p) const {
    return std::string_view(p.in_arena ? arena.data() : text.data(), p.in_arena ? arena.size() : text.size())
        .substr(p.begin, p.length);
  }
};

class PreTokenizer {
 public:
  PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  ~PreTokenizer();

  void add_split(std::string_view regex, SplitBehavior behavior, bool invert);
  void add_byte_level(bool add_prefix_space, bool use_regex);

  bool empty() const { return steps_.empty(); }
  // Whether the pieces left by run() still need the byte-level mapping before the model sees them
  // (the last step is ByteLevel).
  bool maps_bytes() const { return maps_bytes_; }

  // Pre-tokenizes `text` into scratch.pieces (empty pieces are dropped, as in `tokenizers`).
  void run(std::string_view text, PreTokenizeScratch& scratch) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
  bool maps_bytes_ = false;
};

}  // namespace exatrain::tok
