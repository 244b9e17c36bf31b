#include "data/shards/verify.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <set>

#include "trainer/core/atomic_file.h"
#include "trainer/core/sha256.h"
#include "data/shards/shard_reader.h"
#include "trainer/core/error.h"
#include "trainer/core/thread_pool.h"

namespace exatrain {

namespace fs = std::filesystem;

namespace {

// What one shard's check found: its problems, and its first and last token (for the EOS rule
// across shard boundaries).
struct ShardCheck {
  std::vector<std::string> problems;
  bool readable = false;
  uint32_t last_token = 0;
  bool starts_with_document = false;
  uint64_t bytes_hashed = 0;
};

ShardCheck check_shard(const fs::path& dir, const ManifestShard& entry, const DatasetManifest& m) {
  ShardCheck out;
  const std::string name = entry.file;
  auto problem = [&](std::string what) { out.problems.push_back(name + ": " + std::move(what)); };
  const fs::path path = dir / entry.file;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    problem("missing");
    return out;
  }
  std::optional<ShardReader> shard;
  try {
    shard.emplace(path.string());
  } catch (const Error& e) {
    out.problems.push_back(e.what());  // names the file
    return out;
  }
  const auto bytes = shard->file_bytes();
  const std::string sha = exatrain::sha256_hex(bytes);
  out.bytes_hashed = bytes.size();
  if (sha != entry.sha256) problem(fmt::format("sha256 is {}, the manifest says {}", sha, entry.sha256));
  if (bytes.size() != entry.bytes) problem(fmt::format("{} bytes, the manifest says {}", bytes.size(), entry.bytes));
  if (shard->tokens() != entry.tokens)
    problem(fmt::format("{} tokens, the manifest says {}", shard->tokens(), entry.tokens));
  if (shard->documents() != entry.documents)
    problem(fmt::format("{} documents start here, the manifest says {}", shard->documents(), entry.documents));
  if (shard->dtype() != m.dtype)
    problem(fmt::format("{} ids, the manifest says {}", dtype_name(shard->dtype()), dtype_name(m.dtype)));
  if (shard->header().vocab_size != m.vocab_size)
    problem(fmt::format("vocabulary size {} in the header, the manifest says {}", shard->header().vocab_size, m.vocab_size));
  if (shard->header().version != m.shard_format_version)
    problem(fmt::format("shard format version {}, the manifest says {}", shard->header().version, m.shard_format_version));
  if (shard->has_loss_mask() != m.has_loss_mask)
    problem(fmt::format("{} a loss mask, the manifest says the dataset {}", shard->has_loss_mask() ? "has" : "has no",
                        m.has_loss_mask ? "has one" : "has none"));
  try {
    const uint64_t ones = shard->count_loss_mask_tokens();
    if (ones != entry.loss_mask_tokens)
      problem(fmt::format("{} tokens have loss-mask bit 1, the manifest says {}", ones, entry.loss_mask_tokens));
  } catch (const Error& e) {
    out.problems.push_back(e.what());
  }
  try {
    shard->check_token_ids();
  } catch (const Error& e) {
    out.problems.push_back(e.what());
  }
  // Every document ends with EOS: the token before each document start must be EOS.
  const auto starts = shard->document_starts();
  for (uint64_t d = 0; d < starts.size(); ++d) {
    if (starts[d] > 0 && shard->token(starts[d] - 1) != m.eos_id) {
      problem(fmt::format("document {} starts at token {}, but token {} before it is {}, not EOS ({})", d, starts[d],
                          starts[d] - 1, shard->token(starts[d] - 1), m.eos_id));
      break;
    }
  }
  out.readable = true;
  out.starts_with_document = !starts.empty() && starts[0] == 0;
  out.last_token = shard->tokens() > 0 ? shard->token(shard->tokens() - 1) : 0;
  return out;
}

void check_manifest(const DatasetManifest& m, const std::string& expected_tokenizer, std::vector<std::string>& problems) {
  auto problem = [&](std::string what) { problems.push_back(std::string(kManifestFile) + ": " + std::move(what)); };
  if (!expected_tokenizer.empty() && m.tokenizer_sha256 != expected_tokenizer)
    problem(fmt::format("tokenized with tokenizer sha256 {}, but this run's tokenizer is {}", m.tokenizer_sha256,
                        expected_tokenizer));
  if (m.vocab_size == 0) problem("vocabulary size 0");
  if (m.vocab_size > 0 && dtype_for_vocab(m.vocab_size) != m.dtype)
    problem(fmt::format("dtype {} does not match vocabulary size {}", dtype_name(m.dtype), m.vocab_size));
  if (m.eos_id >= m.vocab_size) problem(fmt::format("EOS id {} outside the vocabulary ({})", m.eos_id, m.vocab_size));
  if (m.shard_format_version < kOldestShardFormatVersion || m.shard_format_version > kShardFormatVersion)
    problem(fmt::format("shard format version {}, this exatrain reads versions {} to {}", m.shard_format_version,
                        kOldestShardFormatVersion, kShardFormatVersion));
  if (m.has_loss_mask && m.shard_format_version < 2)
    problem(fmt::format("has a loss mask, which needs shard format version 2, not {}", m.shard_format_version));
  if (m.input_format == "chat" && !m.has_loss_mask) problem("chat data without a loss mask");
  if (m.shards.empty()) problem("lists no shards");
  uint64_t tokens = 0, documents = 0, input_bytes = 0, input_documents = 0, mask_tokens = 0;
  std::set<std::string> names;
  for (size_t i = 0; i < m.shards.size(); ++i) {
    const auto& s = m.shards[i];
    tokens += s.tokens;
    documents += s.documents;
    mask_tokens += s.loss_mask_tokens;
    if (s.loss_mask_tokens > s.tokens)
      problem(fmt::format("shard {} ({}) has {} loss-mask tokens, more than its {} tokens", i, s.file, s.loss_mask_tokens,
                          s.tokens));
    if (!names.insert(s.file).second) problem(fmt::format("shard {} ({}) is listed twice", i, s.file));
    if (s.file.find('/') != std::string::npos || s.file == "..")
      problem(fmt::format("shard {} file name '{}' is not a plain file name", i, s.file));
    if (s.tokens == 0) problem(fmt::format("shard {} ({}) holds no tokens", i, s.file));
    if (i + 1 < m.shards.size() && s.tokens != m.shard_tokens)
      problem(fmt::format("shard {} ({}) holds {} tokens; every shard but the last holds {}", i, s.file, s.tokens,
                          m.shard_tokens));
    if (s.tokens > m.shard_tokens)
      problem(fmt::format("shard {} ({}) holds {} tokens, more than the shard size {}", i, s.file, s.tokens, m.shard_tokens));
  }
  for (const auto& in : m.inputs) {
    input_bytes += in.bytes;
    input_documents += in.documents;
  }
  if (tokens != m.total_tokens) problem(fmt::format("total_tokens {}, the shards add up to {}", m.total_tokens, tokens));
  if (documents != m.total_documents)
    problem(fmt::format("total_documents {}, the shards add up to {}", m.total_documents, documents));
  if (mask_tokens != m.loss_mask_tokens)
    problem(fmt::format("loss_mask_tokens {}, the shards add up to {}", m.loss_mask_tokens, mask_tokens));
  if (input_bytes != m.input_bytes)
    problem(fmt::format("input_bytes {}, the input files add up to {}", m.input_bytes, input_bytes));
  if (input_documents != m.total_documents)
    problem(fmt::format("total_documents {}, the input files add up to {}", m.total_documents, input_documents));
}

}  // namespace

VerifyReport verify_dataset(const std::string& dir, const std::string& expected_tokenizer_sha256, int threads) {
  const auto start = std::chrono::steady_clock::now();
  VerifyReport report;
  if (!fs::is_directory(dir)) {
    report.problems.push_back(fmt::format("'{}' is not a directory", dir));
    return report;
  }
  try {
    report.manifest = read_manifest(dir);
  } catch (const Error& e) {
    report.problems.push_back(e.what());
    return report;
  }
  const DatasetManifest& m = report.manifest;
  try {
    if (read_manifest_text(dir) != m)
      report.problems.push_back(fmt::format("{}: says something different from {}", kManifestTextFile, kManifestFile));
  } catch (const Error& e) {
    report.problems.push_back(e.what());
  }
  check_manifest(m, expected_tokenizer_sha256, report.problems);

  // Shards in parallel; results kept per shard so the report order is fixed.
  std::vector<ShardCheck> checks(m.shards.size());
  {
    ThreadPool pool(std::min<int>(resolve_thread_count(threads), static_cast<int>(std::max<size_t>(1, checks.size()))));
    pool.parallel_for(checks.size(), [&](size_t i) { checks[i] = check_shard(dir, m.shards[i], m); });
  }

  for (size_t i = 0; i < checks.size(); ++i) {
    auto& c = checks[i];
    report.problems.insert(report.problems.end(), c.problems.begin(), c.problems.end());
    report.bytes_hashed += c.bytes_hashed;
    if (!c.readable) continue;
    ++report.shards_checked;
    if (i == 0 && !c.starts_with_document)
      report.problems.push_back(m.shards[i].file + ": the dataset's first shard does not start with a document");
    if (i > 0 && checks[i - 1].readable && c.starts_with_document && checks[i - 1].last_token != m.eos_id)
      report.problems.push_back(fmt::format("{}: starts a document, but the previous shard ends with {}, not EOS ({})",
                                            m.shards[i].file, checks[i - 1].last_token, m.eos_id));
    if (i + 1 == checks.size() && c.last_token != m.eos_id)
      report.problems.push_back(fmt::format("{}: the dataset's last token is {}, not EOS ({})", m.shards[i].file,
                                            c.last_token, m.eos_id));
  }

  // Nothing in the directory that the manifest does not account for.
  std::set<std::string> listed;
  for (const auto& s : m.shards) listed.insert(s.file);
  std::vector<std::string> strays;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const bool shard_like = name.rfind("shard-", 0) == 0;
    // NAME.tmp.<pid> from AtomicFileWriter; NAME.tmp from exatrain before it.
    const bool tmp = is_atomic_temp_name(name) || name.ends_with(".tmp");
    if (tmp)
      strays.push_back(name + ": an unfinished temporary file");
    else if (shard_like && !listed.count(name))
      strays.push_back(name + ": a shard file the manifest does not list");
  }
  std::sort(strays.begin(), strays.end());
  report.problems.insert(report.problems.end(), strays.begin(), strays.end());
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

void require_verified(const std::string& dir, const VerifyReport& report) {
  if (report.ok()) return;
  constexpr size_t kShown = 5;
  std::string list;
  for (size_t i = 0; i < std::min(kShown, report.problems.size()); ++i) list += (i ? "; " : "") + report.problems[i];
  if (report.problems.size() > kShown) list += fmt::format("; and {} more", report.problems.size() - kShown);
  fail("dataset '{}': {} problem{}: {}", dir, report.problems.size(), report.problems.size() == 1 ? "" : "s", list);
}

}  // namespace exatrain
