// Step 2 of BPE training: learn the merges from the word counts (see bpe_trainer.h).
//
// This follows BpeTrainer::do_train of `tokenizers` step by step, including what decides ties
// and duplicates: a heap entry carries the words where its pair was (newly) seen; a popped entry
// whose count is stale is pushed back with the current count; merging a pair does not lower that
// pair's own count; a merge whose token already exists reuses its id and, in the saved model, a
// pair merged twice keeps only its last rank.
#include <algorithm>
#include <bit>
#include <unordered_map>

#include "data/tokenizer/bpe_trainer.h"
#include "data/tokenizer/byte_level.h"
#include "data/tokenizer/onig_regex.h"
#include "trainer/core/error.h"

namespace exatrain {

namespace {

using Pair = uint64_t;  // (left id << 32) | right id: ordering by key is ordering by (left, right)
inline Pair make_pair_key(uint32_t a, uint32_t b) { return (uint64_t(a) << 32) | b; }
inline uint32_t left_of(Pair p) { return uint32_t(p >> 32); }
inline uint32_t right_of(Pair p) { return uint32_t(p); }

// An open-addressing map from pairs to V (no erase; the key ~0 marks an empty slot, a pair no
// vocabulary can hold).
template <class V>
class PairMap {
 public:
  static constexpr Pair kEmpty = ~Pair(0);

  V& operator[](Pair key) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    size_t i = index(key);
    while (slots_[i].key != key) {
      if (slots_[i].key == kEmpty) {
        slots_[i].key = key;
        slots_[i].value = V{};
        ++size_;
        break;
      }
      i = (i + 1) & mask_;
    }
    return slots_[i].value;
  }
  V get(Pair key) const {
    if (slots_.empty()) return V{};
    for (size_t i = index(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return slots_[i].value;
      if (slots_[i].key == kEmpty) return V{};
    }
  }
  template <class F>
  void for_each(F&& f) {
    for (auto& s : slots_) {
      if (s.key != kEmpty) f(s.key, s.value);
    }
  }

 private:
  struct Slot {
    Pair key = kEmpty;
    V value{};
  };
  size_t index(Pair key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    size_t capacity = old.empty() ? 1024 : old.size() * 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    shift_ = 64 - std::countr_zero(capacity);
    for (auto& s : old) {
      if (s.key == kEmpty) continue;
      size_t i = index(s.key);
      while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
      slots_[i] = std::move(s);
    }
  }
  std::vector<Slot> slots_;
  size_t size_ = 0, mask_ = 0;
  int shift_ = 64;
};

// A heap entry of the merge queue (tokenizers' `Merge`): max count first, ties to the smallest pair.
struct Entry {
  uint64_t count;
  Pair pair;
  std::vector<uint32_t> words;  // indices of the words where the pair was seen
};
struct EntryLess {
  bool operator()(const Entry& x, const Entry& y) const {
    if (x.count != y.count) return x.count < y.count;
    return x.pair > y.pair;
  }
};

// The words as symbol ids, in one flat array (each word keeps its first slot; merging shrinks it).
struct Words {
  std::vector<uint32_t> symbols;
  std::vector<uint64_t> begin;
  std::vector<uint32_t> length;
  std::vector<uint64_t> count;
};

struct Change {
  Pair pair;
  int32_t delta;
};

// Word::merge of tokenizers: replaces every (a, b), left to right, and reports the pairs that
// disappeared (-1) and appeared (+1) around each replacement (not (a, b) itself).
void merge_word(Words& w, uint32_t word, uint32_t a, uint32_t b, uint32_t replacement, std::vector<Change>& changes) {
  uint32_t* s = w.symbols.data() + w.begin[word];
  uint32_t len = w.length[word];
  for (uint32_t i = 0; i < len; ++i) {
    if (s[i] != a || i + 1 >= len || s[i + 1] != b) continue;
    const uint32_t first = s[i], second = s[i + 1];
    if (i > 0) {
      changes.push_back({make_pair_key(s[i - 1], first), -1});
      changes.push_back({make_pair_key(s[i - 1], replacement), 1});
    }
    s[i] = replacement;
    std::copy(s + i + 2, s + len, s + i + 1);
    --len;
    if (i + 1 < len) {
      changes.push_back({make_pair_key(second, s[i + 1]), -1});
      changes.push_back({make_pair_key(replacement, s[i + 1]), 1});
    }
  }
  w.length[word] = len;
}

std::vector<std::string> distinct_specials(const std::vector<std::string>& specials) {
  std::vector<std::string> out;
  for (const auto& s : specials) {
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

}  // namespace

void validate_trainer_options(const BpeTrainerOptions& o) {
  for (const auto& s : o.special_tokens) {
    if (s.empty()) fail("tokenizer train: a special token is empty (check --special-tokens)");
  }
  const size_t specials = distinct_specials(o.special_tokens).size();
  if (o.vocab_size < specials + 256)
    fail("tokenizer train: --vocab-size {} is smaller than the {} special token(s) + 256 byte tokens; use at least {}",
         o.vocab_size, specials, specials + 256);
  if (o.vocab_size > (1u << 31)) fail("tokenizer train: --vocab-size {} is too large", o.vocab_size);
  tok::OnigRegex check(o.split_pattern);  // throws with Oniguruma's message
}

TrainedBpe train_bpe(const WordCounts& word_counts, const BpeTrainerOptions& options) {
  validate_trainer_options(options);
  TrainedBpe out;
  out.special_tokens = distinct_specials(options.special_tokens);

  // 1. Special tokens, 2. the 256 byte characters sorted by code point.
  std::vector<std::string>& id_to_word = out.vocab;
  std::unordered_map<std::string, uint32_t> word_to_id;
  auto add_token = [&](const std::string& token) {
    if (word_to_id.count(token)) return;
    word_to_id.emplace(token, uint32_t(id_to_word.size()));
    id_to_word.push_back(token);
  };
  for (const auto& s : out.special_tokens) add_token(s);
  std::vector<int> bytes(256);
  for (int b = 0; b < 256; ++b) bytes[b] = b;
  std::sort(bytes.begin(), bytes.end(),
            [](int x, int y) { return byte_level::char_for_byte(uint8_t(x)) < byte_level::char_for_byte(uint8_t(y)); });
  for (int b : bytes) add_token(std::string(byte_level::utf8_for_byte(uint8_t(b))));
  uint32_t byte_id[256];
  for (int b = 0; b < 256; ++b) byte_id[b] = word_to_id.at(std::string(byte_level::utf8_for_byte(uint8_t(b))));

  // 3. Words as symbol ids (words of one byte have no pair and never matter).
  Words words;
  word_counts.for_each([&](std::string_view word, uint64_t count) {
    if (word.size() < 2) return;
    words.begin.push_back(words.symbols.size());
    words.length.push_back(uint32_t(word.size()));
    words.count.push_back(count);
    for (unsigned char c : word) words.symbols.push_back(byte_id[c]);
  });
  const size_t n_words = words.count.size();

  // 4. Count pairs, with the words each pair occurs in.
  PairMap<int64_t> pair_counts;
  PairMap<uint32_t> where_index;  // pair -> 1 + index into `where`
  std::vector<std::pair<Pair, std::vector<uint32_t>>> where;
  for (uint32_t i = 0; i < n_words; ++i) {
    const uint32_t* s = words.symbols.data() + words.begin[i];
    for (uint32_t j = 0; j + 1 < words.length[i]; ++j) {
      const Pair p = make_pair_key(s[j], s[j + 1]);
      pair_counts[p] += int64_t(words.count[i]);
      uint32_t& idx = where_index[p];
      if (idx == 0) {
        where.push_back({p, {}});
        idx = uint32_t(where.size());
      }
      auto& list = where[idx - 1].second;
      if (list.empty() || list.back() != i) list.push_back(i);
    }
  }
  std::vector<Entry> queue;
  queue.reserve(where.size());
  for (auto& [p, list] : where) {
    const int64_t c = pair_counts.get(p);
    if (c > 0) queue.push_back(Entry{uint64_t(c), p, std::move(list)});
  }
  where = {};
  where_index = {};
  std::make_heap(queue.begin(), queue.end(), EntryLess{});

  // 5. Merge.
  std::vector<std::pair<Pair, uint32_t>> merges;  // (pair, new id), with repeats
  std::unordered_map<Pair, std::vector<uint32_t>> new_where;
  std::vector<Change> changes;
  size_t last_reported = 0;
  while (id_to_word.size() < options.vocab_size && !queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), EntryLess{});
    Entry top = std::move(queue.back());
    queue.pop_back();
    const uint64_t current = uint64_t(pair_counts.get(top.pair));
    if (top.count != current) {
      top.count = current;
      queue.push_back(std::move(top));
      std::push_heap(queue.begin(), queue.end(), EntryLess{});
      continue;
    }
    if (top.count < 1 || options.min_frequency > top.count) break;

    const uint32_t a = left_of(top.pair), b = right_of(top.pair);
    std::string token = id_to_word[a] + id_to_word[b];
    auto found = word_to_id.find(token);
    uint32_t new_id;
    if (found != word_to_id.end()) {
      new_id = found->second;
    } else {
      new_id = uint32_t(id_to_word.size());
      word_to_id.emplace(token, new_id);
      id_to_word.push_back(std::move(token));
    }
    merges.push_back({top.pair, new_id});

    for (uint32_t w : top.words) {
      changes.clear();
      merge_word(words, w, a, b, new_id, changes);
      const int64_t count = int64_t(words.count[w]);
      for (const Change& c : changes) {
        pair_counts[c.pair] += c.delta * count;
        if (c.delta > 0) {
          auto& list = new_where[c.pair];
          if (list.empty() || list.back() != w) list.push_back(w);
        }
      }
    }
    for (auto& [p, list] : new_where) {
      const int64_t c = pair_counts.get(p);
      if (c > 0) {
        queue.push_back(Entry{uint64_t(c), p, std::move(list)});
        std::push_heap(queue.begin(), queue.end(), EntryLess{});
      }
    }
    new_where.clear();
    if (options.progress && (id_to_word.size() - last_reported >= 256 || id_to_word.size() >= options.vocab_size)) {
      last_reported = id_to_word.size();
      options.progress("merges", id_to_word.size(), options.vocab_size);
    }
  }
  if (options.progress) options.progress("merges", id_to_word.size(), id_to_word.size());

  // A pair merged more than once keeps its last rank (the model stores merges in a map).
  std::unordered_map<Pair, size_t> last_rank;
  for (size_t r = 0; r < merges.size(); ++r) last_rank[merges[r].first] = r;
  for (size_t r = 0; r < merges.size(); ++r) {
    const Pair p = merges[r].first;
    if (last_rank[p] == r) out.merges.push_back({id_to_word[left_of(p)], id_to_word[right_of(p)]});
  }
  return out;
}

}  // namespace exatrain
