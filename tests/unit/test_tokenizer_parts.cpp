// The tokenizer's parts on hand-checkable cases: sha256, the UTF-8 policy, the ByteLevel table,
// Unicode 9.0 normalization, Oniguruma iteration, split behaviors, BPE merge order, added tokens.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "data/tokenizer/added_vocabulary.h"
#include "data/tokenizer/bpe.h"
#include "data/tokenizer/byte_level.h"
#include "data/tokenizer/normalizer.h"
#include "data/tokenizer/onig_regex.h"
#include "data/tokenizer/pre_tokenizer.h"
#include "trainer/core/sha256.h"
#include "trainer/core/utf8.h"
#include "trainer/core/error.h"

namespace exatrain {
namespace {

using tok::SplitBehavior;

// ---- sha256 (FIPS 180-4 test vectors) ----------------------------------------------------------

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(std::string_view("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex(std::string_view("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string_view("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, StreamingInOddPiecesEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 5000; ++i) data.push_back(char(i * 131 + 7));
  for (size_t step : {1, 3, 63, 64, 65, 1000}) {
    Sha256 h;
    for (size_t pos = 0; pos < data.size(); pos += step) h.update(std::string_view(data).substr(pos, step));
    EXPECT_EQ(h.finish_hex(), sha256_hex(data)) << "step " << step;
  }
  Sha256 h;
  h.update(std::string_view("abc"));
  h.reset();
  EXPECT_EQ(h.finish_hex(), sha256_hex(std::string_view("")));
}

// ---- UTF-8: the invalid-input policy ----------------------------------------------------------

struct Lossy {
  std::string text;
  size_t replaced;
};
Lossy lossy(std::string_view bytes) {
  Lossy r;
  r.replaced = utf8::append_replacing_invalid(bytes, r.text);
  return r;
}
const std::string R = "\xEF\xBF\xBD";  // U+FFFD

TEST(Utf8, MaximalSubpartsBecomeOneReplacementEach) {
  // The same answers as Python's bytes.decode("utf-8", "replace").
  EXPECT_EQ(lossy("abc\xFF" "def").text, "abc" + R + "def");
  EXPECT_EQ(lossy("\xE2\x82").replaced, 1u);                       // truncated 3-byte sequence
  EXPECT_EQ(lossy("\xE2\x82(").text, R + "(");
  EXPECT_EQ(lossy("\xF0\x9F\x98").replaced, 1u);                   // truncated 4-byte sequence
  EXPECT_EQ(lossy("\xED\xA0\x80").replaced, 3u);                   // a surrogate: ED then two strays
  EXPECT_EQ(lossy("\xC0\x80").replaced, 2u);                       // overlong NUL
  EXPECT_EQ(lossy("\xE0\x80\x80").replaced, 3u);                   // overlong
  EXPECT_EQ(lossy("\xF4\x90\x80\x80").replaced, 4u);               // above U+10FFFF
  EXPECT_EQ(lossy("\xF5\xFF\x80").replaced, 3u);
  EXPECT_EQ(lossy("end\xF0").text, "end" + R);
  EXPECT_EQ(lossy("caf\xE9 au lait").text, "caf" + R + " au lait");
}

TEST(Utf8, ValidTextIsUntouched) {
  for (std::string_view ok : {"", "plain ascii", "caf\xC3\xA9", "\xF0\x9F\x98\x80", "\xEF\xBB\xBF" "bom", "\xF4\x8F\xBF\xBF"}) {
    EXPECT_TRUE(utf8::is_valid(ok));
    EXPECT_EQ(lossy(ok).replaced, 0u);
    EXPECT_EQ(lossy(ok).text, ok);
  }
  EXPECT_EQ(utf8::valid_prefix_length("abcdefghij\xFF"), 10u);
}

// ---- ByteLevel ------------------------------------------------------------------------------

TEST(ByteLevel, TableMatchesGpt2) {
  EXPECT_EQ(byte_level::char_for_byte(' '), U'\u0120');   // 'Ġ'
  EXPECT_EQ(byte_level::char_for_byte('\n'), U'\u010A');  // 'Ċ'
  EXPECT_EQ(byte_level::char_for_byte(0x00), U'\u0100');
  EXPECT_EQ(byte_level::char_for_byte(0x20), U'\u0120');  // the 33rd byte that does not stand for itself
  EXPECT_EQ(byte_level::char_for_byte(0x7F), U'\u0121');
  EXPECT_EQ(byte_level::char_for_byte(0xA0), U'\u0142');
  EXPECT_EQ(byte_level::char_for_byte(0xAD), U'\u0143');  // the last of the 68
  for (int b : {0x21, 0x41, 0x7E, 0xA1, 0xAC, 0xAE, 0xFF}) EXPECT_EQ(byte_level::char_for_byte(uint8_t(b)), char32_t(b));
  for (int b = 0; b < 256; ++b) EXPECT_EQ(byte_level::byte_for_char(byte_level::char_for_byte(uint8_t(b))), b);
  EXPECT_EQ(byte_level::byte_for_char(U'\u0144'), -1);
  EXPECT_EQ(byte_level::byte_for_char(U' '), -1);  // space itself is not a table character
  std::string mapped;
  byte_level::append_mapped("a b\n\xC3\xA9", mapped);
  EXPECT_EQ(mapped, "a\xC4\xA0" "b\xC4\x8A\xC3\x83\xC2\xA9");  // a Ġ b Ċ Ã ©
}

// ---- normalization (Unicode 9.0, as tokenizers) ------------------------------------------------

std::string normalize(tok::NormalizationForm form, std::string_view text) {
  tok::Normalizer n({form});
  std::string out, tmp;
  return std::string(n.apply(text, out, tmp));
}

TEST(Normalizer, FormsAndTheUnicode9Boundary) {
  using F = tok::NormalizationForm;
  EXPECT_EQ(normalize(F::NFC, "e\xCC\x81"), "\xC3\xA9");                 // e + U+0301 -> é
  EXPECT_EQ(normalize(F::NFD, "\xC3\xA9"), "e\xCC\x81");
  EXPECT_EQ(normalize(F::NFC, "\xE2\x84\xAB"), "\xC3\x85");              // U+212B ANGSTROM -> Å
  EXPECT_EQ(normalize(F::NFKC, "\xEF\xAC\x81"), "fi");                   // U+FB01 ligature
  EXPECT_EQ(normalize(F::NFC, "\xEF\xAC\x81"), "\xEF\xAC\x81");
  EXPECT_EQ(normalize(F::NFC, "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo -> 각
  // Characters newer than Unicode 9.0 are left alone, as the tokenizers tables do not know them:
  EXPECT_EQ(normalize(F::NFKC, "\xE3\x8B\xBF"), "\xE3\x8B\xBF");          // U+32FF (12.1) stays
  EXPECT_EQ(normalize(F::NFKC, "\xE3\x8B\xBE"), "\xE3\x83\xB2");          // U+32FE (1.1) -> ヲ
  EXPECT_EQ(normalize(F::NFC, "\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0"),        // U+11935 U+11930 (13.0):
            "\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0");                          // not composed
  EXPECT_EQ(normalize(F::NFD, "\xF0\x91\xA4\xB8"), "\xF0\x91\xA4\xB8");    // U+11938 not decomposed
  tok::Normalizer seq({F::NFKD, F::NFC});
  std::string out, tmp;
  EXPECT_EQ(seq.apply("\xEF\xAC\x81\xC3\xA9", out, tmp), "fi\xC3\xA9");
  tok::Normalizer none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.apply("x", out, tmp), "x");
}

// ---- Oniguruma, iterated like the onig crate -------------------------------------------------

std::vector<std::pair<uint32_t, uint32_t>> find_all(std::string_view pattern, std::string_view text) {
  tok::OnigRegex re(pattern);
  tok::RegexScratch scratch;
  std::vector<tok::Span> m;
  re.find_all(text, m, scratch);
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (auto s : m) out.emplace_back(s.begin, s.end);
  return out;
}

TEST(OnigRegex, FindIterLikeTheOnigCrate) {
  using V = std::vector<std::pair<uint32_t, uint32_t>>;
  // The onig crate's own tests of find_iter.
  EXPECT_EQ(find_all(R"(\d+)", "a12b2"), (V{{1, 3}, {4, 5}}));
  EXPECT_EQ(find_all(R"(\d*)", "a1b2"), (V{{0, 0}, {1, 2}, {3, 4}}));
  EXPECT_EQ(find_all(R"(\d*)", "a1bbb2"), (V{{0, 0}, {1, 2}, {3, 3}, {4, 4}, {5, 6}}));
  EXPECT_EQ(find_all(R"(\b)", "test string"), (V{{0, 0}, {4, 4}, {5, 5}, {11, 11}}));
  // Oniguruma's \s (not U+001C..U+001F) and Unicode classes.
  EXPECT_EQ(find_all(R"(\s)", "a\x1C" "b\xC2\xA0" "c"), (V{{3, 5}}));
  EXPECT_EQ(find_all(R"(\p{L}+)", "\xEC\x95\x88\xEB\x85\x95 hi"), (V{{0, 6}, {7, 9}}));
  EXPECT_THROW(tok::OnigRegex("(unclosed"), Error);
  EXPECT_EQ(tok::escape_regex("a.b|c-d"), "a\\.b\\|c\\-d");
}

// ---- Split behaviors (the examples of the tokenizers documentation) ---------------------------

std::vector<std::string> pre_tokenize(tok::PreTokenizer& p, std::string_view text) {
  tok::PreTokenizeScratch s;
  p.run(text, s);
  std::vector<std::string> out;
  for (const auto& piece : s.pieces) out.emplace_back(s.view(piece));
  return out;
}

TEST(PreTokenizer, SplitBehaviors) {
  using V = std::vector<std::string>;
  const std::string text = "the-final--countdown";
  auto split = [&](SplitBehavior b, bool invert = false) {
    tok::PreTokenizer p;
    p.add_split("-", b, invert);
    return pre_tokenize(p, text);
  };
  EXPECT_EQ(split(SplitBehavior::Removed), (V{"the", "final", "countdown"}));
  EXPECT_EQ(split(SplitBehavior::Isolated), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split(SplitBehavior::MergedWithPrevious), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split(SplitBehavior::MergedWithNext), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split(SplitBehavior::Contiguous), (V{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(split(SplitBehavior::Removed, true), (V{"-", "-", "-"}));
}

TEST(PreTokenizer, ByteLevelPrefixSpaceAndRegex) {
  using V = std::vector<std::string>;
  tok::PreTokenizer gpt2;
  gpt2.add_byte_level(true, true);
  EXPECT_TRUE(gpt2.maps_bytes());
  // Pieces stay raw bytes (the model maps them): a space is prepended, then the GPT-2 split.
  EXPECT_EQ(pre_tokenize(gpt2, "Hello world's  end"), (V{" Hello", " world", "'s", " ", " end"}));
  tok::PreTokenizer split_then_bytes;
  split_then_bytes.add_split(R"(\s+)", SplitBehavior::Removed, false);
  split_then_bytes.add_byte_level(true, false);
  EXPECT_EQ(pre_tokenize(split_then_bytes, "a  b c"), (V{" a", " b", " c"}));
  // A step after ByteLevel sees its characters ('Ġ' for a space).
  tok::PreTokenizer bytes_then_split;
  bytes_then_split.add_byte_level(false, false);
  bytes_then_split.add_split("\xC4\xA0", SplitBehavior::MergedWithNext, false);
  EXPECT_FALSE(bytes_then_split.maps_bytes());
  EXPECT_EQ(pre_tokenize(bytes_then_split, "a b"), (V{"a", "\xC4\xA0" "b"}));
}

// ---- BPE merge order ----------------------------------------------------------------------------

std::vector<uint32_t> bpe(const tok::BpeModel& m, std::string_view word) {
  tok::BpeScratch s;
  std::vector<uint32_t> ids;
  m.tokenize(word, ids, s);
  return ids;
}

using Vocab = std::vector<std::pair<std::string, uint32_t>>;
using Merges = std::vector<std::pair<std::string, std::string>>;
const Vocab kAbc = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}, {"aa", 6}, {"aaa", 7}};

TEST(Bpe, LowestRankFirstTiesToTheLeft) {
  using V = std::vector<uint32_t>;
  tok::BpeModel bc_first(kAbc, Merges{{"b", "c"}, {"a", "b"}, {"a", "bc"}}, {}, "test");
  EXPECT_EQ(bpe(bc_first, "abc"), (V{5}));        // b+c (rank 0), then a+bc
  tok::BpeModel ab_first(kAbc, Merges{{"a", "b"}, {"b", "c"}}, {}, "test");
  EXPECT_EQ(bpe(ab_first, "abc"), (V{3, 2}));     // a+b (rank 0); ab+c has no merge
  tok::BpeModel aa(kAbc, Merges{{"a", "a"}}, {}, "test");
  EXPECT_EQ(bpe(aa, "aaa"), (V{6, 0}));           // identical pairs: leftmost first
  EXPECT_EQ(bpe(aa, "aaaa"), (V{6, 6}));
  // A later duplicate of a merge takes the later rank.
  tok::BpeModel duplicate(kAbc, Merges{{"a", "b"}, {"b", "c"}, {"a", "b"}}, {}, "test");
  EXPECT_EQ(bpe(duplicate, "abc"), (V{0, 4}));
}

TEST(Bpe, UnknownCharactersIgnoreMergesAndAffixes) {
  using V = std::vector<uint32_t>;
  Vocab vocab = kAbc;
  vocab.push_back({"<unk>", 8});
  vocab.push_back({"<0x78>", 9});  // 'x'
  tok::BpeOptions unk;
  unk.unk_token = "<unk>";
  EXPECT_EQ(bpe(tok::BpeModel(vocab, {}, unk, "t"), "axyb"), (V{0, 8, 8, 1}));
  unk.fuse_unk = true;
  EXPECT_EQ(bpe(tok::BpeModel(vocab, {}, unk, "t"), "axyb"), (V{0, 8, 1}));
  tok::BpeOptions fallback = unk;
  fallback.fuse_unk = false;
  fallback.byte_fallback = true;
  EXPECT_EQ(bpe(tok::BpeModel(vocab, {}, fallback, "t"), "axb"), (V{0, 9, 1}));
  // No fallback token for 'y': the pending unk waits behind the byte token of the next 'x', as in
  // tokenizers' merge_word.
  EXPECT_EQ(bpe(tok::BpeModel(vocab, {}, fallback, "t"), "yxb"), (V{9, 8, 1}));
  EXPECT_EQ(bpe(tok::BpeModel(vocab, {}, {}, "t"), "axb"), (V{0, 1}));  // no unk: dropped
  tok::BpeOptions whole;
  whole.ignore_merges = true;
  EXPECT_EQ(bpe(tok::BpeModel(kAbc, Merges{{"a", "b"}}, whole, "t"), "abc"), (V{5}));
  EXPECT_EQ(bpe(tok::BpeModel(kAbc, Merges{{"a", "b"}}, {}, "t"), "abc"), (V{3, 2}));

  Vocab wp = {{"a", 0}, {"##b", 1}, {"##c</w>", 2}, {"a##b", 3}, {"ab", 4}, {"ab##c</w>", 5}, {"abc</w>", 6}};
  tok::BpeOptions affixes;
  affixes.continuing_subword_prefix = "##";
  affixes.end_of_word_suffix = "</w>";
  tok::BpeModel prefixed(wp, Merges{{"a", "##b"}, {"ab", "##c</w>"}}, affixes, "t");
  EXPECT_EQ(bpe(prefixed, "abc"), (V{6}));  // a + ##b -> ab; ab + ##c</w> -> abc</w>
}

TEST(Bpe, MergeOfUnknownTokenIsAnError) {
  try {
    tok::BpeModel(kAbc, Merges{{"a", "b"}, {"a", "zz"}}, {}, "t.json: model");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t.json: model.merges[1]"), std::string::npos) << e.what();
  }
}

TEST(BpeCache, RemembersAndStaysBounded) {
  tok::BpeCache cache(4);
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < 100; ++i) {
    std::string key = "k" + std::to_string(i);
    std::vector<uint32_t> ids = {i, i + 1};
    cache.insert(key, tok::BpeCache::hash(key), ids);
    out.clear();
    ASSERT_TRUE(cache.lookup(key, tok::BpeCache::hash(key), out));
    EXPECT_EQ(out, ids);
    EXPECT_LE(cache.size(), 4u);
  }
  out.clear();
  EXPECT_FALSE(cache.lookup("k0", tok::BpeCache::hash("k0"), out));
}

// ---- added tokens -------------------------------------------------------------------------------

struct Matched {
  std::vector<std::string> texts;
  std::vector<int64_t> ids;
};
Matched split_added(const tok::AddedVocabulary& v, std::string_view text, bool normalized) {
  std::vector<tok::TextSegment> segs;
  v.split(text, normalized, segs);
  Matched m;
  for (auto s : segs) {
    m.texts.emplace_back(text.substr(s.begin, s.end - s.begin));
    m.ids.push_back(s.id);
  }
  return m;
}

tok::AddedToken added(std::string content, bool normalized, bool single_word = false, bool lstrip = false,
                      bool rstrip = false, bool special = false) {
  tok::AddedToken t;
  t.content = std::move(content);
  t.normalized = normalized;
  t.single_word = single_word;
  t.lstrip = lstrip;
  t.rstrip = rstrip;
  t.special = special;
  return t;
}

TEST(AddedVocabulary, IdsFlagsAndMatching) {
  using S = std::vector<std::string>;
  using I = std::vector<int64_t>;
  tok::BpeModel model(kAbc, {}, {}, "t");
  tok::Normalizer nfkc({tok::NormalizationForm::NFKC});
  std::vector<tok::AddedToken> tokens = {
      added("<m>", false, false, true, true),    // lstrip + rstrip
      added("ab", false, true),                  // already in the vocabulary (id 3); single_word
      added("[S]", false, false, false, false, true),
      added("fi", true),                         // matched on normalized text
      added("<m>", false, false, true, true),    // an exact duplicate: ignored
  };
  tok::AddedVocabulary v(tokens, model, nfkc, "t");
  EXPECT_EQ(v.token_to_id("<m>"), 8u);  // ids from the model's size (8 tokens)
  EXPECT_EQ(v.token_to_id("ab"), 3u);
  EXPECT_EQ(v.token_to_id("[S]"), 9u);
  EXPECT_EQ(v.token_to_id("fi"), 10u);
  EXPECT_TRUE(v.is_special("[S]"));
  EXPECT_FALSE(v.is_special("<m>"));

  auto m = split_added(v, "x  <m>  y", false);  // whitespace on both sides is absorbed
  EXPECT_EQ(m.texts, (S{"x", "  <m>  ", "y"}));
  EXPECT_EQ(m.ids, (I{-1, 8, -1}));
  m = split_added(v, "ab xab ab. [S][S]", false);  // single_word: not inside a word
  EXPECT_EQ(m.texts, (S{"ab", " xab ", "ab", ". ", "[S]", "[S]"}));
  EXPECT_EQ(m.ids, (I{3, -1, 3, -1, 9, 9}));
  m = split_added(v, "abab", false);  // both rejected; the second is not rescanned into a match
  EXPECT_EQ(m.ids, (I{-1}));
  EXPECT_EQ(split_added(v, "a fi b", false).ids, (I{-1}));  // "fi" is in the normalized set
  EXPECT_EQ(split_added(v, "a fi b", true).ids, (I{-1, 10, -1}));
  EXPECT_EQ(split_added(v, "", false).ids, (I{}));
}

TEST(AddedVocabulary, LaterDuplicateContentTakesOverTheFlags) {
  tok::BpeModel model(kAbc, {}, {}, "t");
  tok::Normalizer none;
  tok::AddedVocabulary v({added("<m>", false, true), added("<m>", false, false)}, model, none, "t");
  ASSERT_EQ(v.tokens().size(), 1u);
  EXPECT_FALSE(v.tokens()[0].single_word);
  EXPECT_EQ(split_added(v, "x<m>y", false).ids, (std::vector<int64_t>{-1, 8, -1}));
}

TEST(RegexClasses, RustWordAndSpace) {
  EXPECT_TRUE(tok::is_regex_word_char(U'a'));
  EXPECT_TRUE(tok::is_regex_word_char(U'_'));
  EXPECT_TRUE(tok::is_regex_word_char(U'\u0301'));  // combining mark
  EXPECT_TRUE(tok::is_regex_word_char(U'\uD55C'));  // Hangul
  EXPECT_TRUE(tok::is_regex_word_char(U'\u200D'));  // Join_Control
  EXPECT_FALSE(tok::is_regex_word_char(U'-'));
  EXPECT_TRUE(tok::is_regex_space(U'\u3000'));
  EXPECT_TRUE(tok::is_regex_space(U'\u0085'));
  EXPECT_FALSE(tok::is_regex_space(U'\u200B'));
}

}  // namespace
}  // namespace exatrain
