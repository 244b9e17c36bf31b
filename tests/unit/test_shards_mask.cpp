// Loss masks: the shard format's mask section (version 2) and version-1 shards, chat preparation
// (ids and mask of each conversation against a hand-built reference, bad conversations with
// file:line), verify's mask checks, and the loader delivering Batch::loss_mask for masked and
// unmasked datasets blended together.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "data/shards/loader.h"
#include "data/shards/manifest.h"
#include "data/shards/prepare.h"
#include "data/shards/shard_reader.h"
#include "data/shards/shard_writer.h"
#include "data/shards/testing.h"
#include "data/shards/token_dataset.h"
#include "data/shards/verify.h"
#include "trainer/core/error.h"
#include "tests/unit/expect_error.h"

namespace exatrain {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

bool has_problem(const VerifyReport& r, const std::string& part) {
  for (const auto& p : r.problems)
    if (p.find(part) != std::string::npos) return true;
  return false;
}

std::string problems(const VerifyReport& r) {
  std::string s;
  for (const auto& p : r.problems) s += p + "\n";
  return s;
}

// ---- the shard file ----------------------------------------------------------------------------

TEST(ShardMask, LayoutPutsTheMaskBitsBetweenIdsAndIndex) {
  ShardHeader h{TokenDtype::UInt16, 13, 2, 300};
  h.has_loss_mask = true;
  const ShardLayout l = shard_layout(h);
  EXPECT_EQ(l.mask_offset, 96u);    // 64 + 26 bytes of ids, padded to 8
  EXPECT_EQ(l.mask_bytes, 2u);      // 13 bits
  EXPECT_EQ(l.index_offset, 104u);  // 96 + 2, padded to 8
  EXPECT_EQ(l.file_bytes, 120u);
  h.has_loss_mask = false;
  EXPECT_EQ(shard_layout(h).index_offset, 96u);
}

TEST(ShardMask, RoundTripAcrossShardBoundaries) {
  TempDir dir;
  ShardWriter writer(dir.path(), 300, 10, /*loss_mask=*/true);
  std::vector<uint32_t> all_ids;
  std::vector<uint8_t> all_mask;
  std::mt19937 rng(5);
  for (int d = 0; d < 9; ++d) {
    std::vector<uint32_t> ids;
    std::vector<uint8_t> mask;
    for (int i = 0; i < 3 + d; ++i) {
      ids.push_back(static_cast<uint32_t>(rng() % 299));
      mask.push_back(static_cast<uint8_t>(rng() % 2));
    }
    ids.push_back(299);
    mask.push_back(1);
    all_ids.insert(all_ids.end(), ids.begin(), ids.end());
    all_mask.insert(all_mask.end(), mask.begin(), mask.end());
    writer.add_document(ids, mask);
  }
  const auto shards = writer.finish();
  writer.keep();
  std::vector<uint8_t> read_mask;
  uint64_t ones = 0;
  for (const auto& s : shards) {
    const ShardReader r(dir / s.file);
    EXPECT_TRUE(r.has_loss_mask());
    EXPECT_EQ(r.header().version, 2u);
    EXPECT_EQ(r.count_loss_mask_tokens(), s.loss_mask_tokens);
    ones += s.loss_mask_tokens;
    std::vector<uint8_t> m(r.tokens());
    r.copy_loss_mask(0, r.tokens(), m.data());
    read_mask.insert(read_mask.end(), m.begin(), m.end());
    // A read from the middle gives the same bits.
    if (r.tokens() > 4) {
      std::vector<uint8_t> mid(3);
      r.copy_loss_mask(2, 3, mid.data());
      EXPECT_EQ(mid, std::vector<uint8_t>(m.begin() + 2, m.begin() + 5));
    }
  }
  EXPECT_EQ(read_mask, all_mask);
  EXPECT_EQ(ones, static_cast<uint64_t>(std::count(all_mask.begin(), all_mask.end(), 1)));
}

TEST(ShardMask, WriterChecksTheMask) {
  TempDir dir;
  ShardWriter masked(dir.path(), 300, 10, true);
  const std::vector<uint32_t> ids = {1, 2, 3};
  const std::vector<uint8_t> short_mask = {1, 0};
  const std::vector<uint8_t> bad_value = {1, 2, 0};
  expect_error([&] { masked.add_document(ids); }, {"3 ids came with 0 loss-mask values"});
  expect_error([&] { masked.add_document(ids, short_mask); }, {"3 ids came with 2"});
  expect_error([&] { masked.add_document(ids, bad_value); }, {"loss-mask value 2 at position 1"});
  ShardWriter plain(dir.path(), 300, 10);
  expect_error([&] { plain.add_document(ids, std::vector<uint8_t>{1, 1, 1}); }, {"made without one"});
}

// A shard without a mask, rewritten as format version 1, still reads (all ones).
TEST(ShardMask, Version1ShardsStillRead) {
  TempDir dir;
  ShardWriter writer(dir.path(), 300, 100);
  writer.add_document(std::vector<uint32_t>{5, 6, 7});
  const auto shards = writer.finish();
  writer.keep();
  const std::string path = dir / shards[0].file;
  std::string bytes = testing::read_file(path);
  const uint32_t one = 1;
  std::memcpy(bytes.data() + 8, &one, 4);
  testing::write_file(path, bytes);
  const ShardReader r(path);
  EXPECT_EQ(r.header().version, 1u);
  EXPECT_FALSE(r.has_loss_mask());
  std::vector<uint8_t> m(3, 7);
  r.copy_loss_mask(0, 3, m.data());
  EXPECT_EQ(m, (std::vector<uint8_t>{1, 1, 1}));
  // In version 1, byte 40 is reserved: a flag there is corruption.
  bytes[40] = 1;
  testing::write_file(path, bytes);
  expect_error([&] { ShardReader bad(path); }, {path, "reserved header byte 40"});
}

TEST(ShardMask, CorruptMaskHeadersAndBits) {
  TempDir dir;
  ShardWriter writer(dir.path(), 300, 100, true);
  writer.add_document(std::vector<uint32_t>{5, 6, 7}, std::vector<uint8_t>{0, 1, 1});
  const auto shards = writer.finish();
  writer.keep();
  const std::string path = dir / shards[0].file;
  const std::string good = testing::read_file(path);
  std::string bytes = good;
  bytes[40] = 3;  // an unknown flag
  testing::write_file(path, bytes);
  expect_error([&] { ShardReader r(path); }, {path, "unknown header flags 0x3"});
  bytes = good;
  bytes[40] = 0;  // the mask flag cleared: the file is longer than the header describes
  testing::write_file(path, bytes);
  expect_error([&] { ShardReader r(path); }, {path, "more than the header describes"});
  bytes = good;
  const size_t mask_at = 64 + 8;  // 3 uint16 ids padded to 8
  EXPECT_EQ(static_cast<uint8_t>(bytes[mask_at]), 0b110);
  bytes[mask_at] = static_cast<char>(0b1110);  // a bit for a fourth token that does not exist
  testing::write_file(path, bytes);
  const ShardReader r(path);
  expect_error([&] { r.count_loss_mask_tokens(); }, {path, "bits set past its 3 tokens"});
}

// ---- chat preparation ----------------------------------------------------------------------

// The ids and mask of one conversation, built by hand from the template's format.
struct Expected {
  std::vector<uint32_t> ids;
  std::vector<uint8_t> mask;
  void add(const std::string& text, uint8_t m) {
    for (uint32_t id : testing::chat_byte_encode(text)) {
      ids.push_back(id);
      mask.push_back(m);
    }
  }
};

// {"messages": [system?, user, assistant, user, assistant]} and what it must become.
std::string conversation(int k, Expected& e) {
  const std::string u1 = "question " + std::to_string(k), a1 = "answer " + std::to_string(k * 7);
  const std::string u2 = "more?", a2 = "\xec\x98\x88 " + std::to_string(k);  // Korean "yes"
  std::string line = "{\"messages\": [";
  if (k % 2 == 0) {
    line += "{\"role\": \"system\", \"content\": \"be brief\"}, ";
    e.add("[|system|]\nbe brief[|endofturn|]\n", 0);
  }
  line += "{\"role\": \"user\", \"content\": \"" + u1 + "\"}, {\"role\": \"assistant\", \"content\": \"" + a1 +
          "\"}, {\"role\": \"user\", \"content\": \"" + u2 + "\"}, {\"role\": \"assistant\", \"content\": \"" + a2 +
          "\"}]}";
  e.add("[|user|]\n" + u1 + "[|endofturn|]\n[|assistant|]\n", 0);
  e.add("<think>\n\n</think>\n\n" + a1 + "[|endofturn|]", 1);
  e.add("\n[|user|]\n" + u2 + "[|endofturn|]\n[|assistant|]\n", 0);
  e.add("<think>\n\n</think>\n\n" + a2 + "[|endofturn|]", 1);  // the document ends here, at EOS
  return line;
}

TEST(PrepareChat, ConversationsBecomeDocumentsWithTheAssistantMask) {
  TempDir tmp;
  Expected all;
  std::string jsonl;
  for (int k = 0; k < 30; ++k) jsonl += conversation(k, all) + "\n";
  testing::write_file(tmp / "chat.jsonl", jsonl);
  auto o = testing::prepare_options({tmp / "chat.jsonl"}, tmp / "ds", InputFormat::Chat);
  o.shard_tokens = 500;  // conversations straddle shards
  const DatasetManifest m = prepare_dataset(o, testing::chat_byte_tokenizer());
  EXPECT_EQ(m.input_format, "chat");
  EXPECT_TRUE(m.has_loss_mask);
  EXPECT_EQ(m.chat_template, "exaone4");
  EXPECT_FALSE(m.chat_keep_reasoning);
  EXPECT_EQ(m.shard_format_version, 2u);
  EXPECT_EQ(m.total_documents, 30u);
  EXPECT_EQ(m.total_tokens, all.ids.size());
  EXPECT_EQ(m.loss_mask_tokens, static_cast<uint64_t>(std::count(all.mask.begin(), all.mask.end(), 1)));
  EXPECT_GT(m.shards.size(), 2u);

  const TokenDataset ds(tmp / "ds");
  std::vector<int32_t> ids(ds.tokens());
  std::vector<uint8_t> mask(ds.tokens());
  ds.read(0, ds.tokens(), ids.data());
  ds.read_loss_mask(0, ds.tokens(), mask.data());
  EXPECT_EQ(std::vector<uint32_t>(ids.begin(), ids.end()), all.ids);
  EXPECT_EQ(mask, all.mask);
  const VerifyReport r = verify_dataset(tmp / "ds");
  EXPECT_TRUE(r.ok()) << problems(r);
  // Round trip of the manifest's new fields through both files.
  EXPECT_EQ(read_manifest_text(tmp / "ds"), m);
}

TEST(PrepareChat, KeepReasoningKeepsTheLastThinkBlock) {
  TempDir tmp;
  testing::write_file(tmp / "c.jsonl",
                      R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>ab why</think>a"}]})"
                      "\n");
  auto o = testing::prepare_options({tmp / "c.jsonl"}, tmp / "ds", InputFormat::Chat);
  o.chat_keep_reasoning = true;
  const DatasetManifest m = prepare_dataset(o, testing::chat_byte_tokenizer());
  EXPECT_TRUE(m.chat_keep_reasoning);
  Expected e;
  e.add("[|user|]\nq[|endofturn|]\n[|assistant|]\n", 0);
  e.add("<think>\nwhy\n</think>\n\na[|endofturn|]", 1);  // "<think>ab" loses "ab" as upstream's [9:] does
  const TokenDataset ds(tmp / "ds");
  std::vector<int32_t> ids(ds.tokens());
  ds.read(0, ds.tokens(), ids.data());
  EXPECT_EQ(std::vector<uint32_t>(ids.begin(), ids.end()), e.ids);
}

TEST(PrepareChat, BadConversationsNameFileAndLine) {
  TempDir tmp;
  const std::string ok = R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})";
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {R"({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]})",
       {"message 2", "unknown role 'bot'"}},
      {R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]})", {"message 2 (assistant)", "no \"content\""}},
      {R"({"messages": [{"role": "user", "content": "q"}]})", {"no assistant message"}},
      {R"({"messages": [{"role": "user", "content": "[|endofturn|]"}, {"role": "assistant", "content": "a"}]})",
       {"turn marker"}},
      {R"({"text": "not a conversation"})", {"no \"messages\""}},
      {R"({"messages": [)", {"malformed JSON"}},
  };
  int n = 0;
  for (const auto& [line, parts] : cases) {
    const std::string in = tmp / ("bad" + std::to_string(n) + ".jsonl");
    testing::write_file(in, ok + "\n\n" + line + "\n" + ok + "\n");
    auto o = testing::prepare_options({in}, tmp / ("out" + std::to_string(n)), InputFormat::Chat);
    std::vector<std::string> want = {in + ":3: "};
    want.insert(want.end(), parts.begin(), parts.end());
    try {
      prepare_dataset(o, testing::chat_byte_tokenizer());
      ADD_FAILURE() << "no error for " << line;
    } catch (const Error& e) {
      for (const auto& p : want) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\nmissing: " << p;
    }
    EXPECT_FALSE(fs::exists(tmp / ("out" + std::to_string(n))));
    // --skip-bad skips and counts it.
    o.skip_bad = true;
    const DatasetManifest m = prepare_dataset(o, testing::chat_byte_tokenizer());
    EXPECT_EQ(m.total_documents, 2u) << line;
    EXPECT_EQ(m.skipped_bad_records, 1u) << line;
    EXPECT_EQ(m.skipped_empty_documents, 1u);
    ++n;
  }
}

TEST(PrepareChat, TokenizerMustHaveTheChatTokensAndEosEndOfTurn) {
  TempDir tmp;
  testing::write_file(tmp / "c.jsonl", R"({"messages": [{"role": "user", "content": "q"}]})" "\n");
  auto o = testing::prepare_options({tmp / "c.jsonl"}, tmp / "ds", InputFormat::Chat);
  expect_error([&] { prepare_dataset(o, testing::byte_tokenizer()); }, {"'[|system|]' as one token"});
  TokenizerInfo wrong_eos = testing::chat_byte_tokenizer();
  wrong_eos.eos_id = 0;
  expect_error([&] { prepare_dataset(o, wrong_eos); }, {"end with [|endofturn|] (id 260)", "EOS id is 0", "--eos"});
  auto text = testing::prepare_options({tmp / "c.jsonl"}, tmp / "ds", InputFormat::Lines);
  text.chat_keep_reasoning = true;
  expect_error([&] { prepare_dataset(text, testing::byte_tokenizer()); }, {"--keep-reasoning is for --format chat"});
}

// ---- verify --------------------------------------------------------------------------------

class VerifyMask : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected e;
    std::string jsonl;
    for (int k = 0; k < 12; ++k) jsonl += conversation(k, e) + "\n";
    testing::write_file(tmp / "c.jsonl", jsonl);
    auto o = testing::prepare_options({tmp / "c.jsonl"}, dir(), InputFormat::Chat);
    o.shard_tokens = 300;
    manifest = prepare_dataset(o, testing::chat_byte_tokenizer());
  }
  std::string dir() const { return tmp / "ds"; }
  TempDir tmp;
  DatasetManifest manifest;
};

TEST_F(VerifyMask, MaskCountDisagreesWithManifest) {
  DatasetManifest m = manifest;
  m.shards[1].loss_mask_tokens += 1;
  m.loss_mask_tokens += 1;
  write_manifest(dir(), m);
  const VerifyReport r = verify_dataset(dir());
  EXPECT_TRUE(has_problem(r, "shard-00001.bin: " + std::to_string(manifest.shards[1].loss_mask_tokens) +
                                 " tokens have loss-mask bit 1, the manifest says"))
      << problems(r);
}

TEST_F(VerifyMask, TotalDisagreesAndFlagMissing) {
  DatasetManifest m = manifest;
  m.loss_mask_tokens = 3;
  m.has_loss_mask = false;
  write_manifest(dir(), m);
  const VerifyReport r = verify_dataset(dir());
  EXPECT_TRUE(has_problem(r, "loss_mask_tokens 3, the shards add up to")) << problems(r);
  EXPECT_TRUE(has_problem(r, "has a loss mask, the manifest says the dataset has none")) << problems(r);
  EXPECT_TRUE(has_problem(r, "chat data without a loss mask")) << problems(r);
  // The loader refuses it too, pointing at verify.
  expect_error([&] { TokenDataset ds(dir()); }, {"loss mask", "exatrain data verify"});
}

TEST_F(VerifyMask, FlippedMaskBitChangesTheChecksum) {
  const std::string path = dir() + "/shard-00000.bin";
  std::string bytes = testing::read_file(path);
  bytes[64 + 600 + 4] ^= 0x10;  // 300 uint16 ids end at byte 664, where the mask starts: one bit of it
  testing::write_file(path, bytes);
  const VerifyReport r = verify_dataset(dir());
  EXPECT_TRUE(has_problem(r, "shard-00000.bin: sha256 is")) << problems(r);
  EXPECT_TRUE(has_problem(r, "tokens have loss-mask bit 1, the manifest says")) << problems(r);
}

// ---- the loader ----------------------------------------------------------------------------

TEST(LoaderMask, RowsCarryTheMaskOfTheirTokensAndUnmaskedDatasetsAreAllOnes) {
  TempDir tmp;
  Expected chat;
  std::string jsonl;
  for (int k = 0; k < 200; ++k) jsonl += conversation(k, chat) + "\n";
  testing::write_file(tmp / "chat.jsonl", jsonl);
  auto o = testing::prepare_options({tmp / "chat.jsonl"}, tmp / "chat", InputFormat::Chat);
  o.shard_tokens = 777;
  prepare_dataset(o, testing::chat_byte_tokenizer());
  std::string text;
  for (int k = 0; k < 300; ++k) text += "plain line " + std::to_string(k) + "\n";
  testing::write_file(tmp / "text.txt", text);
  auto t = testing::prepare_options({tmp / "text.txt"}, tmp / "text", InputFormat::Lines);
  TokenizerInfo tok = testing::chat_byte_tokenizer();  // the same tokenizer hash, so they blend
  prepare_dataset(t, tok);

  LoaderConfig c;
  c.datasets = {{tmp / "chat", 2.0}, {tmp / "text", 1.0}};
  c.seq_len = 64;
  c.global_batch = 6;
  c.dp_size = 2;
  c.dp_rank = 1;
  c.seed = 11;
  c.prefetch = 2;
  c.datasets[0].validation_sequences = 3;
  DataLoader loader(c);
  EXPECT_TRUE(loader.datasets()[0].has_loss_mask);
  EXPECT_FALSE(loader.datasets()[1].has_loss_mask);
  const int64_t L = c.seq_len;
  int chat_rows = 0, text_rows = 0;
  auto check = [&](const Batch& b) {
    ASSERT_EQ(b.loss_mask.size(), b.tokens.size());
    for (int64_t r = 0; r < b.rows; ++r) {
      const auto* mask = b.loss_mask.data() + r * (L + 1);
      const auto* ids = b.tokens.data() + r * (L + 1);
      if (b.dataset[r] == 0) {
        ++chat_rows;
        const size_t begin = static_cast<size_t>(b.sequence[r] * L);
        for (int64_t i = 0; i <= L; ++i) {
          ASSERT_EQ(static_cast<uint32_t>(ids[i]), chat.ids[begin + i]);
          ASSERT_EQ(mask[i], chat.mask[begin + i]) << "row " << r << " position " << i;
        }
      } else {
        ++text_rows;
        for (int64_t i = 0; i <= L; ++i) ASSERT_EQ(mask[i], 1);
      }
    }
  };
  for (int i = 0; i < 8; ++i) check(loader.next());
  for (int64_t v = 0; v < loader.validation_batches(0); ++v) check(loader.validation_batch(0, v));
  EXPECT_GT(chat_rows, 0);
  EXPECT_GT(text_rows, 0);
}

}  // namespace
}  // namespace exatrain
