// The BPE model of tokenizer.json, merging as `tokenizers` does: a merge's rank is its position
// in `merges` (a later duplicate wins); the pair of lowest rank merges first, ties to the
// leftmost; unknown characters become byte-fallback tokens, the unk token (fused or not) or
// nothing; continuing_subword_prefix / end_of_word_suffix; ignore_merges. Dropout is not
// supported (it is random).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace exatrain::tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>>;

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::optional<std::string> continuing_subword_prefix;
  std::optional<std::string> end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

// Scratch space of one thread's tokenize calls (reused, so a call allocates nothing once warm).
struct BpeScratch {
  struct Symbol {
    uint32_t id;
    int32_t prev, next;
    uint32_t length;  // bytes of the word; 0 once merged into its left neighbour
  };
  struct Candidate {
    uint32_t rank, pos, new_id;
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::string buffer;
};

class BpeModel {
 public:
  // `where` names the JSON object in error messages (e.g. "tokenizer.json: model").
  BpeModel(std::vector<std::pair<std::string, uint32_t>> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           const std::string& where);

  size_t size() const { return vocab_.size(); }
  uint32_t max_id() const { return max_id_; }
  std::optional<uint32_t> token_to_id(std::string_view token) const;
  const std::string* id_to_token(uint32_t id) const;
  const BpeOptions& options() const { return options_; }

  // Appends the ids of one pre-token, written in the vocabulary's characters.
  void tokenize(std::string_view word, std::vector<uint32_t>& out, BpeScratch& scratch) const;

 private:
  struct MergeTable {
    std::vector<uint64_t> keys;    // (left << 32) | right; kEmpty when unused
    std::vector<uint64_t> values;  // (rank << 32) | new_id
    uint64_t mask = 0;
    void build(const std::vector<std::pair<uint64_t, uint64_t>>& entries);
    bool find(uint32_t left, uint32_t right, uint32_t& rank, uint32_t& new_id) const;
  };
  void build_symbols(std::string_view word, BpeScratch& scratch) const;
  void merge_all(BpeScratch& scratch) const;

  StringIdMap vocab_;
  std::vector<const std::string*> tokens_by_id_;
  uint32_t max_id_ = 0;
  MergeTable merges_;
  BpeOptions options_;
  bool plain_symbols_;                // no prefix/suffix: a symbol is just its character
  std::vector<int32_t> small_char_ids_;  // id of each code point < 0x800 as a token, or -1
  std::string where_;
};

// Remembers the ids of recent pre-tokens (one per thread). Entries only speed things up: the
// ids are those the model computes.
class BpeCache {
 public:
  explicit BpeCache(size_t capacity = size_t(1) << 16);
  static constexpr size_t kMaxKeyLength = 256;
  static uint64_t hash(std::string_view key) { return std::hash<std::string_view>{}(key); }
  // Appends the cached ids of `key` to `out` and returns true, or returns false.
  bool lookup(std::string_view key, uint64_t hash, std::vector<uint32_t>& out) const;
  void insert(std::string_view key, uint64_t hash, std::span<const uint32_t> ids);
  size_t size() const { return count_; }

 private:
  struct Slot {
    uint64_t hash;
    uint32_t key_begin, key_length, ids_begin, ids_length;
  };
  static constexpr uint32_t kEmpty = 0xFFFFFFFFu;
  void clear();
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<uint32_t> ids_;
  size_t count_ = 0;
  size_t capacity_;
};

}  // namespace exatrain::tok
