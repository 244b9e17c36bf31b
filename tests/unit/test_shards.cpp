// Token shards: SHA-256, UTF-8 repair, the shard file (write, memory-mapped read, every kind
// of corruption), the manifest and its two files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>

#include "data/shards/manifest.h"
#include "data/shards/prepare.h"
#include "trainer/core/sha256.h"
#include "data/shards/shard_reader.h"
#include "data/shards/shard_writer.h"
#include "data/shards/spdx.h"
#include "data/shards/testing.h"
#include "trainer/core/utf8.h"
#include "trainer/core/error.h"
#include "tests/unit/expect_error.h"

namespace exatrain {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::string sha_of(std::string_view s) { return exatrain::sha256_hex({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }

TEST(Sha256, NistVectors) {
  EXPECT_EQ(sha_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha_of(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// A copy goes on from the same state; a moved-from or finished hasher starts over.
TEST(Sha256, CopyMoveAndDigestStartOver) {
  exatrain::Sha256 h;
  h.update(std::string_view("ab"));
  exatrain::Sha256 copy = h;
  h.update(std::string_view("c"));
  copy.update(std::string_view("c"));
  EXPECT_EQ(copy.hex_digest(), sha_of("abc"));
  exatrain::Sha256 moved = std::move(h);
  EXPECT_EQ(moved.hex_digest(), sha_of("abc"));
  EXPECT_EQ(moved.hex_digest(), sha_of(""));  // digest() started it over
  h = moved;                                  // a moved-from hasher can be assigned to
  h.update(std::string_view("abc"));
  EXPECT_EQ(h.hex_digest(), sha_of("abc"));
  exatrain::Sha256 assigned;
  assigned.update(std::string_view("xyz"));
  assigned = copy;  // copy was just finished: empty
  assigned.update(std::string_view("abc"));
  EXPECT_EQ(assigned.hex_digest(), sha_of("abc"));
}

TEST(Sha256, StreamingInPiecesEqualsOneShot) {
  std::mt19937 rng(7);
  std::string data(5000, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  const std::string whole = sha_of(data);
  for (int trial = 0; trial < 50; ++trial) {
    exatrain::Sha256 h;
    size_t at = 0;
    while (at < data.size()) {
      const size_t n = std::min<size_t>(rng() % 130, data.size() - at);
      h.update(data.data() + at, n);
      at += n;
    }
    EXPECT_EQ(h.hex_digest(), whole);
  }
}

TEST(Sha256, FileMatchesBytes) {
  TempDir dir;
  const std::string bytes(3 << 20, 'x');  // several read blocks
  testing::write_file(dir / "f", bytes);
  EXPECT_EQ(exatrain::sha256_file_hex(dir / "f"), sha_of(bytes));
  expect_error([&] { exatrain::sha256_file_hex(dir / "missing"); }, {"missing", "cannot read"});
}

// Expected values from Python: bytes.decode("utf-8", "replace").encode() and the
// UnicodeDecodeError start (-1: valid).
TEST(Utf8, RepairMatchesPythonReplace) {
  struct Case {
    std::string in, repaired;
    int first_bad;
  };
  const std::vector<Case> cases = {
    {std::string("", 0), std::string("", 0), -1},
    {std::string("abc", 3), std::string("abc", 3), -1},
    {std::string("\xe2\x82\xac", 3), std::string("\xe2\x82\xac", 3), -1},
    {std::string("\xe2\x82", 2), std::string("\xef\xbf\xbd", 3), 0},
    {std::string("\xe2\x82" "A", 3), std::string("\xef\xbf\xbd" "A", 4), 0},
    {std::string("\xc0\xaf", 2), std::string("\xef\xbf\xbd\xef\xbf\xbd", 6), 0},
    {std::string("\xed\xa0\x80", 3), std::string("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9), 0},
    {std::string("\xf4\x90\x80\x80", 4), std::string("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12), 0},
    {std::string("\xf0\x80\x80\x80", 4), std::string("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12), 0},
    {std::string("\xf0\x9f\x98", 3), std::string("\xef\xbf\xbd", 3), 0},
    {std::string("a\xff" "b", 3), std::string("a\xef\xbf\xbd" "b", 5), 1},
    {std::string("\x80\x80", 2), std::string("\xef\xbf\xbd\xef\xbf\xbd", 6), 0},
    {std::string("\xf0\x9f\x98\x80x", 5), std::string("\xf0\x9f\x98\x80x", 5), -1},
    {std::string("\xe0\x9f\x80", 3), std::string("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9), 0},
    {std::string("\xf5", 1), std::string("\xef\xbf\xbd", 3), 0},
    {std::string("\xdf", 1), std::string("\xef\xbf\xbd", 3), 0},
    {std::string("ok\xc3\xa9\xe4\xb8\xad\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9", 18), std::string("ok\xc3\xa9\xe4\xb8\xad\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9", 18), -1},
    {std::string("long ascii prefix to pass the 8-byte fast path \xc3( tail", 54), std::string("long ascii prefix to pass the 8-byte fast path \xef\xbf\xbd( tail", 56), 47},
    {std::string("\xef\xbb\xbf\xed\x9f\xbf\xee\x80\x80", 9), std::string("\xef\xbb\xbf\xed\x9f\xbf\xee\x80\x80", 9), -1},
  };
  for (const auto& c : cases) {
    std::string repaired;
    utf8::append_replacing_invalid(c.in, repaired);
    EXPECT_EQ(repaired, c.repaired) << "input " << ::testing::PrintToString(c.in);
    const size_t bad = utf8::valid_prefix_length(c.in);
    EXPECT_EQ(bad == c.in.size() ? -1 : static_cast<int>(bad), c.first_bad) << ::testing::PrintToString(c.in);
    EXPECT_TRUE(utf8::is_valid(repaired));
  }
}

TEST(ShardFormat, DtypeFollowsVocabulary) {
  EXPECT_EQ(dtype_for_vocab(257), TokenDtype::UInt16);
  EXPECT_EQ(dtype_for_vocab(65536), TokenDtype::UInt16);  // ids 0..65535 fit
  EXPECT_EQ(dtype_for_vocab(65537), TokenDtype::UInt32);
  EXPECT_EQ(shard_file_name(3), "shard-00003.bin");
  ShardHeader h{TokenDtype::UInt16, 5, 2, 300};
  const ShardLayout layout = shard_layout(h);
  EXPECT_EQ(layout.ids_offset, 64u);
  EXPECT_EQ(layout.index_offset, 80u);  // 64 + 10 bytes of ids, padded to 8
  EXPECT_EQ(layout.file_bytes, 96u);
}

// Documents of lengths 1..9 (ids = a running counter mod vocab, last id EOS) through shards of
// 7 tokens; returns the token stream and the document starts that went in.
struct Written {
  std::vector<uint32_t> stream;
  std::vector<uint64_t> starts;
  std::vector<ManifestShard> shards;
};

Written write_documents(const std::string& dir, uint64_t vocab, uint32_t eos, uint64_t shard_tokens, int docs) {
  Written w;
  ShardWriter writer(dir, vocab, shard_tokens);
  uint64_t counter = 12345;
  for (int d = 0; d < docs; ++d) {
    std::vector<uint32_t> doc;
    const int len = 1 + d % 9;
    for (int i = 0; i + 1 < len; ++i) doc.push_back(static_cast<uint32_t>((counter += 7919) % vocab));
    doc.push_back(eos);
    w.starts.push_back(w.stream.size());
    w.stream.insert(w.stream.end(), doc.begin(), doc.end());
    writer.add_document(doc);
  }
  w.shards = writer.finish();
  writer.keep();
  return w;
}

void check_round_trip(uint64_t vocab, TokenDtype dtype) {
  TempDir dir;
  const uint64_t shard_tokens = 7;
  const Written w = write_documents(dir.path(), vocab, 0, shard_tokens, 40);
  ASSERT_EQ(w.shards.size(), (w.stream.size() + shard_tokens - 1) / shard_tokens);
  std::vector<uint32_t> read;
  std::vector<uint64_t> starts;
  for (size_t s = 0; s < w.shards.size(); ++s) {
    const ManifestShard& info = w.shards[s];
    EXPECT_EQ(info.file, shard_file_name(s));
    const ShardReader shard(dir / info.file);
    EXPECT_EQ(shard.dtype(), dtype);
    EXPECT_EQ(shard.header().vocab_size, vocab);
    EXPECT_EQ(shard.tokens(), info.tokens);
    EXPECT_EQ(shard.documents(), info.documents);
    EXPECT_EQ(info.bytes, fs::file_size(dir / info.file));
    EXPECT_EQ(info.sha256, exatrain::sha256_file_hex(dir / info.file));
    if (s + 1 < w.shards.size()) EXPECT_EQ(shard.tokens(), shard_tokens);
    for (uint64_t d : shard.document_starts()) starts.push_back(read.size() + d);
    std::vector<int32_t> widened(shard.tokens());
    shard.copy_tokens(0, shard.tokens(), widened.data());
    for (uint64_t i = 0; i < shard.tokens(); ++i) {
      EXPECT_EQ(static_cast<uint32_t>(widened[i]), shard.token(i));
      read.push_back(shard.token(i));
    }
    EXPECT_NO_THROW(shard.check_token_ids());
  }
  EXPECT_EQ(read, w.stream);
  EXPECT_EQ(starts, w.starts);
  // No temporary files are left.
  for (const auto& e : fs::directory_iterator(dir.path())) EXPECT_EQ(e.path().extension(), ".bin");
}

TEST(ShardFile, RoundTripUint16) { check_round_trip(65536, TokenDtype::UInt16); }
TEST(ShardFile, RoundTripUint32) { check_round_trip(1u << 20, TokenDtype::UInt32); }

TEST(ShardFile, Uint32KeepsIdsAbove65535) {
  TempDir dir;
  ShardWriter writer(dir.path(), 100000, 1000);
  const std::vector<uint32_t> doc = {65535, 65536, 99999, 7};
  writer.add_document(doc);
  const auto shards = writer.finish();
  writer.keep();
  const ShardReader shard(dir / shards[0].file);
  EXPECT_EQ(shard.dtype(), TokenDtype::UInt32);
  std::vector<int32_t> out(4);
  shard.copy_tokens(0, 4, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{65535, 65536, 99999, 7}));
  EXPECT_EQ(fs::file_size(dir / shards[0].file), 64u + 16u + 8u);
}

TEST(ShardFile, WriterRejectsIdsOutsideVocabulary) {
  TempDir dir;
  ShardWriter writer(dir.path(), 300, 10);
  const std::vector<uint32_t> doc = {1, 300};
  expect_error([&] { writer.add_document(doc); }, {"id 300", "outside the vocabulary (size 300)"});
}

TEST(ShardFile, UnkeptWriterRemovesItsFiles) {
  TempDir dir;
  {
    ShardWriter writer(dir.path(), 300, 4);
    const std::vector<uint32_t> doc = {1, 2, 3, 4, 5, 6};  // one finished shard and an open one
    writer.add_document(doc);
    EXPECT_EQ(writer.shards_finished(), 1u);
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

// Corruptions of a valid shard, each with the error it must produce.
class ShardCorruption : public ::testing::Test {
 protected:
  void SetUp() override {
    const Written w = write_documents(dir.path(), 1000, 0, 1000, 6);  // one shard, 6 documents
    path = dir / w.shards[0].file;
    bytes = testing::read_file(path);
  }
  void write(const std::string& b) { testing::write_file(path, b); }
  void put_u64(size_t at, uint64_t v) { std::memcpy(bytes.data() + at, &v, 8); }
  void put_u32(size_t at, uint32_t v) { std::memcpy(bytes.data() + at, &v, 4); }
  void expect_open_error(std::initializer_list<std::string> parts) {
    write(bytes);
    expect_error([&] { ShardReader r(path); }, parts);
    expect_error([&] { ShardReader r(path); }, {path});  // every message names the file
  }
  size_t index_offset() const {
    ShardHeader h = decode_shard_header(reinterpret_cast<const uint8_t*>(bytes.data()), path);
    return shard_layout(h).index_offset;
  }
  TempDir dir;
  std::string path, bytes;
};

TEST_F(ShardCorruption, IntactOpens) { EXPECT_NO_THROW(ShardReader r(path)); }

TEST_F(ShardCorruption, TruncatedBody) {
  bytes.resize(bytes.size() - 3);
  expect_open_error({"truncated", "the header promises"});
}

TEST_F(ShardCorruption, ShorterThanHeader) {
  bytes.resize(10);
  expect_open_error({"truncated: 10 bytes, shorter than the 64-byte header"});
}

TEST_F(ShardCorruption, EmptyFile) {
  bytes.clear();
  expect_open_error({"truncated: 0 bytes"});
}

TEST_F(ShardCorruption, TrailingBytes) {
  bytes += "junk";
  expect_open_error({"4 more than the header describes"});
}

TEST_F(ShardCorruption, BadMagic) {
  bytes[0] = 'X';
  expect_open_error({"not an exatrain token shard", "XXASHARD"});
}

TEST_F(ShardCorruption, WrongVersion) {
  put_u32(8, 3);
  expect_open_error({"format version 3", "reads versions 1 to 2"});
  put_u32(8, 0);
  expect_open_error({"format version 0", "reads versions 1 to 2"});
}

TEST_F(ShardCorruption, BadTokenWidth) {
  put_u32(12, 3);
  expect_open_error({"token width 3 bytes"});
}

TEST_F(ShardCorruption, ReservedBytesSet) {
  bytes[50] = 1;
  expect_open_error({"reserved header byte 50"});
}

TEST_F(ShardCorruption, TokenCountDisagreesWithSize) {
  put_u64(16, 1'000'000);
  expect_open_error({"truncated", "1000000 uint16 ids"});
}

TEST_F(ShardCorruption, IndexNotIncreasing) {
  const size_t at = index_offset();
  uint64_t first;
  std::memcpy(&first, bytes.data() + at + 8, 8);
  put_u64(at + 16, first);  // entry 2 == entry 1
  expect_open_error({"document index not increasing", "entry 2"});
}

TEST_F(ShardCorruption, IndexPastEnd) {
  put_u64(index_offset() + 8, 99999);
  expect_open_error({"document index entry 1 is offset 99999, past the shard's"});
}

TEST_F(ShardCorruption, IdOutsideVocabulary) {
  const uint16_t bad = 1000;  // token 3 becomes id 1000; the vocabulary is 1000
  std::memcpy(bytes.data() + 64 + 2 * 3, &bad, 2);
  write(bytes);
  ShardReader r(path);  // structure is fine
  expect_error([&] { r.check_token_ids(); }, {path, "token 3 is id 1000, outside the vocabulary (size 1000)"});
}

TEST_F(ShardCorruption, MissingFile) {
  fs::remove(path);
  expect_error([&] { ShardReader r(path); }, {path, "cannot open"});
}

DatasetManifest sample_manifest() {
  DatasetManifest m;
  m.name = "kjv";
  m.license = "CC0-1.0";
  m.source = "King James Bible, Genesis";
  m.created_by = "exatrain test";
  m.tokenizer_sha256 = std::string(64, 'a');
  m.vocab_size = 70000;
  m.eos_id = 2;
  m.dtype = TokenDtype::UInt32;
  m.shard_tokens = 100;
  m.input_format = "jsonl";
  m.jsonl_field = "text";
  m.invalid_utf8_policy = "replace";
  m.max_document_bytes = 1 << 20;
  m.shards = {{"shard-00000.bin", std::string(64, 'c'), 100, 3, 500}, {"shard-00001.bin", std::string(64, 'd'), 5, 1, 112}};
  m.inputs = {{"a.jsonl", std::string(64, 'e'), 1234, 4}};
  m.total_tokens = 105;
  m.total_documents = 4;
  m.input_bytes = 1234;
  m.skipped_empty_documents = 1;
  m.invalid_utf8_documents = 2;
  m.skipped_bad_records = 3;
  return m;
}

TEST(Manifest, RoundTripsThroughBothFiles) {
  TempDir dir;
  const DatasetManifest m = sample_manifest();
  write_manifest(dir.path(), m);
  EXPECT_EQ(read_manifest(dir.path()), m);
  EXPECT_EQ(read_manifest_text(dir.path()), m);
  // The binary file starts with the magic field: 0a 10 "exatrain.dataset" 10 01.
  const std::string pb = testing::read_file(dir / kManifestFile);
  EXPECT_EQ(pb.substr(0, 20), std::string("\x0a\x10" "exatrain.dataset\x10\x01", 20));
  const std::string text = testing::read_file(dir / kManifestTextFile);
  EXPECT_NE(text.find("name: \"kjv\""), std::string::npos) << text;
  EXPECT_NE(text.find("license: \"CC0-1.0\""), std::string::npos);
  EXPECT_NE(text.find("dtype: UINT32"), std::string::npos);
  EXPECT_EQ(text.rfind("# proto-file: data/shards/manifest.proto\n", 0), 0u);
  for (const auto& e : fs::directory_iterator(dir.path()))  // no temporary file left
    EXPECT_TRUE(e.path().filename() == kManifestFile || e.path().filename() == kManifestTextFile) << e.path();
}

TEST(Manifest, Errors) {
  TempDir dir;
  expect_error([&] { read_manifest(dir.path()); }, {"no manifest.pb"});
  testing::write_file(dir / kManifestFile, "\x0a\xff garbage");
  expect_error([&] { read_manifest(dir.path()); }, {"manifest.pb", "not a valid Protocol Buffers message"});

  DatasetManifest m = sample_manifest();
  m.format_version = 9;
  write_manifest(dir.path(), m);
  expect_error([&] { read_manifest(dir.path()); }, {"format version 9", "reads version 1"});

  testing::write_file(dir / kManifestTextFile, "name: \"x\"\nvocab_size: -3\n");
  expect_error([&] { read_manifest_text(dir.path()); }, {"manifest.txtpb", "line 2"});

  testing::write_file(dir / kManifestTextFile, "magic: \"something.else\" format_version: 1 dtype: UINT16\n");
  expect_error([&] { read_manifest_text(dir.path()); }, {"not an exatrain dataset manifest", "something.else"});
}

TEST(Spdx, ExpressionSyntax) {
  for (const char* ok : {"MIT", "Apache-2.0", "CC-BY-4.0", "GPL-2.0+", "Apache-2.0 OR MIT", "(MIT AND BSD-3-Clause) OR Apache-2.0",
                         "GPL-2.0-only WITH Classpath-exception-2.0", "LicenseRef-Internal", "DocumentRef-x:LicenseRef-y",
                         "CC0-1.0", "LicenseRef-KOGL-Type1"})
    EXPECT_TRUE(is_spdx_expression(ok)) << ok;
  for (const char* bad : {"", "MIT License", "MIT OR", "OR MIT", "(MIT", "MIT)", "Apache 2.0", "MIT/Apache-2.0", "()"})
    EXPECT_FALSE(is_spdx_expression(bad)) << bad;
}

}  // namespace
}  // namespace exatrain
