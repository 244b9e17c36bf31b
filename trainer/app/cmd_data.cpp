// exatrain data prepare --tokenizer T --input FILES... --format text|lines|jsonl|chat [--field F]
//                       --output DIR --name NAME --license SPDX --source TEXT [--eos TOKEN]
//                       [--shard-tokens N] [--threads N] [--skip-bad] [--invalid-utf8 P]
//                       [--max-document-bytes N] [--keep-reasoning]
// exatrain data verify DIR [--tokenizer T | --tokenizer-sha256 HEX] [--threads N]
// exatrain data info DIR
// exatrain data preview DIR --tokenizer T [--n K] [--skip S] [--json]
// exatrain data bench DIR... [--seq-len T] [--batch B] [--dp N] [--batches K]
//
// Formats, manifest fields and policies: docs/data.md. Everything here is a thin layer over
// data/shards (no protobuf and no spdlog in the headers it includes: this file is compiled
// next to LibTorch's own copies of both).
#include <CLI/CLI.hpp>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "data/chat/chat_template.h"
#include "data/shards/loader_bench.h"
#include "data/shards/manifest.h"
#include "data/shards/prepare.h"
#include "data/shards/shard_reader.h"
#include "trainer/core/sha256.h"
#include "data/shards/verify.h"
#include "data/tokenizer/tokenizer.h"
#include "trainer/app/commands.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"

namespace exatrain {

namespace {

namespace fs = std::filesystem;

struct DataOptions {
  std::string tokenizer, tokenizer_sha256, eos, format = "text", invalid_utf8 = "replace";
  std::string dir;
  std::vector<std::string> dirs;
  PrepareOptions prepare;
  int threads = 0;
  LoaderBenchOptions bench;
};

// The end-of-document token: --eos, else [|endofturn|] for chat data (the EXAONE-4 template ends
// every turn with it), else tokenizer_config.json's eos_token next to the tokenizer.
std::string eos_token_name(const DataOptions& o) {
  if (!o.eos.empty()) return o.eos;
  if (o.format == "chat") return kChatEndOfTurn;
  const fs::path config = fs::path(o.tokenizer).parent_path() / "tokenizer_config.json";
  if (fs::exists(config)) {
    std::ifstream in(config);
    const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("eos_token")) {
      const auto& eos = j["eos_token"];
      if (eos.is_string()) return eos.get<std::string>();
      if (eos.is_object() && eos.contains("content") && eos["content"].is_string()) return eos["content"].get<std::string>();
    }
  }
  fail("prepare: name the end-of-document token with --eos (e.g. --eos '<|endoftext|>'); no eos_token in '{}'",
       config.string());
}

TokenizerInfo load_tokenizer(const DataOptions& o) {
  auto tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_file(o.tokenizer));
  const std::string eos = eos_token_name(o);
  const auto eos_id = tokenizer->token_to_id(eos);
  if (!eos_id && o.format == "chat" && o.eos.empty())
    fail("prepare: chat data needs an EXAONE-4 tokenizer, with the special tokens {}; '{}' has no {}",
         fmt::join(chat_special_tokens(), " "), o.tokenizer, kChatEndOfTurn);
  if (!eos_id) fail("prepare: the EOS token '{}' is not in the vocabulary of '{}'", eos, o.tokenizer);
  TokenizerInfo info;
  info.sha256 = tokenizer->content_sha256();
  info.vocab_size = tokenizer->vocab_size();
  info.eos_id = *eos_id;
  // One Encoder (with its cache) per encoding thread, for this tokenizer.
  static std::atomic<uint64_t> next_generation{1};
  const uint64_t generation = next_generation++;
  info.encode = [tokenizer, generation](std::string_view text) {
    thread_local std::unique_ptr<Tokenizer::Encoder> encoder;
    thread_local uint64_t encoder_generation = 0;
    if (encoder_generation != generation) {
      encoder = std::make_unique<Tokenizer::Encoder>(*tokenizer);
      encoder_generation = generation;
    }
    return encoder->encode(text);
  };
  return info;
}

void run_prepare(DataOptions& o) {
  PrepareOptions& p = o.prepare;
  p.format = o.format == "jsonl"   ? InputFormat::Jsonl
             : o.format == "chat"  ? InputFormat::Chat
             : o.format == "lines" ? InputFormat::Lines
                                   : InputFormat::Text;
  p.invalid_utf8 = o.invalid_utf8 == "skip"    ? InvalidUtf8Policy::Skip
                   : o.invalid_utf8 == "error" ? InvalidUtf8Policy::Error
                                               : InvalidUtf8Policy::Replace;
  p.threads = o.threads;
  // Nothing is logged before the work starts: bad input fails with one line on stderr.
  const DatasetManifest m = prepare_dataset(p, load_tokenizer(o));
  std::printf("%s: %llu documents, %llu tokens in %zu shards (%s ids); EOS id %u; tokenizer sha256 %s; manifest %s/%s\n",
              p.output_dir.c_str(), static_cast<unsigned long long>(m.total_documents),
              static_cast<unsigned long long>(m.total_tokens), m.shards.size(), dtype_name(m.dtype), m.eos_id,
              m.tokenizer_sha256.c_str(), p.output_dir.c_str(), kManifestFile);
  if (m.has_loss_mask)
    std::printf("%s: loss mask: %llu of %llu tokens are training targets (assistant tokens)\n", p.output_dir.c_str(),
                static_cast<unsigned long long>(m.loss_mask_tokens), static_cast<unsigned long long>(m.total_tokens));
}

void run_verify(const DataOptions& o) {
  std::string expected = o.tokenizer_sha256;
  if (!o.tokenizer.empty()) {
    if (!expected.empty()) fail("verify: give --tokenizer or --tokenizer-sha256, not both");
    expected = exatrain::sha256_file_hex(o.tokenizer);  // a tokenizer's content hash is its file's sha256
  }
  const VerifyReport r = verify_dataset(o.dir, expected, o.threads);
  require_verified(o.dir, r);
  const DatasetManifest& m = r.manifest;
  std::printf("%s: ok: %llu shards, %llu tokens, %llu documents; %.1f MB checked in %.2f s (%.0f MB/s); tokenizer %s%s\n",
              o.dir.c_str(), static_cast<unsigned long long>(r.shards_checked),
              static_cast<unsigned long long>(m.total_tokens), static_cast<unsigned long long>(m.total_documents),
              r.bytes_hashed / 1e6, r.seconds, r.bytes_hashed / 1e6 / std::max(r.seconds, 1e-9),
              m.tokenizer_sha256.c_str(), expected.empty() ? " (not compared: no --tokenizer given)" : " (matches)");
}

// One document of a dataset: its tokens and loss mask, wherever the shards split it.
struct PreviewDocument {
  std::vector<uint32_t> ids;
  std::vector<uint8_t> mask;
};

// The first `skip + count` documents' boundaries come from the shards' document indexes; a
// document runs to the next one's start (across shard boundaries) or to the end of the data.
std::vector<PreviewDocument> read_documents(const std::string& dir, const DatasetManifest& m, uint64_t skip,
                                            uint64_t count) {
  std::vector<ShardReader> shards;
  std::vector<uint64_t> base;  // global offset of each shard's first token
  std::vector<uint64_t> starts;
  uint64_t offset = 0;
  for (const auto& shard : m.shards) {
    shards.emplace_back((fs::path(dir) / shard.file).string());
    base.push_back(offset);
    for (uint64_t s : shards.back().document_starts()) starts.push_back(offset + s);
    offset += shards.back().tokens();
  }
  std::vector<PreviewDocument> docs;
  for (uint64_t d = skip; d < starts.size() && d < skip + count; ++d) {
    const uint64_t begin = starts[d], end = d + 1 < starts.size() ? starts[d + 1] : offset;
    PreviewDocument doc;
    for (size_t s = 0; s < shards.size(); ++s) {
      const uint64_t lo = std::max(begin, base[s]), hi = std::min(end, base[s] + shards[s].tokens());
      if (lo >= hi) continue;
      std::vector<int32_t> ids(hi - lo);
      std::vector<uint8_t> mask(hi - lo);
      shards[s].copy_tokens(lo - base[s], hi - lo, ids.data());
      shards[s].copy_loss_mask(lo - base[s], hi - lo, mask.data());
      doc.ids.insert(doc.ids.end(), ids.begin(), ids.end());
      doc.mask.insert(doc.mask.end(), mask.begin(), mask.end());
    }
    docs.push_back(std::move(doc));
  }
  return docs;
}

struct PreviewOptions {
  std::string dir, tokenizer, open = "\u27e6", close = "\u27e7";  // ⟦ ⟧
  uint64_t count = 3, skip = 0;
  bool json = false;
};

// Decoded documents with the trained tokens (loss mask 1) between markers: what the model
// will learn to produce, and what it only reads.
void run_preview(const PreviewOptions& o) {
  const DatasetManifest m = read_manifest(o.dir);
  const Tokenizer tokenizer = Tokenizer::from_file(o.tokenizer);
  if (!m.tokenizer_sha256.empty() && tokenizer.content_sha256() != m.tokenizer_sha256)
    fail("preview: '{}' is not the tokenizer of {} (its sha256 is {}, the manifest names {})", o.tokenizer, o.dir,
         tokenizer.content_sha256(), m.tokenizer_sha256);
  const auto docs = read_documents(o.dir, m, o.skip, o.count);
  nlohmann::json out = nlohmann::json::array();
  for (size_t d = 0; d < docs.size(); ++d) {
    const PreviewDocument& doc = docs[d];
    std::string text;
    nlohmann::json spans = nlohmann::json::array();
    uint64_t trained = 0;
    for (size_t i = 0; i < doc.ids.size();) {  // runs of equal mask, decoded one run at a time
      size_t j = i;
      while (j < doc.ids.size() && doc.mask[j] == doc.mask[i]) ++j;
      const std::string piece = tokenizer.decode(std::span<const uint32_t>(doc.ids.data() + i, j - i));
      if (doc.mask[i]) {
        trained += j - i;
        spans.push_back(piece);
        text += o.open + piece + o.close;
      } else {
        text += piece;
      }
      i = j;
    }
    if (o.json) {
      out.push_back({{"document", o.skip + d}, {"tokens", doc.ids.size()}, {"trained_tokens", trained},
                     {"text", text}, {"trained_spans", spans}});
    } else {
      std::printf("--- document %llu: %zu tokens, %llu trained%s\n%s\n", static_cast<unsigned long long>(o.skip + d),
                  doc.ids.size(), static_cast<unsigned long long>(trained),
                  m.has_loss_mask ? "" : " (no loss mask: every token is trained)", text.c_str());
    }
  }
  if (o.json) std::printf("%s\n", out.dump().c_str());
  else if (m.has_loss_mask)
    std::printf("--- %s...%s marks the tokens the loss is computed on (loss mask 1)\n", o.open.c_str(), o.close.c_str());
}

void register_data_command(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Prepare, verify and inspect token shard datasets; benchmark the loader");
  data->require_subcommand(1);
  static DataOptions o;

  auto* prepare = data->add_subcommand("prepare", "Tokenize text files into shards with a manifest (docs/data.md)");
  prepare->add_option("--tokenizer", o.tokenizer, "tokenizer.json")->required()->check(CLI::ExistingFile);
  prepare->add_option("--input", o.prepare.inputs, "input files")->required()->expected(1, -1);
  prepare->add_option("--format", o.format,
                      "text: blank-line separated paragraphs; lines: one document per line; jsonl: one JSON object per line; "
                      "chat: one {\"messages\": [...]} conversation per line, EXAONE-4 template, loss mask on the assistant")
      ->check(CLI::IsMember({"text", "lines", "jsonl", "chat"}));
  prepare->add_option("--field", o.prepare.jsonl_field, "jsonl: the string field with the text")->default_val("text");
  prepare->add_option("--output", o.prepare.output_dir, "dataset directory (new or empty)")->required();
  prepare->add_option("--name", o.prepare.name, "dataset name")->required();
  prepare->add_option("--license", o.prepare.license, "SPDX license expression of the text, e.g. CC0-1.0")->required();
  prepare->add_option("--source", o.prepare.source, "where the text came from")->required();
  prepare->add_option("--eos", o.eos,
                      "end-of-document token (default: [|endofturn|] for chat, else eos_token of tokenizer_config.json next to it)");
  prepare->add_flag("--keep-reasoning", o.prepare.chat_keep_reasoning,
                    "chat: keep the last assistant message's reasoning (<think>...</think>; the template's skip_think=false)");
  prepare->add_option("--shard-tokens", o.prepare.shard_tokens, "tokens per shard")
      ->default_val(o.prepare.shard_tokens)->check(CLI::PositiveNumber);
  prepare->add_option("--threads", o.threads, "encoding threads (0: all cores)")->check(CLI::NonNegativeNumber);
  prepare->add_flag("--skip-bad", o.prepare.skip_bad,
                    "skip and count malformed JSONL lines (chat: also bad conversations) and oversized documents");
  prepare->add_option("--invalid-utf8", o.invalid_utf8, "documents with invalid UTF-8: replace (U+FFFD), skip, or error")
      ->check(CLI::IsMember({"replace", "skip", "error"}));
  prepare->add_option("--max-document-bytes", o.prepare.max_document_bytes, "longest document accepted")
      ->default_val(o.prepare.max_document_bytes)->check(CLI::PositiveNumber);
  prepare->callback([] {
    setup_logging("info", 0);
    run_prepare(o);
  });

  auto* verify = data->add_subcommand("verify", "Check every checksum, index and manifest entry of a dataset");
  verify->add_option("DIR", o.dir, "dataset directory")->required();
  verify->add_option("--tokenizer", o.tokenizer, "the run's tokenizer.json: the manifest must name its sha256")
      ->check(CLI::ExistingFile);
  verify->add_option("--tokenizer-sha256", o.tokenizer_sha256, "the run's tokenizer sha256");
  verify->add_option("--threads", o.threads, "shards checked in parallel (0: all cores)")->check(CLI::NonNegativeNumber);
  verify->callback([] {
    setup_logging("info", 0);
    run_verify(o);
  });

  auto* info = data->add_subcommand("info", "Print a dataset's manifest (text format)");
  info->add_option("DIR", o.dir, "dataset directory")->required();
  info->callback([] { std::fputs(manifest_to_text(read_manifest(o.dir)).c_str(), stdout); });

  auto* preview = data->add_subcommand("preview", "Decoded documents with the trained (loss-masked) tokens marked");
  static PreviewOptions pv;
  preview->add_option("DIR", pv.dir, "dataset directory")->required();
  preview->add_option("--tokenizer", pv.tokenizer, "the dataset's tokenizer.json (its sha256 must match the manifest)")
      ->required()->check(CLI::ExistingFile);
  preview->add_option("--n", pv.count, "documents to show")->capture_default_str()->check(CLI::PositiveNumber);
  preview->add_option("--skip", pv.skip, "documents to skip first")->capture_default_str();
  preview->add_option("--open", pv.open, "marker before a trained span")->capture_default_str();
  preview->add_option("--close", pv.close, "marker after a trained span")->capture_default_str();
  preview->add_flag("--json", pv.json, "one JSON array: per document its tokens, trained tokens, text and spans");
  preview->callback([] { run_preview(pv); });

  auto* bench = data->add_subcommand("bench", "Loader tokens/s per rank from the page cache vs a sequential copy");
  bench->add_option("DIRS", o.bench.datasets, "dataset directories (equal weights)")->required();
  bench->add_option("--seq-len", o.bench.seq_len, "sequence length")->default_val(o.bench.seq_len)->check(CLI::PositiveNumber);
  bench->add_option("--batch", o.bench.global_batch, "global batch (sequences)")
      ->default_val(o.bench.global_batch)->check(CLI::PositiveNumber);
  bench->add_option("--dp", o.bench.dp_size, "data-parallel ranks (rank 0 is measured)")
      ->default_val(o.bench.dp_size)->check(CLI::PositiveNumber);
  bench->add_option("--batches", o.bench.batches, "batches timed")->default_val(o.bench.batches)->check(CLI::PositiveNumber);
  bench->callback([] {
    setup_logging("info", 0);
    std::fputs(format_loader_bench(o.bench, run_loader_bench(o.bench)).c_str(), stdout);
  });
}

CommandRegistration registration("data", 70, register_data_command);

}  // namespace

}  // namespace exatrain
