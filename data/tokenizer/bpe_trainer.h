// Byte-level BPE training, as the `tokenizers` library's BpeTrainer does it (see docs/tokenizer.md):
//
//   1. count_words: stream the files (never whole), cut each line (with its '\n') at the special
//      tokens (the specials themselves are dropped: they never become merges), normalize (NFC or
//      nothing), pre-tokenize (the Split regex, then ByteLevel) and count each pre-token. Threads
//      work on batches of lines; the counts are merged after every batch, so the result does not
//      depend on the thread count. The table of distinct words is the only thing that grows; past
//      max_words the rarest words are pruned to 3/4 of it (then, and only then, results stop
//      being exact).
//   2. train_bpe: ids = special tokens (given order), the 256 byte characters by code point, then
//      one per merge; the most frequent pair wins, ties to the smallest (left id, right id); pairs
//      are counted once, then updated incrementally from the words the merge touched, through a
//      lazy max-heap (tokenizers' algorithm, quirks included, so vocab and merges are identical).
//   3. trained_tokenizer_json / write_trained_tokenizer: a tokenizer.json that `tokenizers` loads.
//
//   WordCounts words = count_words(files, options);
//   TrainedBpe bpe = train_bpe(words, options);
//   write_trained_tokenizer("tokenizer.json", bpe, options);
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace exatrain {

// The Qwen2/Qwen3 Split regex (GPT-4 style, one digit per pre-token).
inline constexpr std::string_view kQwenSplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// EXAONE-4 style special tokens; [|endofturn|] is the end-of-document (EOS) token.
inline const std::vector<std::string> kDefaultSpecialTokens = {
    "[PAD]", "[BOS]", "[|endofturn|]", "[|system|]", "[|user|]", "[|assistant|]", "[|tool|]", "<think>", "</think>"};

// Called from the calling thread: stage is "count words" (done/total in bytes) or "merges"
// (done/total in vocabulary entries).
using TrainProgress = std::function<void(std::string_view stage, uint64_t done, uint64_t total)>;

struct BpeTrainerOptions {
  uint32_t vocab_size = 32000;  // special tokens included, as in tokenizers
  std::vector<std::string> special_tokens = kDefaultSpecialTokens;
  uint64_t min_frequency = 0;  // a pair seen fewer times ends training
  bool nfc = true;             // NFC normalizer (else none)
  std::string split_pattern = std::string(kQwenSplitPattern);
  int threads = 0;                  // word counting threads (0: all cores)
  uint64_t max_words = 4'000'000;   // distinct words kept while counting (0: no limit)
  uint64_t batch_bytes = 32 << 20;  // lines counted between two merges of the thread tables
  TrainProgress progress;           // optional
};

// A string -> count table (open addressing; the strings live in one arena). Words are raw bytes,
// before the ByteLevel character mapping.
class WordCounts {
 public:
  void add(std::string_view word, uint64_t count);
  void add_all(const WordCounts& other);
  size_t size() const { return size_; }
  uint64_t count(std::string_view word) const;  // 0 if absent
  // Keeps the `keep` most frequent words (ties broken by a fixed hash of the word, so the result
  // does not depend on the order of insertion); returns {words dropped, the largest count dropped}.
  std::pair<uint64_t, uint64_t> prune_to(size_t keep);
  void clear();

  template <class F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.count) f(std::string_view(arena_.data() + s.offset, s.length), s.count);
    }
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint64_t count = 0;  // 0: empty
    uint64_t offset = 0;
    uint32_t length = 0;
  };
  Slot* find_slot(std::string_view word, uint64_t hash);
  const Slot* find_slot(std::string_view word, uint64_t hash) const;
  void rehash(size_t capacity);

  std::vector<Slot> slots_;
  std::string arena_;
  size_t size_ = 0;
};

struct WordCountStats {
  uint64_t files = 0, bytes = 0, lines = 0;
  uint64_t pre_tokens = 0;              // words counted, with repeats
  uint64_t special_tokens_skipped = 0;  // special tokens found in the text and left out
  uint64_t invalid_utf8_sequences = 0;  // replaced by U+FFFD
  uint64_t long_lines_cut = 0;          // lines longer than the read block, counted in pieces
  uint64_t prunes = 0;                  // times the table went over max_words
  uint64_t words_pruned = 0;
  uint64_t max_count_pruned = 0;  // the largest count of a pruned word
};

// Counts the pre-tokens of `files`. Throws exatrain::Error naming a file that cannot be read.
WordCounts count_words(const std::vector<std::string>& files, const BpeTrainerOptions& options,
                       WordCountStats* stats = nullptr);
// The same over in-memory texts (each as one file); for tests.
WordCounts count_words_in_texts(const std::vector<std::string>& texts, const BpeTrainerOptions& options,
                                WordCountStats* stats = nullptr);

struct TrainedBpe {
  std::vector<std::string> vocab;                           // id -> token (ByteLevel characters)
  std::vector<std::pair<std::string, std::string>> merges;  // by rank
  std::vector<std::string> special_tokens;                  // distinct, in id order
};

// Learns the merges. Throws exatrain::Error if vocab_size < specials + 256.
TrainedBpe train_bpe(const WordCounts& words, const BpeTrainerOptions& options);

// Checks the options a run needs before any work (vocabulary size, special tokens, the regex).
void validate_trainer_options(const BpeTrainerOptions& options);

// The tokenizer.json text: added_tokens (special, normalized=false), NFC or no normalizer,
// Sequence[Split(pattern, Isolated), ByteLevel(add_prefix_space=false, use_regex=false)],
// ByteLevel decoder, a BPE model with merges as [["a", "b"], ...].
std::string trained_tokenizer_json(const TrainedBpe& bpe, const BpeTrainerOptions& options);
// One entry of tokenizer_config.json's added_tokens_decoder (the flags of tokenizer.json's added_tokens).
struct TokenizerConfigToken {
  uint32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = true;
};
// What tokenizer_config.json says; empty strings (and a zero length) are left out.
struct TokenizerConfigFields {
  std::vector<TokenizerConfigToken> added_tokens;  // by id
  std::string bos, eos, pad, unk;                  // token contents
  std::string chat_template;                       // Jinja text (apply_chat_template)
  int64_t model_max_length = 0;
};
// The tokenizer_config.json text (AutoTokenizer, PreTrainedTokenizerFast). One writer for every
// place that ships a tokenizer: `tokenizer train` and the release export.
std::string tokenizer_config_json(const TokenizerConfigFields& fields);
// The tokenizer_config.json that transformers (and `exatrain data prepare`, for the EOS) read.
std::string trained_tokenizer_config_json(const TrainedBpe& bpe, const std::string& bos, const std::string& eos,
                                          const std::string& pad);

// Throws exatrain::Error (and leaves nothing behind) if a file cannot be created next to `path`.
void check_output_writable(const std::string& path);

}  // namespace exatrain
