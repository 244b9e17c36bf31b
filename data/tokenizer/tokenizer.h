// A Hugging Face tokenizer.json with a BPE model, giving exactly the ids of the `tokenizers`
// library (see docs/tokenizer.md for what is supported and how it is verified).
//
//   auto tok = exatrain::Tokenizer::from_file("tokenizer.json");
//   std::vector<uint32_t> ids = tok.encode("Hello");        // = encode(text, add_special_tokens=False)
//   std::string text = tok.decode(ids);
//
// Invalid UTF-8 input: each maximal invalid byte sequence is replaced by U+FFFD before encoding
// (as Python's bytes.decode("utf-8", "replace") does); Encoder::stats() counts them.
//
// A Tokenizer is immutable and cheap to copy (copies share it); any number of threads may use
// it. For throughput, give each thread its own Encoder: it keeps a cache of recent pre-tokens
// and scratch buffers, so once warm it makes no allocations of its own.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace exatrain {

struct EncodeStats {
  uint64_t texts = 0;                   // texts encoded
  uint64_t bytes = 0;                   // input bytes
  uint64_t tokens = 0;                  // ids produced
  uint64_t texts_with_invalid_utf8 = 0;  // texts that had at least one invalid sequence
  uint64_t invalid_utf8_sequences = 0;  // sequences replaced by U+FFFD
  void add(const EncodeStats& o) {
    texts += o.texts;
    bytes += o.bytes;
    tokens += o.tokens;
    texts_with_invalid_utf8 += o.texts_with_invalid_utf8;
    invalid_utf8_sequences += o.invalid_utf8_sequences;
  }
};

struct AddedTokenInfo {
  std::string content;
  uint32_t id;
  bool special;
};

class Tokenizer {
 public:
  struct Impl;
  class Encoder;
  class BatchEncoder;

  // Loads a tokenizer.json. Throws exatrain::Error naming the file and the JSON path of anything
  // malformed or unsupported.
  static Tokenizer from_file(const std::string& path);
  static Tokenizer from_json(std::string_view json, const std::string& name = "<tokenizer.json>");

  // Ids of `text`. add_special_tokens applies the post-processor's template (TemplateProcessing,
  // RobertaProcessing, BertProcessing), as tokenizers' encode(text, add_special_tokens=True).
  std::vector<uint32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Encodes each text with `threads` threads (0: all cores); result i belongs to texts[i]. To
  // encode many batches, keep one BatchEncoder (its per-thread caches stay warm).
  std::vector<std::vector<uint32_t>> encode_batch(std::span<const std::string_view> texts, int threads = 0,
                                                  bool add_special_tokens = false,
                                                  EncodeStats* stats = nullptr) const;
  // Text of `ids`; ids outside the vocabulary are dropped, as tokenizers' decode drops them.
  std::string decode(std::span<const uint32_t> ids, bool skip_special_tokens = false) const;

  Encoder encoder() const;

  // One more than the largest id (model vocabulary and added tokens): the embedding rows needed.
  uint32_t vocab_size() const;
  std::optional<uint32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(uint32_t id) const;
  bool is_special(uint32_t id) const;
  // Added tokens sorted by id.
  std::vector<AddedTokenInfo> added_tokens() const;
  // sha256 of the tokenizer.json bytes.
  const std::string& content_sha256() const;
  // One line per component, for `exatrain tokenizer info`.
  std::string describe() const;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

class Tokenizer::Encoder {
 public:
  explicit Encoder(const Tokenizer& tokenizer);
  Encoder(Encoder&&) noexcept;
  Encoder& operator=(Encoder&&) noexcept;
  ~Encoder();

  // Appends the ids of `text` to `ids`.
  void encode(std::string_view text, std::vector<uint32_t>& ids, bool add_special_tokens = false);
  std::vector<uint32_t> encode(std::string_view text, bool add_special_tokens = false);
  const EncodeStats& stats() const { return stats_; }

 private:
  struct Scratch;
  std::shared_ptr<const Impl> impl_;
  std::unique_ptr<Scratch> scratch_;
  EncodeStats stats_;
};

}  // namespace exatrain

namespace exatrain {

class ThreadPool;

// Encodes batches of texts on `threads` threads, each with its own Encoder kept across calls.
class Tokenizer::BatchEncoder {
 public:
  explicit BatchEncoder(const Tokenizer& tokenizer, int threads = 0);  // 0: all cores
  ~BatchEncoder();
  // out[i] = ids of texts[i] (out is resized to texts.size()).
  void encode(std::span<const std::string_view> texts, std::vector<std::vector<uint32_t>>& out,
              bool add_special_tokens = false);
  int threads() const { return int(encoders_.size()); }
  // Totals over every call so far.
  EncodeStats stats() const;

 private:
  std::unique_ptr<ThreadPool> pool_;  // its workers stay for the next call
  std::vector<Encoder> encoders_;     // one per worker
};

}  // namespace exatrain
