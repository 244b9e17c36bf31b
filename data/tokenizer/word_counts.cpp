// Step 1 of BPE training: stream the files and count their pre-tokens (see bpe_trainer.h).
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>

#include "data/tokenizer/bpe_trainer.h"
#include "data/tokenizer/normalizer.h"
#include "data/tokenizer/pre_tokenizer.h"
#include "trainer/core/utf8.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"
#include "trainer/core/thread_pool.h"

namespace exatrain {

// ---- WordCounts: an open-addressing table of byte strings ---------------------------------------

namespace {
uint64_t hash_word(std::string_view word) { return std::hash<std::string_view>{}(word); }
}  // namespace

WordCounts::Slot* WordCounts::find_slot(std::string_view word, uint64_t hash) {
  return const_cast<Slot*>(std::as_const(*this).find_slot(word, hash));
}

const WordCounts::Slot* WordCounts::find_slot(std::string_view word, uint64_t hash) const {
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.count == 0) return &s;
    if (s.hash == hash && s.length == word.size() && std::memcmp(arena_.data() + s.offset, word.data(), word.size()) == 0)
      return &s;
  }
}

void WordCounts::rehash(size_t capacity) {
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(capacity, Slot{});
  const size_t mask = capacity - 1;
  for (const Slot& s : old) {
    if (s.count == 0) continue;
    size_t i = s.hash & mask;
    while (slots_[i].count != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void WordCounts::add(std::string_view word, uint64_t count) {
  if (count == 0) return;
  if (slots_.empty()) rehash(1024);
  if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
  const uint64_t hash = hash_word(word);
  Slot* s = find_slot(word, hash);
  if (s->count == 0) {
    s->hash = hash;
    s->offset = arena_.size();
    s->length = uint32_t(word.size());
    arena_.append(word);
    ++size_;
  }
  s->count += count;
}

void WordCounts::add_all(const WordCounts& other) {
  other.for_each([&](std::string_view word, uint64_t count) { add(word, count); });
}

uint64_t WordCounts::count(std::string_view word) const {
  if (slots_.empty()) return 0;
  return find_slot(word, hash_word(word))->count;
}

namespace {
// FNV-1a: a fixed hash (std::hash may change between library versions) that breaks ties between
// equally frequent words when pruning, so that which of them survive does not depend on the
// order they arrived in, yet no byte value is favoured.
uint64_t tie_break_hash(std::string_view word) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : word) h = (h ^ c) * 0x100000001b3ull;
  return h;
}
}  // namespace

std::pair<uint64_t, uint64_t> WordCounts::prune_to(size_t keep) {
  if (size_ <= keep) return {0, 0};
  struct Rank {
    uint64_t count, tie;
    const Slot* slot;
  };
  std::vector<Rank> ranks;
  ranks.reserve(size_);
  for (const Slot& s : slots_) {
    if (s.count) ranks.push_back(Rank{s.count, tie_break_hash(std::string_view(arena_.data() + s.offset, s.length)), &s});
  }
  // The `keep` most frequent words stay; ties at the cut are broken by the hash.
  auto more_frequent = [](const Rank& x, const Rank& y) { return x.count != y.count ? x.count > y.count : x.tie < y.tie; };
  std::nth_element(ranks.begin(), ranks.begin() + keep, ranks.end(), more_frequent);
  uint64_t largest_dropped = 0;
  for (size_t i = keep; i < ranks.size(); ++i) largest_dropped = std::max(largest_dropped, ranks[i].count);
  WordCounts kept;
  for (size_t i = 0; i < keep; ++i) {
    kept.add(std::string_view(arena_.data() + ranks[i].slot->offset, ranks[i].slot->length), ranks[i].count);
  }
  const uint64_t dropped = ranks.size() - keep;
  *this = std::move(kept);
  return {dropped, largest_dropped};
}

void WordCounts::clear() {
  std::fill(slots_.begin(), slots_.end(), Slot{});
  arena_.clear();
  size_ = 0;
}

// ---- Reading: batches of whole lines ------------------------------------------------------------

namespace {

// A line longer than this is counted in pieces of at most this many bytes (cut at a character
// boundary), so that memory stays bounded on files without newlines.
constexpr size_t kMaxLineBytes = size_t(8) << 20;
constexpr size_t kReadBlock = size_t(1) << 20;

// Where the bytes come from: files on disk, or texts in memory (tests).
struct Source {
  std::string name;
  const std::string* text = nullptr;  // in-memory source when set
};

struct Batch {
  std::string data;
  std::vector<size_t> line_ends;  // line k is [line_ends[k-1] (or 0), line_ends[k])
};

class BatchReader {
 public:
  BatchReader(std::vector<Source> sources, WordCountStats& stats) : sources_(std::move(sources)), stats_(stats) {}
  ~BatchReader() { close(); }

  // Fills `batch` with the next whole lines: up to and including the first line that reaches
  // `target` bytes (or whatever is left); false when everything has been read.
  bool next(Batch& batch, size_t target) {
    std::vector<char> block;
    while ((ends_.empty() || ends_.back() < target) && !exhausted_) {
      if (!open_ && !open_next()) {
        exhausted_ = true;
        break;
      }
      block.resize(kReadBlock);
      const size_t got = read_block(block.data(), block.size());
      const size_t line_start = ends_.empty() ? 0 : ends_.back();
      if (got == 0) {  // end of this source: its last line ends here, with or without '\n'
        if (buffer_.size() > line_start) ends_.push_back(buffer_.size());
        close();
        continue;
      }
      stats_.bytes += got;
      const size_t old = buffer_.size();
      buffer_.append(block.data(), got);
      for (size_t i = old; i < buffer_.size(); ++i) {
        if (buffer_[i] == '\n') ends_.push_back(i + 1);
      }
      for (size_t start = ends_.empty() ? 0 : ends_.back(); buffer_.size() - start > kMaxLineBytes;) {
        size_t cut = start + kMaxLineBytes;
        for (int back = 0; back < 3 && (uint8_t(buffer_[cut]) & 0xC0) == 0x80; ++back) --cut;
        ends_.push_back(cut);
        start = cut;
        ++stats_.long_lines_cut;
      }
    }
    if (ends_.empty()) return false;
    size_t k = 0;
    while (k + 1 < ends_.size() && ends_[k] < target) ++k;
    const size_t cut = ends_[k];
    batch.data.assign(buffer_, 0, cut);
    batch.line_ends.assign(ends_.begin(), ends_.begin() + k + 1);
    buffer_.erase(0, cut);
    ends_.erase(ends_.begin(), ends_.begin() + k + 1);
    for (size_t& e : ends_) e -= cut;
    stats_.lines += batch.line_ends.size();
    return true;
  }

 private:
  bool open_next() {
    if (next_source_ >= sources_.size()) return false;
    const Source& s = sources_[next_source_++];
    if (s.text) {
      memory_ = s.text;
      memory_pos_ = 0;
    } else {
      file_ = std::fopen(s.name.c_str(), "rb");
      if (!file_) fail("tokenizer train: cannot open '{}': {}", s.name, std::strerror(errno));
    }
    current_ = s.name;
    open_ = true;
    ++stats_.files;
    return true;
  }
  size_t read_block(char* out, size_t size) {
    if (memory_) {
      size_t n = std::min(size, memory_->size() - memory_pos_);
      std::memcpy(out, memory_->data() + memory_pos_, n);
      memory_pos_ += n;
      return n;
    }
    size_t n = std::fread(out, 1, size, file_);
    if (n < size && std::ferror(file_)) fail("tokenizer train: read error in '{}': {}", current_, std::strerror(errno));
    return n;
  }
  void close() {
    if (file_) std::fclose(file_);
    file_ = nullptr;
    memory_ = nullptr;
    open_ = false;
  }

  std::vector<Source> sources_;
  WordCountStats& stats_;
  size_t next_source_ = 0;
  bool open_ = false;
  FILE* file_ = nullptr;
  const std::string* memory_ = nullptr;
  size_t memory_pos_ = 0;
  std::string current_;
  bool exhausted_ = false;
  std::string buffer_;       // read but not yet handed out
  std::vector<size_t> ends_;  // ends of the complete lines in buffer_; after the last: a partial line
};

// ---- Counting: specials out, normalize, pre-tokenize --------------------------------------------

// Finds the special tokens in a text leftmost-longest and non-overlapping, as `tokenizers` matches
// added tokens with normalized=false.
class SpecialMatcher {
 public:
  explicit SpecialMatcher(const std::vector<std::string>& specials) : specials_(specials) {}
  // The next match at or after `from`: [begin, end); false if there is none.
  bool next(std::string_view text, size_t from, size_t& begin, size_t& end) const {
    begin = std::string_view::npos;
    end = 0;
    for (const std::string& s : specials_) {
      size_t at = text.find(s, from);
      if (at == std::string_view::npos) continue;
      if (at < begin || (at == begin && at + s.size() > end)) {
        begin = at;
        end = at + s.size();
      }
    }
    return begin != std::string_view::npos;
  }
  bool empty() const { return specials_.empty(); }

 private:
  std::vector<std::string> specials_;
};

struct Counter {
  const SpecialMatcher& specials;
  const tok::Normalizer& normalizer;
  const tok::PreTokenizer& pre_tokenizer;
  WordCounts words;
  WordCountStats stats;
  tok::PreTokenizeScratch scratch;
  std::string valid, normalized, tmp;

  void count_piece(std::string_view text) {
    if (text.empty()) return;
    std::string_view view = normalizer.empty() ? text : normalizer.apply(text, normalized, tmp);
    pre_tokenizer.run(view, scratch);
    for (const tok::PieceRef& p : scratch.pieces) words.add(scratch.view(p), 1);
    stats.pre_tokens += scratch.pieces.size();
  }

  void count_line(std::string_view line) {
    if (!utf8::is_valid(line)) {
      valid.clear();
      stats.invalid_utf8_sequences += utf8::append_replacing_invalid(line, valid);
      line = valid;
    }
    size_t pos = 0, begin = 0, end = 0;
    while (!specials.empty() && specials.next(line, pos, begin, end)) {
      count_piece(line.substr(pos, begin - pos));
      ++stats.special_tokens_skipped;
      pos = end;
    }
    count_piece(line.substr(pos));
  }
};

WordCounts count_sources(std::vector<Source> sources, const BpeTrainerOptions& options, WordCountStats* stats_out) {
  validate_trainer_options(options);
  uint64_t total_bytes = 0;
  for (const Source& s : sources) {
    if (s.text) {
      total_bytes += s.text->size();
      continue;
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(s.name, ec))
      fail("tokenizer train: '{}' is not a readable file (check the path)", s.name);
    total_bytes += std::filesystem::file_size(s.name, ec);
    FILE* probe = std::fopen(s.name.c_str(), "rb");
    if (!probe) fail("tokenizer train: cannot open '{}': {}", s.name, std::strerror(errno));
    std::fclose(probe);
  }

  tok::Normalizer normalizer = options.nfc ? tok::Normalizer({tok::NormalizationForm::NFC}) : tok::Normalizer();
  tok::PreTokenizer pre_tokenizer;
  pre_tokenizer.add_split(options.split_pattern, tok::SplitBehavior::Isolated, false);
  pre_tokenizer.add_byte_level(/*add_prefix_space=*/false, /*use_regex=*/false);
  SpecialMatcher specials(options.special_tokens);

  ThreadPool pool(resolve_thread_count(options.threads));
  const int threads = pool.threads();
  std::vector<std::unique_ptr<Counter>> counters;
  for (int t = 0; t < threads; ++t)
    counters.push_back(std::unique_ptr<Counter>(new Counter{specials, normalizer, pre_tokenizer, {}, {}, {}, {}, {}, {}}));

  WordCountStats stats;
  WordCounts words;
  BatchReader reader(std::move(sources), stats);
  Batch batch;
  const size_t batch_bytes = std::max<uint64_t>(1, options.batch_bytes);
  while (reader.next(batch, batch_bytes)) {
    // Threads take runs of about 256 KB of lines; each counts into its own table.
    std::vector<size_t> run_ends;  // line indices
    size_t run_start_byte = 0;
    for (size_t k = 0; k < batch.line_ends.size(); ++k) {
      if (batch.line_ends[k] - run_start_byte >= (size_t(256) << 10) || k + 1 == batch.line_ends.size()) {
        run_ends.push_back(k + 1);
        run_start_byte = batch.line_ends[k];
      }
    }
    std::atomic<size_t> next_run{0};
    const int used = int(std::min<size_t>(threads, run_ends.size()));
    pool.parallel_for(used, [&](size_t t) {  // one call per Counter; runs are taken dynamically
      Counter& c = *counters[t];
      for (size_t r = next_run++; r < run_ends.size(); r = next_run++) {
        size_t first = r == 0 ? 0 : run_ends[r - 1];
        for (size_t k = first; k < run_ends[r]; ++k) {
          size_t begin = k == 0 ? 0 : batch.line_ends[k - 1];
          c.count_line(std::string_view(batch.data).substr(begin, batch.line_ends[k] - begin));
        }
      }
    });
    // Merge in thread order; addition commutes, so the result does not depend on the threads.
    for (int t = 0; t < used; ++t) {
      words.add_all(counters[t]->words);
      counters[t]->words.clear();
    }
    if (options.max_words > 0 && words.size() > options.max_words) {
      // Down to 3/4 of the budget, so that the next batches do not prune again at once.
      const size_t before = words.size();
      auto [dropped, threshold] = words.prune_to(options.max_words - options.max_words / 4);
      ++stats.prunes;
      stats.words_pruned += dropped;
      stats.max_count_pruned = std::max(stats.max_count_pruned, threshold);
      log_warn(
          "tokenizer train: {} distinct words exceed --max-words {}: dropped the {} rarest (each seen at most {} "
          "time(s) so far); from here on the result is approximate (not exactly what tokenizers would learn)",
          before, options.max_words, dropped, threshold);
    }
    if (options.progress) options.progress("count words", stats.bytes, total_bytes);
  }
  for (auto& c : counters) {
    stats.pre_tokens += c->stats.pre_tokens;
    stats.special_tokens_skipped += c->stats.special_tokens_skipped;
    stats.invalid_utf8_sequences += c->stats.invalid_utf8_sequences;
  }
  if (stats_out) *stats_out = stats;
  return words;
}

}  // namespace

WordCounts count_words(const std::vector<std::string>& files, const BpeTrainerOptions& options, WordCountStats* stats) {
  std::vector<Source> sources;
  for (const auto& f : files) sources.push_back(Source{f, nullptr});
  return count_sources(std::move(sources), options, stats);
}

WordCounts count_words_in_texts(const std::vector<std::string>& texts, const BpeTrainerOptions& options,
                                WordCountStats* stats) {
  std::vector<Source> sources;
  for (size_t i = 0; i < texts.size(); ++i) sources.push_back(Source{"<text " + std::to_string(i) + ">", &texts[i]});
  return count_sources(std::move(sources), options, stats);
}

}  // namespace exatrain
