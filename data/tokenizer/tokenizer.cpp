#include "data/tokenizer/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iterator>
#include <sstream>

#include "data/tokenizer/byte_level.h"
#include "trainer/core/sha256.h"
#include "data/tokenizer/tokenizer_impl.h"
#include "trainer/core/utf8.h"
#include "trainer/core/error.h"
#include "trainer/core/thread_pool.h"

namespace exatrain {

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open tokenizer file", path);
  std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("{}: read error", path);
  return from_json(json, path);
}

Tokenizer Tokenizer::from_json(std::string_view json, const std::string& name) {
  auto impl = load_tokenizer_json(json, name);
  impl->sha256 = sha256_hex(json);
  return Tokenizer(std::move(impl));
}

// ---- encoding -------------------------------------------------------------------------------

struct Tokenizer::Encoder::Scratch {
  std::string sanitized;
  std::vector<tok::TextSegment> raw_segments, normalized_segments;
  std::string normalized, normalize_tmp;
  tok::PreTokenizeScratch pre;
  tok::BpeScratch bpe;
  tok::BpeCache cache;
  std::string mapped;
  std::vector<uint32_t> post;
};

Tokenizer::Encoder::Encoder(const Tokenizer& tokenizer)
    : impl_(tokenizer.impl_), scratch_(std::make_unique<Scratch>()) {}
Tokenizer::Encoder::Encoder(Encoder&&) noexcept = default;
Tokenizer::Encoder& Tokenizer::Encoder::operator=(Encoder&&) noexcept = default;
Tokenizer::Encoder::~Encoder() = default;

namespace {

// One pre-token through the model, or through the cache when it has seen it.
inline void encode_word(const Tokenizer::Impl& impl, std::string_view word, std::vector<uint32_t>& ids,
                        tok::BpeCache& cache, tok::BpeScratch& bpe, std::string& mapped) {
  const uint64_t hash = tok::BpeCache::hash(word);
  if (cache.lookup(word, hash, ids)) return;
  const size_t before = ids.size();
  if (impl.pre_tokenizer.maps_bytes()) {
    mapped.clear();
    byte_level::append_mapped(word, mapped);
    impl.model->tokenize(mapped, ids, bpe);
  } else {
    impl.model->tokenize(word, ids, bpe);
  }
  cache.insert(word, hash, std::span<const uint32_t>(ids.data() + before, ids.size() - before));
}

}  // namespace

void Tokenizer::Encoder::encode(std::string_view text, std::vector<uint32_t>& ids, bool add_special_tokens) {
  const Impl& impl = *impl_;
  Scratch& s = *scratch_;
  const size_t first = ids.size();
  stats_.texts += 1;
  stats_.bytes += text.size();
  if (!utf8::is_valid(text)) {
    s.sanitized.clear();
    size_t replaced = utf8::append_replacing_invalid(text, s.sanitized);
    stats_.texts_with_invalid_utf8 += 1;
    stats_.invalid_utf8_sequences += replaced;
    text = s.sanitized;
  }

  // Pieces outside added tokens: normalize, match normalized added tokens, pre-tokenize, BPE.
  auto encode_pretokenized = [&](std::string_view piece) {
    impl.pre_tokenizer.run(piece, s.pre);
    for (const tok::PieceRef& p : s.pre.pieces) encode_word(impl, s.pre.view(p), ids, s.cache, s.bpe, s.mapped);
  };
  auto encode_normalizing = [&](std::string_view piece) {
    std::string_view normalized = impl.normalizer.apply(piece, s.normalized, s.normalize_tmp);
    if (!impl.added.has_normalized_patterns()) {
      encode_pretokenized(normalized);
      return;
    }
    s.normalized_segments.clear();
    impl.added.split(normalized, true, s.normalized_segments);
    for (const tok::TextSegment& seg : s.normalized_segments) {
      if (seg.id >= 0) {
        ids.push_back(uint32_t(seg.id));
      } else {
        encode_pretokenized(normalized.substr(seg.begin, seg.end - seg.begin));
      }
    }
  };
  if (impl.added.has_raw_patterns()) {
    s.raw_segments.clear();
    impl.added.split(text, false, s.raw_segments);
    for (const tok::TextSegment& seg : s.raw_segments) {
      if (seg.id >= 0) {
        ids.push_back(uint32_t(seg.id));
      } else {
        encode_normalizing(text.substr(seg.begin, seg.end - seg.begin));
      }
    }
  } else if (!text.empty()) {
    encode_normalizing(text);
  }

  if (add_special_tokens) {
    for (const PostProcessStep& step : impl.post_process) {
      s.post.assign(ids.begin() + long(first), ids.end());
      ids.resize(first);
      for (int64_t item : step.items) {
        if (item == PostProcessStep::kSequence) {
          ids.insert(ids.end(), s.post.begin(), s.post.end());
        } else {
          ids.push_back(uint32_t(item));
        }
      }
    }
  }
  stats_.tokens += ids.size() - first;
}

std::vector<uint32_t> Tokenizer::Encoder::encode(std::string_view text, bool add_special_tokens) {
  std::vector<uint32_t> ids;
  encode(text, ids, add_special_tokens);
  return ids;
}

Tokenizer::Encoder Tokenizer::encoder() const { return Encoder(*this); }

std::vector<uint32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  Encoder encoder(*this);
  return encoder.encode(text, add_special_tokens);
}

std::vector<std::vector<uint32_t>> Tokenizer::encode_batch(std::span<const std::string_view> texts, int threads,
                                                           bool add_special_tokens, EncodeStats* stats) const {
  BatchEncoder batch(*this, threads);
  std::vector<std::vector<uint32_t>> out;
  batch.encode(texts, out, add_special_tokens);
  if (stats) stats->add(batch.stats());
  return out;
}

Tokenizer::BatchEncoder::BatchEncoder(const Tokenizer& tokenizer, int threads)
    : pool_(std::make_unique<ThreadPool>(resolve_thread_count(threads))) {
  for (int t = 0; t < pool_->threads(); ++t) encoders_.emplace_back(tokenizer);
}

Tokenizer::BatchEncoder::~BatchEncoder() = default;

void Tokenizer::BatchEncoder::encode(std::span<const std::string_view> texts, std::vector<std::vector<uint32_t>>& out,
                                     bool add_special_tokens) {
  out.resize(texts.size());
  for (auto& ids : out) ids.clear();
  constexpr size_t kChunk = 64;  // texts per work item
  const size_t chunks = (texts.size() + kChunk - 1) / kChunk;
  const size_t workers = std::min(encoders_.size(), std::max<size_t>(chunks, 1));
  std::atomic<size_t> next_chunk{0};
  // One call per worker (each with its own Encoder and caches); chunks are taken dynamically.
  pool_->parallel_for(workers, [&](size_t worker) {
    try {
      Encoder& encoder = encoders_[worker];
      for (size_t c = next_chunk++; c < chunks; c = next_chunk++) {
        for (size_t i = c * kChunk; i < std::min(texts.size(), (c + 1) * kChunk); ++i) {
          encoder.encode(texts[i], out[i], add_special_tokens);
        }
      }
    } catch (...) {
      next_chunk = chunks;  // the others stop at their next chunk
      throw;
    }
  });
}

EncodeStats Tokenizer::BatchEncoder::stats() const {
  EncodeStats total;
  for (const auto& e : encoders_) total.add(e.stats());
  return total;
}

// ---- decoding and vocabulary ------------------------------------------------------------------

namespace {

// ByteLevel decoder: table characters back to bytes (a token with any other character is taken
// as its own UTF-8), then one lossy UTF-8 decode of the whole.
std::string byte_level_decode(const std::vector<std::string_view>& tokens) {
  std::string bytes;
  for (std::string_view token : tokens) {
    const size_t mark = bytes.size();
    bool all_mapped = true;
    for (size_t pos = 0; pos < token.size();) {
      int b = byte_level::byte_for_char(utf8::next_code_point(token, pos));
      if (b < 0) {
        all_mapped = false;
        break;
      }
      bytes.push_back(char(b));
    }
    if (!all_mapped) {
      bytes.resize(mark);
      bytes.append(token);
    }
  }
  std::string text;
  utf8::append_replacing_invalid(bytes, text);
  return text;
}

}  // namespace

std::string Tokenizer::decode(std::span<const uint32_t> ids, bool skip_special_tokens) const {
  const Impl& impl = *impl_;
  std::vector<std::string_view> tokens;
  tokens.reserve(ids.size());
  for (uint32_t id : ids) {
    const std::string* token = nullptr;
    if (const tok::AddedToken* added = impl.added.find(id)) {
      token = &added->decode_form;
    } else {
      token = impl.model->id_to_token(id);
    }
    if (token == nullptr) continue;
    if (skip_special_tokens && impl.added.is_special(*token)) continue;
    tokens.push_back(*token);
  }
  if (!impl.has_decoder) {
    std::string text;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) text.push_back(' ');
      text.append(tokens[i]);
    }
    return text;
  }
  // Each decoder step turns the tokens into one string, which the next step gets as its token;
  // the result is whatever is left, concatenated.
  std::string text;
  for (size_t i = 0; i < impl.decoders.size(); ++i) {
    std::string step = byte_level_decode(tokens);
    text.swap(step);
    tokens.assign(1, text);
  }
  if (impl.decoders.empty()) {
    for (std::string_view t : tokens) text.append(t);
  }
  return text;
}

uint32_t Tokenizer::vocab_size() const {
  const Impl& impl = *impl_;
  uint32_t size = impl.model->size() ? impl.model->max_id() + 1 : 0;
  if (!impl.added.tokens().empty()) size = std::max(size, impl.added.max_id() + 1);
  return size;
}

std::optional<uint32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto id = impl_->added.token_to_id(token)) return id;
  return impl_->model->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(uint32_t id) const {
  if (const tok::AddedToken* added = impl_->added.find(id)) return added->decode_form;
  if (const std::string* token = impl_->model->id_to_token(id)) return *token;
  return std::nullopt;
}

bool Tokenizer::is_special(uint32_t id) const {
  auto token = id_to_token(id);
  return token && impl_->added.is_special(*token);
}

std::vector<AddedTokenInfo> Tokenizer::added_tokens() const {
  std::vector<AddedTokenInfo> out;
  for (const tok::AddedToken& t : impl_->added.tokens()) {
    out.push_back(AddedTokenInfo{t.content, t.id, impl_->added.is_special(t.content)});
  }
  return out;
}

const std::string& Tokenizer::content_sha256() const { return impl_->sha256; }

std::string Tokenizer::describe() const {
  std::ostringstream out;
  for (const auto& line : impl_->description) out << line << "\n";
  return out.str();
}

}  // namespace exatrain
