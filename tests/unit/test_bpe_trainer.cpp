// BPE training on hand-checked inputs: id order, tie-breaking, min_frequency, special tokens in
// the text, per-line pre-tokenization, the word-count budget (pruning), the written tokenizer.json.
// Exactness against the `tokenizers` library on real corpora is tests/parity/check_tokenizer_train.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "data/tokenizer/bpe_trainer.h"
#include "data/tokenizer/tokenizer.h"
#include "trainer/core/atomic_file.h"
#include "trainer/core/error.h"

namespace exatrain {
namespace {

using Merges = std::vector<std::pair<std::string, std::string>>;

BpeTrainerOptions plain_options(uint32_t vocab_size) {
  BpeTrainerOptions o;
  o.vocab_size = vocab_size;
  o.special_tokens = {};
  o.threads = 1;
  return o;
}

WordCounts table(const std::map<std::string, uint64_t>& words) {
  WordCounts w;
  for (const auto& [word, count] : words) w.add(word, count);
  return w;
}

std::map<std::string, uint64_t> as_map(const WordCounts& w) {
  std::map<std::string, uint64_t> m;
  w.for_each([&](std::string_view word, uint64_t count) { m[std::string(word)] = count; });
  return m;
}

// ---- ids and merges ---------------------------------------------------------------------------

TEST(BpeTrainer, SpecialsFirstThenTheByteAlphabetByCodePoint) {
  BpeTrainerOptions o = plain_options(300);
  o.special_tokens = {"[PAD]", "<s>", "[PAD]"};  // a repeat is kept once
  TrainedBpe bpe = train_bpe(WordCounts{}, o);
  ASSERT_EQ(bpe.vocab.size(), 2u + 256u);  // nothing to merge
  EXPECT_EQ(bpe.vocab[0], "[PAD]");
  EXPECT_EQ(bpe.vocab[1], "<s>");
  EXPECT_EQ(bpe.vocab[2], "!");             // U+0021, the smallest code point of the table
  EXPECT_EQ(bpe.vocab[2 + 93], "~");          // U+007E
  EXPECT_EQ(bpe.vocab[2 + 94], "\xC2\xA1");  // then U+00A1
  EXPECT_EQ(bpe.vocab[2 + 255], "\xC5\x83");  // U+0143, the last of the 68 moved bytes
  EXPECT_EQ(bpe.special_tokens, (std::vector<std::string>{"[PAD]", "<s>"}));
  EXPECT_TRUE(bpe.merges.empty());
}

TEST(BpeTrainer, ASpecialTokenThatIsAByteCharacterKeepsItsSpecialId) {
  BpeTrainerOptions o = plain_options(300);
  o.special_tokens = {"!"};
  TrainedBpe bpe = train_bpe(table({{"!!", 2}}), o);
  EXPECT_EQ(bpe.vocab[0], "!");
  EXPECT_EQ(bpe.vocab[1], "\"");
  ASSERT_EQ(bpe.vocab.size(), 256u + 1u);  // "!" + 255 others + the merge "!!"
  EXPECT_EQ(bpe.vocab[256], "!!");
  EXPECT_EQ(bpe.merges, (Merges{{"!", "!"}}));
}

TEST(BpeTrainer, HighestCountWinsAndTiesGoToTheSmallestIdPair) {
  // Counts: (c,d)=2 beats everything; then (a,b) and (a,c) tie at 1: (a,b) has the smaller right id.
  TrainedBpe bpe = train_bpe(table({{"cd", 2}, {"ac", 1}, {"ab", 1}}), plain_options(256 + 2));
  EXPECT_EQ(bpe.merges, (Merges{{"c", "d"}, {"a", "b"}}));
  EXPECT_EQ(bpe.vocab.size(), 258u);
  EXPECT_EQ(bpe.vocab[256], "cd");
  EXPECT_EQ(bpe.vocab[257], "ab");
  // Ties on the left id first: (b,z) before (c,a).
  bpe = train_bpe(table({{"ca", 1}, {"bz", 1}}), plain_options(257));
  EXPECT_EQ(bpe.merges, (Merges{{"b", "z"}}));
}

TEST(BpeTrainer, TheExampleOfTokenizersOwnTrainerTest) {
  // tokenizers/src/models/bpe/trainer.rs, test_train: min_frequency 2 gives re, are, is.
  BpeTrainerOptions o = plain_options(30000);
  o.min_frequency = 2;
  TrainedBpe bpe = train_bpe(table({{"roses", 1}, {"are", 2}, {"red", 1}, {"voilets", 1}, {"blue", 1}, {"BERT", 1},
                                     {"is", 2}, {"big", 1}, {"and", 1}, {"so", 1}, {"GPT-2", 1}}),
                             o);
  EXPECT_EQ(bpe.merges, (Merges{{"r", "e"}, {"a", "re"}, {"i", "s"}}));
  EXPECT_EQ(bpe.vocab.size(), 259u);
}

TEST(BpeTrainer, MinFrequencyStopsTraining) {
  BpeTrainerOptions o = plain_options(1000);
  o.min_frequency = 3;
  EXPECT_EQ(train_bpe(table({{"ab", 3}, {"cd", 2}}), o).merges, (Merges{{"a", "b"}}));
  o.min_frequency = 2;
  EXPECT_EQ(train_bpe(table({{"ab", 3}, {"cd", 2}}), o).merges, (Merges{{"a", "b"}, {"c", "d"}}));
  o.min_frequency = 0;  // as 1: a pair must be seen at least once
  EXPECT_EQ(train_bpe(table({{"ab", 3}, {"cd", 2}}), o).merges.size(), 2u);
}

TEST(BpeTrainer, OverlappingPairsAreCountedAndUpdatedLikeTokenizers) {
  // "aaaa": (a,a) counted 3 times; merging it leaves [aa, aa], whose pair then merges.
  TrainedBpe bpe = train_bpe(table({{"aaaa", 1}}), plain_options(1000));
  EXPECT_EQ(bpe.merges, (Merges{{"a", "a"}, {"aa", "aa"}}));
  EXPECT_EQ(bpe.vocab.back(), "aaaa");
  // "aaa" x 5 and "ab" x 4: (a,a)=10 first; then (aa,a)=5 beats (a,b)=4.
  bpe = train_bpe(table({{"aaa", 5}, {"ab", 4}}), plain_options(1000));
  EXPECT_EQ(bpe.merges, (Merges{{"a", "a"}, {"aa", "a"}, {"a", "b"}}));
}

TEST(BpeTrainer, StopsAtTheVocabularySizeWithSpecialsCounted) {
  BpeTrainerOptions o = plain_options(256 + 2 + 1);
  o.special_tokens = {"<a>", "<b>"};
  TrainedBpe bpe = train_bpe(table({{"hello", 10}}), o);
  EXPECT_EQ(bpe.vocab.size(), 259u);
  EXPECT_EQ(bpe.merges.size(), 1u);
}

TEST(BpeTrainer, RejectsAVocabularyTooSmallForSpecialsAndBytes) {
  BpeTrainerOptions o = plain_options(256 + 1);
  o.special_tokens = {"<a>", "<b>"};
  try {
    train_bpe(WordCounts{}, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("use at least 258"), std::string::npos) << e.what();
  }
  o.special_tokens = {""};
  o.vocab_size = 1000;
  EXPECT_THROW(train_bpe(WordCounts{}, o), Error);
}

// ---- counting words -------------------------------------------------------------------------

TEST(BpeWordCounts, EachLineIsPreTokenizedOnItsOwn) {
  // As tokenizers' train() reads files: one sequence per line, '\n' included, so "\n\n" is two
  // words "\n" (not one "\n\n"); a last line without '\n' ends at the end of its file.
  BpeTrainerOptions o = plain_options(1000);
  WordCountStats stats;
  WordCounts w = count_words_in_texts({"Hi you\n\nyou", "you\r\n"}, o, &stats);
  EXPECT_EQ(as_map(w), (std::map<std::string, uint64_t>{{"Hi", 1}, {" you", 1}, {"\n", 2}, {"you", 2}, {"\r\n", 1}}));
  EXPECT_EQ(stats.lines, 4u);
  EXPECT_EQ(stats.files, 2u);
  EXPECT_EQ(stats.pre_tokens, 7u);
}

TEST(BpeWordCounts, SpecialTokensInTheTextAreCutOutAndNotCounted) {
  BpeTrainerOptions o = plain_options(1000);
  o.special_tokens = {"<think>", "<a>", "<a>b"};
  WordCountStats stats;
  WordCounts w = count_words_in_texts({"x<think>x<think>\n", "<a>bc<a>c\n"}, o, &stats);
  // Leftmost-longest: "<a>b" wins over "<a>" at the same place.
  EXPECT_EQ(as_map(w), (std::map<std::string, uint64_t>{{"x", 2}, {"\n", 2}, {"c", 2}}));
  EXPECT_EQ(stats.special_tokens_skipped, 4u);
  // So no merge can build a special token out of its pieces.
  o.vocab_size = 2000;
  TrainedBpe bpe = train_bpe(w, o);
  EXPECT_TRUE(bpe.merges.empty());
}

TEST(BpeWordCounts, NfcAppliesWhenChosen) {
  BpeTrainerOptions o = plain_options(1000);
  const std::string decomposed = "e\xCC\x81";  // e + U+0301
  EXPECT_EQ(as_map(count_words_in_texts({decomposed}, o)), (std::map<std::string, uint64_t>{{"\xC3\xA9", 1}}));
  o.nfc = false;
  // Without NFC the combining mark (not a letter) is a pre-token of its own.
  EXPECT_EQ(as_map(count_words_in_texts({decomposed}, o)),
            (std::map<std::string, uint64_t>{{"e", 1}, {"\xCC\x81", 1}}));
}

TEST(BpeWordCounts, InvalidUtf8IsReplacedAndCounted) {
  WordCountStats stats;
  WordCounts w = count_words_in_texts({"a\xFF"}, plain_options(1000), &stats);
  EXPECT_EQ(as_map(w), (std::map<std::string, uint64_t>{{"a", 1}, {"\xEF\xBF\xBD", 1}}));
  EXPECT_EQ(stats.invalid_utf8_sequences, 1u);
}

TEST(BpeWordCounts, TheResultDoesNotDependOnThreadsOrBatchSize) {
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "line " + std::to_string(i % 977) + " word" + std::to_string(i % 331) + "\n";
  BpeTrainerOptions o = plain_options(1000);
  o.threads = 1;
  const auto reference = as_map(count_words_in_texts({text}, o));
  o.threads = 3;
  o.batch_bytes = 4096;
  EXPECT_EQ(as_map(count_words_in_texts({text}, o)), reference);
  EXPECT_EQ(reference.at(" word"), 20000u);
  EXPECT_EQ(reference.at("line"), 20000u);
}

TEST(BpeWordCounts, MissingFileIsAClearError) {
  try {
    count_words({"/nonexistent/corpus.txt"}, plain_options(1000));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/corpus.txt"), std::string::npos) << e.what();
  }
}

// ---- the word budget: pruning ---------------------------------------------------------------

TEST(BpeWordCounts, PruneKeepsTheMostFrequentWords) {
  WordCounts w = table({{"a", 5}, {"b", 3}, {"c", 3}, {"d", 1}});
  auto [dropped, largest] = w.prune_to(2);  // a, and one of b and c (a fixed hash decides)
  EXPECT_EQ(dropped, 2u);
  EXPECT_EQ(largest, 3u);
  EXPECT_EQ(w.size(), 2u);
  EXPECT_EQ(w.count("a"), 5u);
  EXPECT_EQ(w.count("b") + w.count("c"), 3u);
  EXPECT_EQ(w.count("d"), 0u);
  // The same survivor whatever the insertion order.
  WordCounts reversed = table({{"d", 1}});
  for (const char* word : {"c", "b", "a"}) reversed.add(word, word[0] == 'a' ? 5 : 3);
  reversed.prune_to(2);
  EXPECT_EQ(as_map(reversed), as_map(w));

  w = table({{"a", 5}, {"b", 3}, {"c", 3}, {"d", 1}});
  EXPECT_EQ(w.prune_to(3), (std::pair<uint64_t, uint64_t>{1, 1}));
  EXPECT_EQ(as_map(w), (std::map<std::string, uint64_t>{{"a", 5}, {"b", 3}, {"c", 3}}));
  EXPECT_EQ(w.prune_to(3).first, 0u);  // within budget: nothing happens
  w.add("e", 1);                       // the table still works after a prune
  EXPECT_EQ(w.count("e"), 1u);
  EXPECT_EQ(w.count("a"), 5u);
}

TEST(BpeWordCounts, OverTheBudgetTheRarestWordsArePrunedAfterEachBatch) {
  BpeTrainerOptions o = plain_options(1000);
  o.max_words = 2;  // pruned down to 2 - 2/4 = 2
  o.batch_bytes = 1;  // one line per batch
  WordCountStats stats;
  // Line 1: x 1, " x" 2, " y" 1, "\n" 1 -> 4 words > 2: " x" and one of the others stay.
  // Line 2: z 1, "\n" 1 more -> over 2 again: " x" and one word seen once (or "\n", twice) stay.
  WordCounts w = count_words_in_texts({"x x x y\nz\n"}, o, &stats);
  EXPECT_EQ(w.size(), 2u);
  EXPECT_EQ(w.count(" x"), 2u);
  EXPECT_EQ(stats.prunes, 2u);
  EXPECT_TRUE(stats.words_pruned == 3u || stats.words_pruned == 4u) << stats.words_pruned;
  EXPECT_EQ(stats.max_count_pruned, 1u);
  // Without the budget every word is there.
  o.max_words = 0;
  EXPECT_EQ(count_words_in_texts({"x x x y\nz\n"}, o).size(), 5u);
}

TEST(BpeWordCounts, PruningKeepsFrequentWordsOnALargeInput) {
  // 50 frequent words among 30,000 seen once: a budget of 1,000 words keeps all the frequent ones
  // (and the pruning stays within 1,000 words, down to 750 each time).
  std::string text;
  for (int i = 0; i < 30000; ++i) {
    std::string rare = "rare";  // letters only, so that it stays one pre-token
    for (int v = i; v > 0; v /= 26) rare.push_back(char('a' + v % 26));
    text += rare + " common" + std::string(1, char('a' + i % 25)) + std::string(1, char('a' + i % 2)) + "\n";
  }
  BpeTrainerOptions o = plain_options(1000);
  o.max_words = 1000;
  o.batch_bytes = 64 << 10;
  WordCountStats stats;
  WordCounts w = count_words_in_texts({text}, o, &stats);
  EXPECT_GT(stats.prunes, 0u);
  EXPECT_LE(w.size(), 1000u);
  EXPECT_EQ(w.count(" commonaa"), 600u);
  EXPECT_EQ(stats.max_count_pruned, 1u);  // i % 25 == 0 and i % 2 == 0: every 50th line
  EXPECT_EQ(w.count("\n"), 30000u);
}

// ---- the written tokenizer.json -------------------------------------------------------------

TEST(BpeTrainerOutput, TheJsonLoadsAndEncodesWithTheLearnedMerges) {
  BpeTrainerOptions o = plain_options(256 + 3 + 3);
  o.special_tokens = {"[PAD]", "[|endofturn|]", "<think>"};
  WordCounts w = count_words_in_texts({"hello hello hello\n"}, o);
  TrainedBpe bpe = train_bpe(w, o);
  Tokenizer tok = Tokenizer::from_json(trained_tokenizer_json(bpe, o));
  EXPECT_EQ(tok.vocab_size(), bpe.vocab.size());
  EXPECT_EQ(tok.token_to_id("[|endofturn|]"), 1u);
  EXPECT_TRUE(tok.is_special(2));
  const std::vector<uint32_t> ids = tok.encode("hello<think>\n");
  // The 3 merges: (e,l), then (h,el) and (l,o), ties at count 3 going to the smaller left id.
  EXPECT_EQ(bpe.merges, (Merges{{"e", "l"}, {"h", "el"}, {"l", "o"}}));
  ASSERT_EQ(ids.size(), 4u);  // hel lo <think> \n
  EXPECT_EQ(tok.id_to_token(ids[0]), "hel");
  EXPECT_EQ(ids[ids.size() - 2], 2u);
  EXPECT_EQ(tok.decode(ids), "hello<think>\n");
  const std::string config = trained_tokenizer_config_json(bpe, "", "[|endofturn|]", "[PAD]");
  EXPECT_NE(config.find("\"eos_token\": \"[|endofturn|]\""), std::string::npos) << config;
}

TEST(BpeTrainerOutput, AtomicWriteReplacesOrLeavesNothing) {
  const auto dir = std::filesystem::temp_directory_path() / ("bpe_trainer_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "tokenizer.json").string();
  write_file_atomically(path, "first");
  write_file_atomically(path, "second");
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "second");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()), 1);
  EXPECT_THROW(check_output_writable((dir / "missing" / "tokenizer.json").string()), Error);
  EXPECT_THROW(check_output_writable(dir.string()), Error);  // a directory
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace exatrain
