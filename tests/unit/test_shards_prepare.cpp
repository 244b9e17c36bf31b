// Preparation: documents out of text, lines and JSONL exactly as documented; every bad-input
// policy; manifest provenance; byte-identical output for any thread count; memory that does
// not grow with the input.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "data/shards/manifest.h"
#include "data/shards/prepare.h"
#include "trainer/core/sha256.h"
#include "data/shards/testing.h"
#include "data/shards/token_dataset.h"
#include "data/shards/verify.h"
#include "trainer/core/error.h"
#include "tests/unit/expect_error.h"

namespace exatrain {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

// The documents of a byte-tokenized dataset, read back through the shards: each document's
// bytes, without its EOS (checked to be there).
std::vector<std::string> documents_of(const std::string& dir) {
  const TokenDataset ds(dir);
  std::vector<int32_t> tokens(ds.tokens());
  ds.read(0, ds.tokens(), tokens.data());
  std::vector<int32_t> starts;
  ds.document_starts(0, ds.tokens(), starts);
  std::vector<std::string> docs;
  for (size_t d = 0; d < starts.size(); ++d) {
    const size_t end = d + 1 < starts.size() ? static_cast<size_t>(starts[d + 1]) : tokens.size();
    EXPECT_EQ(tokens[end - 1], 256) << "document " << d << " does not end with EOS";
    std::string doc;
    for (size_t i = static_cast<size_t>(starts[d]); i + 1 < end; ++i) doc += static_cast<char>(tokens[i]);
    docs.push_back(doc);
  }
  return docs;
}

DatasetManifest prepare(const std::string& input_text, InputFormat format, const TempDir& dir,
                        std::function<void(PrepareOptions&)> tweak = {}) {
  testing::write_file(dir / "input", input_text);
  auto o = testing::prepare_options({dir / "input"}, dir / "out", format);
  if (tweak) tweak(o);
  return prepare_dataset(o, testing::byte_tokenizer());
}

TEST(Prepare, TextParagraphsAreBlankLineSeparated) {
  TempDir dir;
  // Leading blank lines, whitespace-only separators, CRLF inside a paragraph, a trailing space
  // kept, several blank lines, and a last line without a newline.
  const std::string input = "\n\nFirst line\nsecond line\n \t\nCRLF one\r\nCRLF two\r\n\r\n\n\nsolo \n\n\nlast";
  const auto m = prepare(input, InputFormat::Text, dir);
  EXPECT_EQ(documents_of(dir / "out"),
            (std::vector<std::string>{"First line\nsecond line", "CRLF one\r\nCRLF two", "solo ", "last"}));
  EXPECT_EQ(m.total_documents, 4u);
  EXPECT_EQ(m.skipped_empty_documents, 0u);  // blank lines separate, they are not documents
  EXPECT_EQ(m.input_format, "text");
  EXPECT_EQ(m.total_tokens, 22u + 18u + 5u + 4u + 4u);  // bytes + one EOS each
}

TEST(Prepare, LinesAreDocumentsAndBlankLinesCountAsEmpty) {
  TempDir dir;
  const auto m = prepare("one\r\n\ntwo\n   \nthree\r", InputFormat::Lines, dir);
  // The last line has no "\n": its "\r" is content, not a terminator.
  EXPECT_EQ(documents_of(dir / "out"), (std::vector<std::string>{"one", "two", "three\r"}));
  EXPECT_EQ(m.skipped_empty_documents, 2u);
  EXPECT_EQ(m.inputs[0].documents, 3u);
}

TEST(Prepare, JsonlTakesTheField) {
  TempDir dir;
  const std::string input =
      "{\"text\": \"hello\", \"id\": 1}\n"
      "{\"id\": 2, \"text\": \"caf\\u00e9 \\ud83d\\ude00\\nline\"}\r\n"
      "{\"text\": \"   \"}\n"
      "\n"
      "{\"text\": \"\"}\n"
      "{\"text\": \"bye\"}";
  const auto m = prepare(input, InputFormat::Jsonl, dir);
  EXPECT_EQ(documents_of(dir / "out"), (std::vector<std::string>{"hello", "caf\xc3\xa9 \xf0\x9f\x98\x80\nline", "bye"}));
  EXPECT_EQ(m.skipped_empty_documents, 3u);  // "   ", the blank line, ""
  EXPECT_EQ(m.jsonl_field, "text");
  EXPECT_EQ(m.skipped_bad_records, 0u);
}

TEST(Prepare, JsonlOtherField) {
  TempDir dir;
  prepare("{\"body\": \"x\", \"text\": 5}\n", InputFormat::Jsonl, dir, [](auto& o) { o.jsonl_field = "body"; });
  EXPECT_EQ(documents_of(dir / "out"), std::vector<std::string>{"x"});
}

TEST(Prepare, MalformedJsonlIsAnErrorWithFileAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"text\": \"a\"}\n{\"text\": \"b\"\n", "input:2: malformed JSON"},
      {"{\"text\": \"a\"}\n\n[1, 2]\n", "input:3: expected a JSON object, found array"},
      {"{\"txt\": \"a\"}\n", "input:1: no field \"text\""},
      {"{\"text\": \"a\"}\n{\"text\": 5}\n", "input:2: field \"text\" is number, expected a string"},
      {"{\"text\": \"\\ud800\"}\n", "input:1: malformed JSON"},  // a lone surrogate
      {"{\"text\": \"a\"}\n{\"text\": 1e999}\n", "input:2: malformed JSON: number overflow parsing '1e999' at line 1, column 10"},
  };
  for (const auto& [input, message] : cases) {
    TempDir dir;
    expect_error([&] { prepare(input, InputFormat::Jsonl, dir); }, {message, "--skip-bad"});
    EXPECT_FALSE(fs::exists(dir / "out")) << "a failed preparation leaves nothing behind";
  }
}

TEST(Prepare, SkipBadCountsMalformedRecords) {
  TempDir dir;
  const std::string input = "{\"text\": \"a\"}\nnot json\n[1]\n{\"text\": 5}\n{\"other\": \"x\"}\n{\"text\": \"b\"}\n";
  const auto m = prepare(input, InputFormat::Jsonl, dir, [](auto& o) { o.skip_bad = true; });
  EXPECT_EQ(documents_of(dir / "out"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(m.skipped_bad_records, 4u);
}

const std::string kInvalidUtf8 = "good one\n\nbad \xff here\n\nalso bad \xe2\x82\n\ngood two";

TEST(Prepare, InvalidUtf8ReplacePolicy) {
  TempDir dir;
  const auto m = prepare(kInvalidUtf8, InputFormat::Text, dir);
  EXPECT_EQ(m.invalid_utf8_policy, "replace");
  EXPECT_EQ(m.invalid_utf8_documents, 2u);
  EXPECT_EQ(documents_of(dir / "out"),
            (std::vector<std::string>{"good one", "bad \xef\xbf\xbd here", "also bad \xef\xbf\xbd", "good two"}));
}

TEST(Prepare, InvalidUtf8SkipPolicy) {
  TempDir dir;
  const auto m = prepare(kInvalidUtf8, InputFormat::Text, dir, [](auto& o) { o.invalid_utf8 = InvalidUtf8Policy::Skip; });
  EXPECT_EQ(m.invalid_utf8_documents, 2u);
  EXPECT_EQ(documents_of(dir / "out"), (std::vector<std::string>{"good one", "good two"}));
}

TEST(Prepare, InvalidUtf8ErrorPolicy) {
  TempDir dir;
  expect_error([&] { prepare(kInvalidUtf8, InputFormat::Text, dir, [](auto& o) { o.invalid_utf8 = InvalidUtf8Policy::Error; }); },
               {"input:3: invalid UTF-8 at byte 4 of the document"});
}

TEST(Prepare, InvalidUtf8InJsonlIsRepairedBeforeParsing) {
  TempDir dir;
  const auto m = prepare("{\"text\": \"a\xc0 b\"}\n", InputFormat::Jsonl, dir);
  EXPECT_EQ(m.invalid_utf8_documents, 1u);
  EXPECT_EQ(documents_of(dir / "out"), std::vector<std::string>{"a\xef\xbf\xbd b"});
}

TEST(Prepare, TokenIdOutsideVocabularyIsAnError) {
  TempDir dir;
  testing::write_file(dir / "input", "fine\n\nfine too\n\nhas a \x01 byte\n");
  auto o = testing::prepare_options({dir / "input"}, dir / "out", InputFormat::Text);
  auto tok = testing::byte_tokenizer();
  tok.encode = [](std::string_view text) {
    std::vector<uint32_t> ids;
    for (unsigned char c : text) ids.push_back(c == 1 ? 4000 : c);
    return ids;
  };
  expect_error([&] { prepare_dataset(o, tok); },
               {"input:5: token id 4000 (token 6 of the document) is outside the vocabulary (size 257)"});
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(Prepare, TokenizerExceptionNamesTheDocument) {
  TempDir dir;
  testing::write_file(dir / "input", "one\n\ntwo\n\nthree\n");
  auto o = testing::prepare_options({dir / "input"}, dir / "out", InputFormat::Text);
  o.threads = 3;
  auto tok = testing::byte_tokenizer();
  const auto inner = tok.encode;
  tok.encode = [inner](std::string_view text) {
    if (text == "two") throw std::runtime_error("cannot encode that");
    return inner(text);
  };
  expect_error([&] { prepare_dataset(o, tok); }, {"input:3: the tokenizer failed: cannot encode that"});
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(Prepare, OversizedDocument) {
  TempDir dir;
  const std::string input = "short\n" + std::string(5000, 'x') + "\nshort again\n";
  expect_error([&] { prepare(input, InputFormat::Lines, dir, [](auto& o) { o.max_document_bytes = 1000; }); },
               {"input:2: document longer than 1000 bytes"});
  const auto m = prepare(input, InputFormat::Lines, dir, [](auto& o) {
    o.max_document_bytes = 1000;
    o.skip_bad = true;
  });
  EXPECT_EQ(m.skipped_bad_records, 1u);
  EXPECT_EQ(documents_of(dir / "out"), (std::vector<std::string>{"short", "short again"}));
}

TEST(Prepare, NothingToWriteIsAnError) {
  TempDir dir;
  expect_error([&] { prepare("\n  \n\t\n", InputFormat::Lines, dir); }, {"no documents", "3 empty"});
}

TEST(Prepare, OptionsAreChecked) {
  TempDir dir;
  testing::write_file(dir / "input", "x");
  fs::create_directories(dir / "busy");
  testing::write_file(dir / "busy/file", "x");
  const auto tok = testing::byte_tokenizer();
  auto base = testing::prepare_options({dir / "input"}, dir / "out", InputFormat::Text);
  auto o = base;
  o.output_dir = dir / "busy";
  expect_error([&] { prepare_dataset(o, tok); }, {"busy", "is not empty"});
  o = base;
  o.license = "MIT License";
  expect_error([&] { prepare_dataset(o, tok); }, {"'MIT License' is not an SPDX license expression"});
  o = base;
  o.inputs = {dir / "nope.txt"};
  expect_error([&] { prepare_dataset(o, tok); }, {"nope.txt", "not a readable file"});
  o = base;
  o.source = "";
  expect_error([&] { prepare_dataset(o, tok); }, {"--source"});
  auto bad_eos = tok;
  bad_eos.eos_id = 257;
  expect_error([&] { prepare_dataset(base, bad_eos); }, {"EOS id 257 is outside the vocabulary (size 257)"});
}

// A few MB of mixed documents (multi-chunk: exercises the reordering of encoded chunks).
std::string synthetic_corpus(size_t bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string text;
  const char* words[] = {"alpha", "beta", "gamma", "delta", "\xea\xb0\x80\xeb\x82\x98", "epsilon", "zeta", "\xf0\x9f\x98\x80"};
  while (text.size() < bytes) {
    const int n = 1 + static_cast<int>(rng() % 300);
    for (int w = 0; w < n; ++w) {
      text += words[rng() % 8];
      text += (rng() % 13 == 0) ? "\n" : " ";
    }
    text += "\n\n";
  }
  return text;
}

TEST(Prepare, OutputIsIdenticalForAnyThreadCount) {
  TempDir dir;
  testing::write_file(dir / "a.txt", synthetic_corpus(3'000'000, 1));
  testing::write_file(dir / "b.txt", synthetic_corpus(1'500'000, 2));
  std::vector<std::string> outs;
  for (int threads : {1, 3}) {
    auto o = testing::prepare_options({dir / "a.txt", dir / "b.txt"}, dir / ("out" + std::to_string(threads)), InputFormat::Text);
    o.threads = threads;
    o.shard_tokens = 400'000;
    prepare_dataset(o, testing::byte_tokenizer());
    outs.push_back(o.output_dir);
  }
  const DatasetManifest m1 = read_manifest(outs[0]);
  const DatasetManifest m3 = read_manifest(outs[1]);
  EXPECT_EQ(m1, m3);
  ASSERT_GE(m1.shards.size(), 10u);
  for (const auto& s : m1.shards)
    EXPECT_EQ(testing::read_file(outs[0] + "/" + s.file), testing::read_file(outs[1] + "/" + s.file)) << s.file;
  EXPECT_EQ(testing::read_file(outs[0] + "/manifest.pb"), testing::read_file(outs[1] + "/manifest.pb"));
}

TEST(Prepare, ManifestRecordsProvenance) {
  TempDir dir;
  const std::string a = synthetic_corpus(200'000, 3), b = "one\n\ntwo\n";
  testing::write_file(dir / "a.txt", a);
  testing::write_file(dir / "b.txt", b);
  auto o = testing::prepare_options({dir / "a.txt", dir / "b.txt"}, dir / "out", InputFormat::Text);
  o.name = "mixed";
  o.license = "CC-BY-4.0 OR MIT";
  o.source = "synthetic words";
  o.shard_tokens = 50'000;
  const auto tok = testing::byte_tokenizer();
  const DatasetManifest m = prepare_dataset(o, tok);
  EXPECT_EQ(read_manifest(dir / "out"), m);
  EXPECT_EQ(read_manifest_text(dir / "out"), m);
  EXPECT_EQ(m.name, "mixed");
  EXPECT_EQ(m.license, "CC-BY-4.0 OR MIT");
  EXPECT_EQ(m.source, "synthetic words");
  EXPECT_EQ(m.tokenizer_sha256, tok.sha256);
  EXPECT_EQ(m.vocab_size, 257u);
  EXPECT_EQ(m.eos_id, 256u);
  EXPECT_EQ(m.dtype, TokenDtype::UInt16);
  EXPECT_EQ(m.created_by.rfind("exatrain ", 0), 0u);
  ASSERT_EQ(m.inputs.size(), 2u);
  EXPECT_EQ(m.inputs[0].name, dir / "a.txt");
  EXPECT_EQ(m.inputs[0].sha256, exatrain::sha256_file_hex(dir / "a.txt"));
  EXPECT_EQ(m.inputs[0].bytes, a.size());
  EXPECT_EQ(m.inputs[1].sha256, exatrain::sha256_file_hex(dir / "b.txt"));
  EXPECT_EQ(m.inputs[1].documents, 2u);
  EXPECT_EQ(m.input_bytes, a.size() + b.size());
  const auto docs = documents_of(dir / "out");
  EXPECT_EQ(m.total_documents, docs.size());
  EXPECT_EQ(m.inputs[0].documents + 2, docs.size());
  EXPECT_EQ(docs[docs.size() - 2], "one");
  uint64_t tokens = 0;
  for (const auto& d : docs) tokens += d.size() + 1;
  EXPECT_EQ(m.total_tokens, tokens);
  EXPECT_EQ(m.shards.size(), (tokens + 49'999) / 50'000);
  for (const auto& s : m.shards) EXPECT_EQ(s.sha256, exatrain::sha256_file_hex(dir / ("out/" + s.file)));
  const VerifyReport report = verify_dataset(dir / "out", tok.sha256);
  EXPECT_TRUE(report.ok()) << (report.problems.empty() ? "" : report.problems[0]);
  EXPECT_EQ(report.shards_checked, m.shards.size());
}

TEST(Prepare, Uint32Shards) {
  TempDir dir;
  testing::write_file(dir / "in", "\xff\xfe ok\n\nab");  // invalid UTF-8 -> U+FFFD (EF BF BD) twice
  auto o = testing::prepare_options({dir / "in"}, dir / "out", InputFormat::Text);
  const auto m = prepare_dataset(o, testing::wide_byte_tokenizer());
  EXPECT_EQ(m.dtype, TokenDtype::UInt32);
  const TokenDataset ds(dir / "out");
  std::vector<int32_t> tokens(ds.tokens());
  ds.read(0, ds.tokens(), tokens.data());
  std::vector<int32_t> expected;
  for (unsigned char c : std::string("\xef\xbf\xbd\xef\xbf\xbd ok")) expected.push_back(static_cast<int32_t>(testing::wide_id(c)));
  expected.push_back(1);
  for (unsigned char c : std::string("ab")) expected.push_back(static_cast<int32_t>(testing::wide_id(c)));
  expected.push_back(1);
  EXPECT_EQ(tokens, expected);
  EXPECT_GT(*std::max_element(tokens.begin(), tokens.end()), 65535);
}

// Peak resident memory of preparing `bytes` of input, measured in a child process.
long peak_rss_kb_preparing(size_t bytes, const std::string& dir) {
  const std::string input = dir + "/in-" + std::to_string(bytes);
  {
    std::ofstream out(input, std::ios::binary);
    const std::string block = synthetic_corpus(1 << 20, 5);
    for (size_t written = 0; written < bytes; written += block.size()) out << block;
  }
  int pipefd[2];
  if (pipe(pipefd) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    auto o = testing::prepare_options({input}, dir + "/out-" + std::to_string(bytes), InputFormat::Text);
    o.threads = 2;
    o.shard_tokens = 1 << 22;
    long kb = -1;
    try {
      prepare_dataset(o, testing::byte_tokenizer());
      rusage usage{};
      getrusage(RUSAGE_SELF, &usage);
      kb = usage.ru_maxrss;
    } catch (...) {
    }
    if (write(pipefd[1], &kb, sizeof kb) != sizeof kb) _exit(2);
    _exit(0);
  }
  close(pipefd[1]);
  long kb = -1;
  if (read(pipefd[0], &kb, sizeof kb) != sizeof kb) kb = -1;
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return kb;
}

TEST(Prepare, MemoryDoesNotGrowWithTheInput) {
  TempDir dir;
  const long small = peak_rss_kb_preparing(size_t{24} << 20, dir.path());
  const long large = peak_rss_kb_preparing(size_t{96} << 20, dir.path());
  ASSERT_GT(small, 0);
  ASSERT_GT(large, 0);
  std::printf("peak RSS: %ld MB preparing 24 MB, %ld MB preparing 96 MB\n", small / 1024, large / 1024);
  // 72 MB more input (and 144 MB more uint16 shards) may cost at most 16 MB more memory.
  EXPECT_LT(large - small, 16 * 1024);
}

}  // namespace
}  // namespace exatrain
