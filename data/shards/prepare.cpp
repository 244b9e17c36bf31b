#include "data/shards/prepare.h"

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "data/chat/chat_template.h"
#include "data/shards/bounded_queue.h"
#include "data/shards/shard_writer.h"
#include "data/shards/spdx.h"
#include "trainer/core/utf8.h"
#include "trainer/core/config.h"  // version_string, git_commit
#include "trainer/core/error.h"
#include "trainer/core/json_error.h"
#include "trainer/core/logging.h"
#include "trainer/core/thread_pool.h"

namespace exatrain {

namespace fs = std::filesystem;

namespace {

constexpr size_t kChunkBytes = size_t{256} << 10;
constexpr size_t kChunkDocuments = 4096;

struct Chunk {
  uint64_t seq = 0;
  std::vector<RawDocument> docs;
};

struct EncodedChunk {
  std::vector<uint32_t> tokens;  // the chunk's documents, each ending with EOS
  std::vector<uint8_t> loss_mask;  // chat: one value per token
  std::vector<uint64_t> doc_lengths;
  std::vector<uint32_t> doc_files;
  uint64_t empty = 0, invalid_utf8 = 0, bad = 0;
  std::string error;  // the first fatal problem, "file:line: what"
};

bool is_whitespace_only(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  });
}

const char* json_type_name(const nlohmann::json& j) { return j.type_name(); }

// Encodes one chunk; never throws (problems go into `error`, in document order).
class ChunkEncoder {
 public:
  ChunkEncoder(const PrepareOptions& options, const TokenizerInfo& tokenizer) : options_(options), tok_(tokenizer) {}

  EncodedChunk encode(const Chunk& chunk) const {
    EncodedChunk out;
    for (const RawDocument& doc : chunk.docs) {
      try {
        if (!encode_document(doc, out)) return out;
      } catch (const std::exception& e) {
        out.error = fmt::format("{}: the tokenizer failed: {}", where(doc), e.what());
        return out;
      } catch (...) {
        out.error = fmt::format("{}: the tokenizer failed", where(doc));
        return out;
      }
    }
    return out;
  }

 private:
  std::string where(const RawDocument& doc) const { return fmt::format("{}:{}", options_.inputs[doc.file], doc.line); }

  // A malformed record: an error, or with --skip-bad a count. False stops the chunk.
  bool bad_record(const RawDocument& doc, const std::string& what, EncodedChunk& out) const {
    if (options_.skip_bad) {
      ++out.bad;
      return true;
    }
    out.error = fmt::format("{}: {} (--skip-bad skips and counts such records)", where(doc), what);
    return false;
  }

  // One conversation: rendered, encoded with its loss mask, ending with [|endofturn|] (= EOS).
  bool encode_conversation(const RawDocument& doc, std::string_view bytes, EncodedChunk& out) const {
    if (is_whitespace_only(bytes)) {
      ++out.empty;
      return true;
    }
    RenderedChat rendered;
    try {
      rendered = render_chat(parse_chat_record(bytes), ChatTemplateOptions{.skip_think = !options_.chat_keep_reasoning});
    } catch (const Error& e) {
      return bad_record(doc, e.what(), out);
    }
    if (rendered.assistant_spans.empty()) return bad_record(doc, "no assistant message, so nothing to train on", out);
    rendered.text.pop_back();  // the "\n" after the last [|endofturn|]: the document ends with EOS
    const ChatTokens chat = encode_chat(rendered, tok_.encode);
    if (chat.ids.empty() || chat.ids.back() != tok_.eos_id) {
      out.error = fmt::format("{}: the conversation does not end with the EOS id {} after its last [|endofturn|]",
                              where(doc), tok_.eos_id);
      return false;
    }
    if (!check_vocabulary(doc, chat.ids, out)) return false;
    out.tokens.insert(out.tokens.end(), chat.ids.begin(), chat.ids.end());
    out.loss_mask.insert(out.loss_mask.end(), chat.loss_mask.begin(), chat.loss_mask.end());
    out.doc_lengths.push_back(chat.ids.size());
    out.doc_files.push_back(doc.file);
    return true;
  }

  bool check_vocabulary(const RawDocument& doc, const std::vector<uint32_t>& ids, EncodedChunk& out) const {
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] >= tok_.vocab_size) {
        out.error = fmt::format("{}: token id {} (token {} of the document) is outside the vocabulary (size {})",
                                where(doc), ids[i], i, tok_.vocab_size);
        return false;
      }
    return true;
  }

  bool encode_document(const RawDocument& doc, EncodedChunk& out) const {
    if (doc.oversized)
      return bad_record(doc, fmt::format("document longer than {} bytes (--max-document-bytes)", options_.max_document_bytes), out);
    std::string_view bytes = doc.bytes;
    std::string repaired;
    if (const size_t bad = utf8::valid_prefix_length(bytes); bad != bytes.size()) {
      ++out.invalid_utf8;
      switch (options_.invalid_utf8) {
        case InvalidUtf8Policy::Error:
          out.error = fmt::format("{}: invalid UTF-8 at byte {} of the {} (--invalid-utf8 replace|skip|error)", where(doc),
                                  bad, options_.format == InputFormat::Jsonl || options_.format == InputFormat::Chat ? "line" : "document");
          return false;
        case InvalidUtf8Policy::Skip: return true;
        case InvalidUtf8Policy::Replace:
          utf8::append_replacing_invalid(bytes, repaired);
          bytes = repaired;
          break;
      }
    }
    if (options_.format == InputFormat::Chat) return encode_conversation(doc, bytes, out);
    std::string field;
    std::string_view text = bytes;
    if (options_.format == InputFormat::Jsonl) {
      if (is_whitespace_only(bytes)) {
        ++out.empty;
        return true;
      }
      nlohmann::json record;
      try {
        record = nlohmann::json::parse(bytes);
      } catch (const nlohmann::json::exception& e) {
        return bad_record(doc, "malformed JSON: " + json_error_text(e, bytes), out);
      }
      if (!record.is_object()) return bad_record(doc, fmt::format("expected a JSON object, found {}", json_type_name(record)), out);
      const auto it = record.find(options_.jsonl_field);
      if (it == record.end()) return bad_record(doc, fmt::format("no field \"{}\" (--field)", options_.jsonl_field), out);
      if (!it->is_string())
        return bad_record(doc, fmt::format("field \"{}\" is {}, expected a string", options_.jsonl_field, json_type_name(*it)), out);
      field = it->get<std::string>();
      text = field;
    }
    if (is_whitespace_only(text)) {
      ++out.empty;
      return true;
    }
    std::vector<uint32_t> ids = tok_.encode(text);
    if (ids.empty()) {  // nothing left after normalization
      ++out.empty;
      return true;
    }
    if (!check_vocabulary(doc, ids, out)) return false;
    out.tokens.insert(out.tokens.end(), ids.begin(), ids.end());
    out.tokens.push_back(tok_.eos_id);
    out.doc_lengths.push_back(ids.size() + 1);
    out.doc_files.push_back(doc.file);
    return true;
  }

  const PrepareOptions& options_;
  const TokenizerInfo& tok_;
};

void check_options(const PrepareOptions& o, const TokenizerInfo& t) {
  if (o.inputs.empty()) fail("prepare: no input files");
  if (o.output_dir.empty()) fail("prepare: no output directory");
  if (o.name.empty()) fail("prepare: the dataset needs a name (--name)");
  if (!is_spdx_expression(o.license))
    fail("prepare: --license '{}' is not an SPDX license expression (e.g. MIT, Apache-2.0, CC-BY-4.0, "
         "Apache-2.0 OR MIT, LicenseRef-Custom)", o.license);
  if (o.source.empty()) fail("prepare: say where the text came from (--source)");
  if (o.format == InputFormat::Jsonl && o.jsonl_field.empty()) fail("prepare: jsonl needs a field name (--field)");
  if (o.shard_tokens == 0) fail("prepare: shard size must be at least 1 token");
  if (o.max_document_bytes == 0) fail("prepare: --max-document-bytes must be at least 1");
  if (!t.encode) fail("prepare: no tokenizer");
  if (t.vocab_size == 0 || t.vocab_size > (uint64_t{1} << 31))
    fail("prepare: tokenizer vocabulary size {} (must be 1 .. 2^31)", t.vocab_size);
  if (t.eos_id >= t.vocab_size) fail("prepare: EOS id {} is outside the vocabulary (size {})", t.eos_id, t.vocab_size);
  for (const auto& in : o.inputs) {
    std::error_code ec;
    if (!fs::is_regular_file(in, ec)) fail("prepare: input '{}' is not a readable file", in);
  }
  if (o.format == InputFormat::Chat) {
    // The rendering cuts the text next to these tokens and ends each conversation with the last.
    for (const std::string& token : chat_special_tokens())
      if (t.encode(token).size() != 1)
        fail("prepare: chat data needs the tokenizer to have '{}' as one token (the EXAONE-4 special tokens {})",
             token, fmt::join(chat_special_tokens(), " "));
    const std::vector<uint32_t> end_of_turn = t.encode(kChatEndOfTurn);
    if (end_of_turn[0] != t.eos_id)
      fail("prepare: chat conversations end with {} (id {}), but the EOS id is {}; use --eos '{}'", kChatEndOfTurn,
           end_of_turn[0], t.eos_id, kChatEndOfTurn);
  }
  if (o.chat_keep_reasoning && o.format != InputFormat::Chat) fail("prepare: --keep-reasoning is for --format chat");
}

// The output directory: created, or existing and empty. Removes what it made unless kept.
class OutputDirectory {
 public:
  explicit OutputDirectory(const std::string& dir) : dir_(dir) {
    std::error_code ec;
    if (fs::exists(dir_, ec)) {
      if (!fs::is_directory(dir_, ec)) fail("prepare: output '{}' exists and is not a directory", dir_);
      if (!fs::is_empty(dir_, ec)) fail("prepare: output directory '{}' is not empty; choose a new one", dir_);
    } else {
      fs::create_directories(dir_, ec);
      if (ec) fail("prepare: cannot create output directory '{}': {}", dir_, ec.message());
      created_ = true;
    }
  }
  ~OutputDirectory() {
    if (kept_) return;
    std::error_code ignored;
    for (const char* f : {kManifestFile, kManifestTextFile}) fs::remove(fs::path(dir_) / f, ignored);
    if (created_) fs::remove(dir_, ignored);  // only if empty
  }
  void keep() { kept_ = true; }

 private:
  std::string dir_;
  bool created_ = false;
  bool kept_ = false;
};

}  // namespace

const char* invalid_utf8_policy_name(InvalidUtf8Policy policy) {
  switch (policy) {
    case InvalidUtf8Policy::Replace: return "replace";
    case InvalidUtf8Policy::Skip: return "skip";
    case InvalidUtf8Policy::Error: return "error";
  }
  return "?";
}

DatasetManifest prepare_dataset(const PrepareOptions& options, const TokenizerInfo& tokenizer) {
  check_options(options, tokenizer);
  OutputDirectory output(options.output_dir);
  const bool chat = options.format == InputFormat::Chat;
  ShardWriter writer(options.output_dir, tokenizer.vocab_size, options.shard_tokens, /*loss_mask=*/chat);

  DatasetManifest manifest;
  manifest.name = options.name;
  manifest.license = options.license;
  manifest.source = options.source;
  manifest.created_by = fmt::format("exatrain {} (commit {})", version_string(), git_commit());
  manifest.tokenizer_sha256 = tokenizer.sha256;
  manifest.vocab_size = tokenizer.vocab_size;
  manifest.eos_id = tokenizer.eos_id;
  manifest.dtype = writer.dtype();
  manifest.shard_tokens = options.shard_tokens;
  manifest.input_format = input_format_name(options.format);
  if (options.format == InputFormat::Jsonl) manifest.jsonl_field = options.jsonl_field;
  manifest.has_loss_mask = chat;
  if (chat) {
    manifest.chat_template = "exaone4";
    manifest.chat_keep_reasoning = options.chat_keep_reasoning;
  }
  manifest.invalid_utf8_policy = invalid_utf8_policy_name(options.invalid_utf8);
  manifest.max_document_bytes = options.max_document_bytes;
  manifest.inputs.resize(options.inputs.size());
  uint64_t total_input_bytes = 0;
  for (size_t f = 0; f < options.inputs.size(); ++f) {
    manifest.inputs[f].name = options.inputs[f];
    total_input_bytes += fs::file_size(options.inputs[f]);
  }

  const int threads = resolve_thread_count(options.threads);
  const uint64_t max_in_flight = 4 * static_cast<uint64_t>(threads);
  const ChunkEncoder encoder(options, tokenizer);

  // Shared between the reader, the encoders and this (writing) thread.
  BoundedQueue<Chunk> work(max_in_flight);
  std::mutex mutex;
  std::condition_variable changed;
  std::map<uint64_t, EncodedChunk> done;  // encoded, waiting for their turn
  uint64_t in_flight = 0;
  bool abort = false;
  bool reader_done = false;
  uint64_t chunks_total = 0;
  std::exception_ptr reader_error;
  std::exception_ptr encoder_error;  // unexpected (ChunkEncoder puts problems with the input in the chunk)
  std::atomic<uint64_t> bytes_read{0};
  std::vector<std::pair<std::string, uint64_t>> input_hashes(options.inputs.size());

  // The reader is a dedicated thread, not a pool task: a producer that blocks until the writer
  // has taken chunks, for the whole run (as a task it would hold one of the encoders' workers).
  std::thread reader([&] {
    uint64_t seq = 0;
    try {
      Chunk chunk;
      size_t chunk_bytes = 0;
      auto submit = [&] {
        {
          std::unique_lock lock(mutex);
          changed.wait(lock, [&] { return abort || in_flight < max_in_flight; });
          if (abort) return false;
          ++in_flight;
        }
        chunk.seq = seq++;
        if (!work.push(std::move(chunk))) return false;
        chunk = Chunk{};
        chunk_bytes = 0;
        return true;
      };
      for (size_t f = 0; f < options.inputs.size(); ++f) {
        DocumentReader docs(options.inputs[f], static_cast<uint32_t>(f), options.format, options.max_document_bytes);
        RawDocument doc;
        uint64_t counted = 0;
        while (docs.next(doc)) {
          chunk_bytes += doc.bytes.size();
          chunk.docs.push_back(std::move(doc));
          doc = RawDocument{};
          bytes_read += docs.bytes_read() - counted;
          counted = docs.bytes_read();
          if ((chunk_bytes >= kChunkBytes || chunk.docs.size() >= kChunkDocuments) && !submit()) return;
        }
        bytes_read += docs.bytes_read() - counted;
        input_hashes[f] = {docs.sha256_hex(), docs.bytes_read()};
      }
      if (!chunk.docs.empty() && !submit()) return;
    } catch (...) {
      reader_error = std::current_exception();
    }
    {
      std::lock_guard lock(mutex);
      reader_done = true;
      chunks_total = seq;
      changed.notify_all();
    }
    work.close();  // the encoders finish what is queued, then stop
  });

  ThreadPool encoders(threads);
  std::vector<std::future<void>> encoders_done;
  for (int t = 0; t < threads; ++t)
    encoders_done.push_back(encoders.submit([&] {
      try {
        while (auto chunk = work.pop()) {
          EncodedChunk encoded = encoder.encode(*chunk);
          std::lock_guard lock(mutex);
          done.emplace(chunk->seq, std::move(encoded));
          changed.notify_all();
        }
      } catch (...) {  // e.g. out of memory: the writer stops waiting for this chunk and rethrows
        std::lock_guard lock(mutex);
        if (!encoder_error) encoder_error = std::current_exception();
        changed.notify_all();
      }
    }));

  // Stops and joins every thread however this function is left.
  struct Join {
    std::function<void()> fn;
    ~Join() { fn(); }
  } join{[&] {
    {
      std::lock_guard lock(mutex);
      abort = true;
      changed.notify_all();
    }
    work.close_and_clear();
    reader.join();
    for (auto& e : encoders_done) e.wait();
  }};

  const auto start = std::chrono::steady_clock::now();
  auto last_log = start;
  auto seconds_since = [](auto t0) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  for (uint64_t seq = 0;; ++seq) {
    EncodedChunk chunk;
    {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return encoder_error || done.count(seq) > 0 || (reader_done && seq >= chunks_total); });
      if (encoder_error) std::rethrow_exception(encoder_error);
      if (done.count(seq) == 0) break;
      chunk = std::move(done[seq]);
      done.erase(seq);
      --in_flight;
      changed.notify_all();
    }
    if (!chunk.error.empty()) fail("prepare: {}", chunk.error);
    size_t offset = 0;
    for (size_t d = 0; d < chunk.doc_lengths.size(); ++d) {
      const std::span<const uint32_t> ids(chunk.tokens.data() + offset, chunk.doc_lengths[d]);
      if (chat)
        writer.add_document(ids, std::span<const uint8_t>(chunk.loss_mask.data() + offset, chunk.doc_lengths[d]));
      else
        writer.add_document(ids);
      offset += chunk.doc_lengths[d];
      ++manifest.inputs[chunk.doc_files[d]].documents;
    }
    manifest.total_documents += chunk.doc_lengths.size();
    manifest.skipped_empty_documents += chunk.empty;
    manifest.invalid_utf8_documents += chunk.invalid_utf8;
    manifest.skipped_bad_records += chunk.bad;
    if (options.progress_seconds > 0 && seconds_since(last_log) >= options.progress_seconds) {
      last_log = std::chrono::steady_clock::now();
      const double mb = bytes_read.load() / 1e6;
      log_info("prepare {}: {:.1f} of {:.1f} MB ({:.0f}%), {:.1f} MB/s, {} tokens, {} shards", options.name, mb,
               total_input_bytes / 1e6, total_input_bytes ? 100.0 * bytes_read.load() / total_input_bytes : 100.0,
               mb / seconds_since(start), writer.tokens_written(), writer.shards_finished());
    }
  }
  if (reader_error) std::rethrow_exception(reader_error);
  if (manifest.total_documents == 0)
    fail("prepare: no documents in {} input file(s) ({} empty, {} with invalid UTF-8, {} bad records skipped)",
         options.inputs.size(), manifest.skipped_empty_documents, manifest.invalid_utf8_documents,
         manifest.skipped_bad_records);

  for (const auto& shard : writer.finish()) {
    manifest.shards.push_back(shard);
    manifest.total_tokens += shard.tokens;
    manifest.loss_mask_tokens += shard.loss_mask_tokens;
  }
  for (size_t f = 0; f < options.inputs.size(); ++f) {
    manifest.inputs[f].sha256 = input_hashes[f].first;
    manifest.inputs[f].bytes = input_hashes[f].second;
    manifest.input_bytes += input_hashes[f].second;
  }
  write_manifest(options.output_dir, manifest);
  writer.keep();
  output.keep();
  const double seconds = seconds_since(start);
  if (chat)
    log_info("prepare {}: {} of {} tokens are assistant tokens (loss mask 1)", options.name, manifest.loss_mask_tokens,
             manifest.total_tokens);
  log_info("prepare {}: {} documents, {} tokens in {} shards from {:.1f} MB in {} ({:.1f} MB/s); skipped {} empty, "
           "{} invalid UTF-8 ({}), {} bad records",
           options.name, manifest.total_documents, manifest.total_tokens, manifest.shards.size(),
           manifest.input_bytes / 1e6, format_duration(seconds), manifest.input_bytes / 1e6 / std::max(seconds, 1e-9),
           manifest.skipped_empty_documents, manifest.invalid_utf8_documents, manifest.invalid_utf8_policy,
           manifest.skipped_bad_records);
  return manifest;
}

}  // namespace exatrain
