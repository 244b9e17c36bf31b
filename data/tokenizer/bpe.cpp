#include "data/tokenizer/bpe.h"

#include <algorithm>
#include <cstdio>

#include "trainer/core/utf8.h"
#include "trainer/core/error.h"

namespace exatrain::tok {

namespace {

constexpr uint64_t kEmptyKey = ~uint64_t(0);
constexpr uint32_t kMaxId = (1u << 28) - 1;  // ids are dense in practice; this bounds the id table

inline uint64_t mix(uint64_t x) {  // murmur3's finalizer
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// Min-heap order on (rank, pos), as the merge queue of `tokenizers`' Word::merge_all.
struct CandidateAfter {
  bool operator()(const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

}  // namespace

void BpeModel::MergeTable::build(const std::vector<std::pair<uint64_t, uint64_t>>& entries) {
  size_t capacity = 16;
  while (capacity < entries.size() * 2) capacity *= 2;
  keys.assign(capacity, kEmptyKey);
  values.assign(capacity, 0);
  mask = capacity - 1;
  for (const auto& [key, value] : entries) {
    for (uint64_t i = mix(key) & mask;; i = (i + 1) & mask) {
      if (keys[i] == kEmptyKey || keys[i] == key) {  // a later duplicate overwrites
        keys[i] = key;
        values[i] = value;
        break;
      }
    }
  }
}

inline bool BpeModel::MergeTable::find(uint32_t left, uint32_t right, uint32_t& rank, uint32_t& new_id) const {
  uint64_t key = (uint64_t(left) << 32) | right;
  for (uint64_t i = mix(key) & mask;; i = (i + 1) & mask) {
    if (keys[i] == key) {
      rank = uint32_t(values[i] >> 32);
      new_id = uint32_t(values[i]);
      return true;
    }
    if (keys[i] == kEmptyKey) return false;
  }
}

BpeModel::BpeModel(std::vector<std::pair<std::string, uint32_t>> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
                   const std::string& where)
    : options_(std::move(options)), where_(where) {
  auto empty_as_null = [](std::optional<std::string>& s) {
    if (s && s->empty()) s.reset();  // `tokenizers` treats "" like null
  };
  empty_as_null(options_.continuing_subword_prefix);
  empty_as_null(options_.end_of_word_suffix);
  plain_symbols_ = !options_.continuing_subword_prefix && !options_.end_of_word_suffix;

  vocab_.reserve(vocab.size());
  for (auto& [token, id] : vocab) {
    if (id > kMaxId) fail("{}.vocab: id {} of {:?} is too large (at most {})", where, id, token, kMaxId);
    max_id_ = std::max(max_id_, id);
    vocab_.insert_or_assign(std::move(token), id);
  }
  tokens_by_id_.assign(vocab_.empty() ? 0 : size_t(max_id_) + 1, nullptr);
  for (const auto& [token, id] : vocab_) tokens_by_id_[id] = &token;

  const size_t prefix_length = options_.continuing_subword_prefix ? options_.continuing_subword_prefix->size() : 0;
  std::vector<std::pair<uint64_t, uint64_t>> entries;
  entries.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto a_id = token_to_id(a);
    if (!a_id) fail("{}.merges[{}]: {:?} is not in the vocabulary", where, rank, a);
    auto b_id = token_to_id(b);
    if (!b_id) fail("{}.merges[{}]: {:?} is not in the vocabulary", where, rank, b);
    if (b.size() < prefix_length) fail("{}.merges[{}]: {:?} is shorter than the continuing_subword_prefix", where, rank, b);
    std::string merged = a + b.substr(prefix_length);
    auto new_id = token_to_id(merged);
    if (!new_id) fail("{}.merges[{}]: the merged token {:?} is not in the vocabulary", where, rank, merged);
    entries.emplace_back((uint64_t(*a_id) << 32) | *b_id, (uint64_t(rank) << 32) | *new_id);
  }
  merges_.build(entries);

  if (plain_symbols_) {
    small_char_ids_.assign(0x800, -1);
    for (const auto& [token, id] : vocab_) {
      if (token.empty() || token.size() > 2 || utf8::sequence_length(uint8_t(token[0])) != token.size()) continue;
      size_t pos = 0;
      char32_t cp = utf8::next_code_point(token, pos);
      if (cp < 0x800) small_char_ids_[cp] = int32_t(id);
    }
  }
}

std::optional<uint32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(uint32_t id) const {
  return id < tokens_by_id_.size() ? tokens_by_id_[id] : nullptr;
}

void BpeModel::build_symbols(std::string_view word, BpeScratch& s) const {
  s.symbols.clear();
  // The pending unknown run, as in `tokenizers`' BPE::merge_word (byte-fallback tokens do not
  // flush it, so they can come before it).
  bool have_unk = false;
  uint32_t unk_id = 0, unk_length = 0;
  auto add = [&](uint32_t id, uint32_t length) {
    int32_t index = int32_t(s.symbols.size());
    s.symbols.push_back(BpeScratch::Symbol{id, index - 1, index + 1, length});
  };
  auto lookup_unk = [&]() -> uint32_t {
    auto id = token_to_id(*options_.unk_token);
    if (!id) fail("{}.unk_token {:?} is not in the vocabulary", where_, *options_.unk_token);
    return *id;
  };
  size_t i = 0;
  while (i < word.size()) {
    size_t length = std::min(utf8::sequence_length(uint8_t(word[i])), word.size() - i);
    std::string_view ch = word.substr(i, length);
    bool is_first = i == 0;
    i += length;
    bool is_last = i >= word.size();

    std::string_view symbol = ch;
    int64_t id = -1;
    if (plain_symbols_) {
      size_t pos = 0;
      char32_t cp = length == 1 || length == 2 ? utf8::next_code_point(ch, pos) : 0x800;
      if (cp < 0x800) {
        id = small_char_ids_[cp];
      } else if (auto found = token_to_id(ch)) {
        id = *found;
      }
    } else {
      s.buffer.clear();
      if (!is_first && options_.continuing_subword_prefix) s.buffer += *options_.continuing_subword_prefix;
      s.buffer += ch;
      if (is_last && options_.end_of_word_suffix) s.buffer += *options_.end_of_word_suffix;
      symbol = s.buffer;
      if (auto found = token_to_id(symbol)) id = *found;
    }

    if (id >= 0) {
      if (have_unk) {
        add(unk_id, unk_length);
        have_unk = false;
      }
      add(uint32_t(id), uint32_t(length));
      continue;
    }
    if (options_.byte_fallback) {
      // Every byte of the symbol (prefix and suffix included, as `tokenizers` does) as <0xXX>.
      uint32_t byte_ids[64];
      bool all = symbol.size() <= 64;
      for (size_t k = 0; all && k < symbol.size(); ++k) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", unsigned(uint8_t(symbol[k])));
        auto found = token_to_id(name);
        if (found) {
          byte_ids[k] = *found;
        } else {
          all = false;
        }
      }
      if (all) {
        for (size_t k = 0; k < symbol.size(); ++k) add(byte_ids[k], 1);
        continue;
      }
    }
    if (options_.unk_token) {
      if (have_unk && options_.fuse_unk) {
        unk_length += uint32_t(length);
      } else {
        if (have_unk) add(unk_id, unk_length);
        unk_id = lookup_unk();
        unk_length = uint32_t(length);
        have_unk = true;
      }
    }
  }
  if (have_unk) add(unk_id, unk_length);
  if (!s.symbols.empty()) s.symbols.back().next = -1;
}

void BpeModel::merge_all(BpeScratch& s) const {
  auto& symbols = s.symbols;
  auto& heap = s.heap;
  heap.clear();
  const int32_t n = int32_t(symbols.size());
  uint32_t rank, new_id;
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (merges_.find(symbols[i].id, symbols[i + 1].id, rank, new_id)) heap.push_back({rank, uint32_t(i), new_id});
  }
  std::make_heap(heap.begin(), heap.end(), CandidateAfter{});
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), CandidateAfter{});
    BpeScratch::Candidate top = heap.back();
    heap.pop_back();
    BpeScratch::Symbol& current = symbols[top.pos];
    if (current.length == 0 || current.next == -1) continue;
    const int32_t next_pos = current.next;
    const BpeScratch::Symbol right = symbols[next_pos];
    // Skip stale entries: the pair at this position changed since it was queued.
    if (!merges_.find(current.id, right.id, rank, new_id) || new_id != top.new_id) continue;
    current.id = top.new_id;
    current.length += right.length;
    current.next = right.next;
    symbols[next_pos].length = 0;
    if (right.next >= 0 && right.next < n) symbols[right.next].prev = int32_t(top.pos);
    if (current.prev >= 0 && merges_.find(symbols[current.prev].id, current.id, rank, new_id)) {
      heap.push_back({rank, uint32_t(current.prev), new_id});
      std::push_heap(heap.begin(), heap.end(), CandidateAfter{});
    }
    if (current.next >= 0 && current.next < n && merges_.find(current.id, symbols[current.next].id, rank, new_id)) {
      heap.push_back({rank, top.pos, new_id});
      std::push_heap(heap.begin(), heap.end(), CandidateAfter{});
    }
  }
}

void BpeModel::tokenize(std::string_view word, std::vector<uint32_t>& out, BpeScratch& s) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto id = token_to_id(word)) {
      out.push_back(*id);
      return;
    }
  }
  build_symbols(word, s);
  merge_all(s);
  for (const auto& symbol : s.symbols) {
    if (symbol.length != 0) out.push_back(symbol.id);
  }
}

BpeCache::BpeCache(size_t capacity) : capacity_(capacity) { clear(); }

void BpeCache::clear() {
  size_t slots = 16;
  while (slots < capacity_ * 2) slots *= 2;
  slots_.assign(slots, Slot{0, 0, kEmpty, 0, 0});
  keys_.clear();
  ids_.clear();
  count_ = 0;
}

bool BpeCache::lookup(std::string_view key, uint64_t hash, std::vector<uint32_t>& out) const {
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& slot = slots_[i];
    if (slot.key_length == kEmpty) return false;
    if (slot.hash == hash && slot.key_length == key.size() &&
        std::string_view(keys_.data() + slot.key_begin, slot.key_length) == key) {
      out.insert(out.end(), ids_.begin() + slot.ids_begin, ids_.begin() + slot.ids_begin + slot.ids_length);
      return true;
    }
  }
}

void BpeCache::insert(std::string_view key, uint64_t hash, std::span<const uint32_t> ids) {
  if (key.size() > kMaxKeyLength) return;
  // Full: start over (the arenas stay bounded; a cache miss only costs time).
  if (count_ >= capacity_ || keys_.size() + key.size() > 0xFFFFFFF0u || ids_.size() + ids.size() > 0xFFFFFFF0u) clear();
  const size_t mask = slots_.size() - 1;
  size_t i = hash & mask;
  while (slots_[i].key_length != kEmpty) {
    if (slots_[i].hash == hash && std::string_view(keys_.data() + slots_[i].key_begin, slots_[i].key_length) == key) return;
    i = (i + 1) & mask;
  }
  slots_[i] = Slot{hash, uint32_t(keys_.size()), uint32_t(key.size()), uint32_t(ids_.size()), uint32_t(ids.size())};
  keys_.append(key);
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  ++count_;
}

}  // namespace exatrain::tok
