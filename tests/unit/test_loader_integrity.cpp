// The loader against corrupt shards, as a fuzzing probe made them: one id changed to another
// valid id, two shards swapped, EOS removed, loss-mask bits flipped (caught only by the shards'
// checksums, hashed in the background by ShardVerifier), and ids outside the vocabulary
// (caught as the batch is assembled, naming the shard and the position).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "data/shards/loader.h"
#include "data/shards/shard_format.h"
#include "data/shards/shard_verifier.h"
#include "data/shards/testing.h"
#include "data/shards/token_dataset.h"
#include "tests/unit/expect_error.h"
#include "trainer/core/error.h"
#include "trainer/core/sha256.h"

namespace exatrain {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

// 60 documents of 40-ish bytes in shards of 500 tokens: uint16 (byte tokenizer: ids 0..255,
// EOS 256, vocabulary 257), or uint32 with `wide` (vocabulary 80000).
std::string make_dataset(const TempDir& tmp, const std::string& name, bool wide = false) {
  std::string text;
  for (int d = 0; d < 60; ++d) text += name + " document " + std::to_string(d) + " with some text in it\n\n";
  testing::write_file(tmp / (name + ".txt"), text);
  auto o = testing::prepare_options({tmp / (name + ".txt")}, tmp / name, InputFormat::Text);
  o.name = name;
  o.shard_tokens = 500;
  prepare_dataset(o, wide ? testing::wide_byte_tokenizer() : testing::byte_tokenizer());
  return tmp / name;
}

LoaderConfig config_for(const std::string& dir, int64_t prefetch = 0) {
  LoaderConfig c;
  c.datasets.push_back(LoaderDataset{dir, 1.0, 0, 0});
  c.seq_len = 32;
  c.global_batch = 4;
  c.seed = 7;
  c.prefetch = prefetch;
  return c;
}

// Rewrites bytes [offset, offset + bytes.size()) of a file.
void patch(const std::string& path, uint64_t offset, const std::string& bytes) {
  std::string file = testing::read_file(path);
  ASSERT_LE(offset + bytes.size(), file.size());
  file.replace(offset, bytes.size(), bytes);
  testing::write_file(path, file);
}

std::string u16(uint16_t v) { return std::string(reinterpret_cast<const char*>(&v), 2); }

// Reads every training batch of an epoch and more: fails if the loader hands out a batch
// after the corrupt shard has been hashed.
void drain(DataLoader& loader) {
  loader.wait_verified();
  for (int i = 0; i < 200; ++i) loader.next();
}

class LoaderIntegrity : public ::testing::Test {
 protected:
  TempDir tmp;
  std::string dir = make_dataset(tmp, "set");
  std::string shard(int i) const { return dir + "/" + shard_file_name(i); }
};

TEST_F(LoaderIntegrity, IntactDatasetIsVerifiedInTheBackground) {
  DataLoader loader(config_for(dir, 2));
  for (int i = 0; i < 5; ++i) loader.next();
  loader.wait_verified();
  const auto v = loader.verification();
  EXPECT_GT(v.shards, 1u);
  EXPECT_EQ(v.checked, v.shards);
  uint64_t bytes = 0;
  for (size_t s = 0; s < v.shards; ++s) bytes += fs::file_size(shard(static_cast<int>(s)));
  EXPECT_EQ(v.bytes, bytes);
  for (int i = 0; i < 50; ++i) loader.next();
}

TEST_F(LoaderIntegrity, IdChangedToAnotherValidId) {
  patch(shard(1), kShardHeaderBytes + 2 * 100, u16('q'));  // a letter for a letter: reads fine
  for (int prefetch : {0, 3}) {
    DataLoader loader(config_for(dir, prefetch));
    expect_error([&] { drain(loader); },
                 {"shard '" + shard(1) + "': sha256 is", "the dataset's manifest says",
                  "exatrain data verify " + dir});
    expect_error([&] { loader.next(); }, {shard(1)});  // and nothing after it either
  }
  // Without the check, the same loader reads the changed id happily.
  auto off = config_for(dir);
  off.verify_checksums = false;
  DataLoader loader(off);
  for (int i = 0; i < 200; ++i) loader.next();
  EXPECT_EQ(loader.verification().shards, 0u);
}

TEST_F(LoaderIntegrity, ShardsSwapped) {
  // Shards 0 and 1 hold 500 tokens each: the manifest's counts still agree after a swap.
  fs::rename(shard(0), dir + "/tmp.bin");
  fs::rename(shard(1), shard(0));
  fs::rename(dir + "/tmp.bin", shard(1));
  DataLoader loader(config_for(dir));
  expect_error([&] { drain(loader); }, {"sha256 is", "swapped"});
}

TEST_F(LoaderIntegrity, EosRemoved) {
  const ShardReader reader(shard(2));
  const uint64_t start = reader.document_starts()[1];  // the token before it is its predecessor's EOS
  ASSERT_EQ(reader.token(start - 1), 256u);
  patch(shard(2), kShardHeaderBytes + 2 * (start - 1), u16(' '));
  DataLoader loader(config_for(dir));
  expect_error([&] { drain(loader); }, {"shard '" + shard(2) + "': sha256 is"});
}

TEST(LoaderIntegrityMask, LossMaskBitsFlipped) {
  TempDir tmp;
  std::string text;
  for (int d = 0; d < 40; ++d)
    text += R"({"messages": [{"role": "user", "content": "question )" + std::to_string(d) +
            R"("}, {"role": "assistant", "content": "an answer of some length"}]})" "\n";
  testing::write_file(tmp / "chat.jsonl", text);
  auto o = testing::prepare_options({tmp / "chat.jsonl"}, tmp / "chat", InputFormat::Chat);
  o.name = "chat";
  o.shard_tokens = 1000;
  prepare_dataset(o, testing::chat_byte_tokenizer());
  const std::string path = tmp / "chat/shard-00000.bin";
  const ShardReader reader(path);
  ASSERT_TRUE(reader.has_loss_mask());
  const ShardLayout layout = shard_layout(reader.header());
  std::string file = testing::read_file(path);
  file[layout.mask_offset + 3] = static_cast<char>(~file[layout.mask_offset + 3]);  // 8 targets flipped
  testing::write_file(path, file);
  DataLoader loader(config_for(tmp / "chat"));
  expect_error([&] { drain(loader); }, {"shard '" + path + "': sha256 is"});
}

TEST_F(LoaderIntegrity, IdOutsideTheVocabularyNamesShardAndPosition) {
  patch(shard(1), kShardHeaderBytes + 2 * 123, u16(300));  // vocabulary 257
  const TokenDataset ds(dir);
  std::vector<int32_t> out(ds.tokens());
  expect_error([&] { ds.read(0, ds.tokens(), out.data()); },
               {"shard '" + shard(1) + "': token 123 is id 300, outside the dataset's vocabulary (size 257)",
                "exatrain data verify " + dir});
  // In the loader it is caught as the batch is assembled, whichever check comes first.
  auto off = config_for(dir);
  off.verify_checksums = false;  // only the id check
  DataLoader loader(off);
  expect_error([&] { for (int i = 0; i < 200; ++i) loader.next(); }, {"shard '" + shard(1) + "': token 123 is id 300"});
}

TEST(LoaderIntegrityWide, IdBeyondInt32IsNoNegativeNumberSlippingThrough) {
  TempDir tmp;
  const std::string dir = make_dataset(tmp, "wide", /*wide=*/true);
  const uint32_t id = 0x80000001u;
  patch(dir + "/" + shard_file_name(0), kShardHeaderBytes + 4 * 7, std::string(reinterpret_cast<const char*>(&id), 4));
  const TokenDataset ds(dir);
  std::vector<int32_t> out(ds.tokens());
  expect_error([&] { ds.read(0, ds.tokens(), out.data()); },
               {"token 7 is id 2147483649, outside the dataset's vocabulary (size 80000)"});
}

TEST(ShardVerifier, PreferredShardsAreHashedFirstAndAMismatchIsReported) {
  std::vector<std::string> files(4, std::string(16 << 20, 'x'));  // ~10 ms each to hash
  files[3][5] = 'y';
  std::vector<ShardVerifier::Shard> shards;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(files[i].data()), files[i].size());
    shards.push_back(ShardVerifier::Shard{"f" + std::to_string(i), "d", bytes, sha256_hex(files[0])});
  }
  ShardVerifier verifier(std::move(shards));
  verifier.prefer(3);
  expect_error([&] { verifier.wait(); }, {"shard 'f3': sha256 is", "exatrain data verify d"});
  expect_error([&] { verifier.check(); }, {"shard 'f3'"});
  EXPECT_LE(verifier.progress().shards, 2u);  // f3 went first (or second, if f0 had begun)
}

}  // namespace
}  // namespace exatrain
