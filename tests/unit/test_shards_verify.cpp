// `exatrain data verify`: a prepared dataset passes; each kind of damage is found and named.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "data/shards/manifest.h"
#include "data/shards/prepare.h"
#include "trainer/core/sha256.h"
#include "data/shards/shard_format.h"
#include "data/shards/testing.h"
#include "data/shards/verify.h"
#include "trainer/core/error.h"

namespace exatrain {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

class Verify : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string text;
    for (int d = 0; d < 200; ++d) text += "document number " + std::to_string(d) + std::string(d % 17, '!') + "\n\n";
    testing::write_file(tmp / "in.txt", text);
    auto o = testing::prepare_options({tmp / "in.txt"}, dir, InputFormat::Text);
    o.shard_tokens = 1000;
    manifest = prepare_dataset(o, testing::byte_tokenizer());
    ASSERT_GE(manifest.shards.size(), 4u);
  }
  std::string shard(size_t i) const { return dir + "/" + manifest.shards[i].file; }
  // Rewrites the manifest's recorded checksum of shard i to match its (modified) bytes.
  void rehash(size_t i) {
    manifest.shards[i].sha256 = exatrain::sha256_file_hex(shard(i));
    write_manifest(dir, manifest);
  }
  // The report must have exactly one problem, holding every part.
  void expect_problem(std::initializer_list<std::string> parts, const std::string& tokenizer = "") {
    const VerifyReport r = verify_dataset(dir, tokenizer);
    ASSERT_EQ(r.problems.size(), 1u) << ::testing::PrintToString(r.problems);
    for (const auto& p : parts) EXPECT_NE(r.problems[0].find(p), std::string::npos) << r.problems[0] << "\nmissing: " << p;
  }
  void patch(size_t shard_index, size_t offset, const void* bytes, size_t n) {
    std::string b = testing::read_file(shard(shard_index));
    std::memcpy(b.data() + offset, bytes, n);
    testing::write_file(shard(shard_index), b);
  }
  TempDir tmp;
  std::string dir = tmp / "ds";
  DatasetManifest manifest;
};

TEST_F(Verify, PreparedDatasetPasses) {
  const VerifyReport r = verify_dataset(dir, std::string(64, 'b'));
  EXPECT_TRUE(r.ok()) << ::testing::PrintToString(r.problems);
  EXPECT_EQ(r.shards_checked, manifest.shards.size());
  uint64_t bytes = 0;
  for (const auto& s : manifest.shards) bytes += s.bytes;
  EXPECT_EQ(r.bytes_hashed, bytes);
  EXPECT_NO_THROW(require_verified(dir, r));
}

TEST_F(Verify, ChecksumMismatch) {
  const uint16_t id = 'Z';
  patch(1, 64 + 2 * 10, &id, 2);
  expect_problem({"shard-00001.bin: sha256 is ", "the manifest says " + manifest.shards[1].sha256});
}

TEST_F(Verify, TruncatedShard) {
  fs::resize_file(shard(2), fs::file_size(shard(2)) - 8);
  expect_problem({"shard-00002.bin", "truncated"});
}

TEST_F(Verify, MissingShard) {
  fs::remove(shard(3));
  expect_problem({"shard-00003.bin: missing"});
}

TEST_F(Verify, StrayFiles) {
  fs::copy_file(shard(0), dir + "/shard-00099.bin");
  testing::write_file(dir + "/shard-00005.bin.tmp.4242", "x");  // AtomicFileWriter's name
  testing::write_file(dir + "/shard-00006.bin.tmp", "x");       // what older versions left
  const VerifyReport r = verify_dataset(dir);
  ASSERT_EQ(r.problems.size(), 3u) << ::testing::PrintToString(r.problems);
  EXPECT_EQ(r.problems[0], "shard-00005.bin.tmp.4242: an unfinished temporary file");
  EXPECT_EQ(r.problems[1], "shard-00006.bin.tmp: an unfinished temporary file");
  EXPECT_EQ(r.problems[2], "shard-00099.bin: a shard file the manifest does not list");
}

TEST_F(Verify, TokenizerMismatch) {
  expect_problem({"manifest.pb: tokenized with tokenizer sha256 " + std::string(64, 'b'), "this run's tokenizer is " + std::string(64, 'c')},
                 std::string(64, 'c'));
}

TEST_F(Verify, TextManifestDisagrees) {
  DatasetManifest other = manifest;
  other.license = "MIT";
  testing::write_file(dir + "/manifest.txtpb", manifest_to_text(other));
  expect_problem({"manifest.txtpb: says something different from manifest.pb"});
}

TEST_F(Verify, CorruptManifest) {
  testing::write_file(dir + "/manifest.pb", "\xff\xff\xff");
  const VerifyReport r = verify_dataset(dir);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].find("not a valid Protocol Buffers message"), std::string::npos) << r.problems[0];
  fs::remove(dir + "/manifest.pb");
  EXPECT_NE(verify_dataset(dir).problems.at(0).find("no manifest.pb"), std::string::npos);
}

TEST_F(Verify, ManifestCountsDisagreeWithShard) {
  manifest.shards[0].documents += 1;
  manifest.total_documents += 1;
  manifest.inputs[0].documents += 1;
  write_manifest(dir, manifest);
  expect_problem({"shard-00000.bin: ", "documents start here, the manifest says"});
}

TEST_F(Verify, ManifestTotalsInconsistent) {
  manifest.total_tokens += 5;
  write_manifest(dir, manifest);
  expect_problem({"manifest.pb: total_tokens", "the shards add up to"});
}

TEST_F(Verify, IdOutsideVocabulary) {
  const uint16_t id = 300;  // vocabulary 257
  patch(1, 64 + 2 * 7, &id, 2);
  rehash(1);
  expect_problem({"shard-00001.bin", "token 7 is id 300, outside the vocabulary (size 257)"});
}

TEST_F(Verify, MissingEosBeforeDocument) {
  // The token before shard 0's second document is its first document's EOS; overwrite it.
  std::string b = testing::read_file(shard(0));
  const ShardHeader h = decode_shard_header(reinterpret_cast<const uint8_t*>(b.data()), shard(0));
  uint64_t second;
  std::memcpy(&second, b.data() + shard_layout(h).index_offset + 8, 8);
  const uint16_t id = 'x';
  patch(0, 64 + 2 * (second - 1), &id, 2);
  rehash(0);
  expect_problem({"shard-00000.bin: document 1 starts at token " + std::to_string(second), "not EOS (256)"});
}

TEST_F(Verify, ManyProblemsMakeOneErrorLine) {
  fs::remove(shard(0));
  fs::remove(shard(1));
  const VerifyReport r = verify_dataset(dir, std::string(64, 'c'));
  EXPECT_EQ(r.problems.size(), 3u);
  try {
    require_verified(dir, r);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("dataset '" + dir + "': 3 problems: manifest.pb: tokenized with"), std::string::npos) << what;
    EXPECT_NE(what.find("; shard-00000.bin: missing; shard-00001.bin: missing"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos);
  }
}

}  // namespace
}  // namespace exatrain
