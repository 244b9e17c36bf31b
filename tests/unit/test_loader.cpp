// The streaming loader against an independent reference: the token streams and document starts
// are rebuilt here from the documents that went into preparation, and every batch is checked
// against them. Then: epochs, blending, validation, resuming, and changing the DP size.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "data/shards/loader.h"
#include "data/shards/prepare.h"
#include "data/shards/testing.h"
#include "trainer/core/error.h"
#include "trainer/core/sha256.h"
#include "tests/unit/expect_error.h"

namespace exatrain {
namespace {

using testing::TempDir;

// A prepared dataset and the token stream it must hold, computed without the library.
struct Reference {
  std::string dir;
  std::vector<int32_t> stream;
  std::set<int64_t> doc_starts;
};

Reference make_dataset(const TempDir& tmp, const std::string& name, int docs, uint32_t seed, bool wide = false) {
  std::mt19937 rng(seed);
  std::string text;
  Reference ref;
  ref.dir = tmp / name;
  const TokenizerInfo tok = wide ? testing::wide_byte_tokenizer() : testing::byte_tokenizer();
  for (int d = 0; d < docs; ++d) {
    std::string doc = name + std::to_string(d) + ":";
    const int len = 3 + static_cast<int>(rng() % 90);
    for (int i = 0; i < len; ++i) doc += static_cast<char>('a' + rng() % 26);
    if (wide) doc += "\xe2\x82\xac";  // the euro sign: byte 0xe2 becomes id 67803
    text += doc + "\n\n";
    ref.doc_starts.insert(static_cast<int64_t>(ref.stream.size()));
    for (uint32_t id : tok.encode(doc)) ref.stream.push_back(static_cast<int32_t>(id));
    ref.stream.push_back(static_cast<int32_t>(tok.eos_id));
  }
  testing::write_file(tmp / (name + ".txt"), text);
  auto o = testing::prepare_options({tmp / (name + ".txt")}, ref.dir, InputFormat::Text);
  o.name = name;
  o.shard_tokens = 997;  // sequences straddle shard boundaries
  prepare_dataset(o, tok);
  return ref;
}

class Loader : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp = new TempDir;
    a = new Reference(make_dataset(*tmp, "A", 400, 1));  // ~20k tokens
    b = new Reference(make_dataset(*tmp, "B", 150, 2));
    c = new Reference(make_dataset(*tmp, "C", 40, 3));
    w = new Reference(make_dataset(*tmp, "W", 100, 4, /*wide=*/true));
  }
  static void TearDownTestSuite() {
    delete a;
    delete b;
    delete c;
    delete w;
    delete tmp;
  }

  static LoaderConfig config(std::vector<std::pair<const Reference*, double>> sets, int64_t seq_len, int64_t batch,
                             int64_t prefetch = 0) {
    LoaderConfig cfg;
    for (const auto& [ref, weight] : sets) cfg.datasets.push_back(LoaderDataset{ref->dir, weight, 0, 0});
    cfg.seq_len = seq_len;
    cfg.global_batch = batch;
    cfg.seed = 1234;
    cfg.prefetch = prefetch;
    return cfg;
  }

  static std::vector<Batch> take(DataLoader& loader, int n) {
    std::vector<Batch> out;
    for (int i = 0; i < n; ++i) out.push_back(loader.next());
    return out;
  }

  // Row r of `batch` must be `ref`'s tokens [q * L, q * L + L + 1) with the document starts there.
  static void expect_row_matches(const Batch& batch, int64_t r, const Reference& ref) {
    const int64_t L = batch.seq_len, q = batch.sequence[r];
    const std::vector<int32_t> row(batch.tokens.begin() + r * (L + 1), batch.tokens.begin() + (r + 1) * (L + 1));
    const std::vector<int32_t> expected(ref.stream.begin() + q * L, ref.stream.begin() + q * L + L + 1);
    ASSERT_EQ(row, expected) << "batch " << batch.index << " row " << r << " sequence " << q;
    std::vector<int32_t> starts(batch.doc_starts.begin() + batch.doc_start_offsets[r],
                                batch.doc_starts.begin() + batch.doc_start_offsets[r + 1]);
    std::vector<int32_t> expected_starts;
    for (auto it = ref.doc_starts.lower_bound(q * L); it != ref.doc_starts.end() && *it <= q * L + L; ++it)
      expected_starts.push_back(static_cast<int32_t>(*it - q * L));
    ASSERT_EQ(starts, expected_starts) << "batch " << batch.index << " row " << r;
  }

  static TempDir* tmp;
  static Reference *a, *b, *c, *w;
};

TempDir* Loader::tmp = nullptr;
Reference *Loader::a = nullptr, *Loader::b = nullptr, *Loader::c = nullptr, *Loader::w = nullptr;

void expect_same(const std::vector<Batch>& x, const std::vector<Batch>& y) {
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i].index, y[i].index);
    EXPECT_EQ(x[i].rows, y[i].rows);
    EXPECT_EQ(x[i].tokens, y[i].tokens) << "batch " << i;
    EXPECT_EQ(x[i].doc_starts, y[i].doc_starts) << "batch " << i;
    EXPECT_EQ(x[i].doc_start_offsets, y[i].doc_start_offsets) << "batch " << i;
    EXPECT_EQ(x[i].dataset, y[i].dataset) << "batch " << i;
    EXPECT_EQ(x[i].sequence, y[i].sequence) << "batch " << i;
    EXPECT_EQ(x[i].epoch, y[i].epoch) << "batch " << i;
  }
}

// The rows of several ranks' slices, concatenated rank after rank: one global batch.
Batch concatenate(const std::vector<Batch>& slices) {
  Batch out = slices[0];
  for (size_t s = 1; s < slices.size(); ++s) {
    const Batch& b = slices[s];
    out.rows += b.rows;
    out.tokens.insert(out.tokens.end(), b.tokens.begin(), b.tokens.end());
    const int64_t base = static_cast<int64_t>(out.doc_starts.size());
    out.doc_starts.insert(out.doc_starts.end(), b.doc_starts.begin(), b.doc_starts.end());
    for (size_t r = 1; r < b.doc_start_offsets.size(); ++r) out.doc_start_offsets.push_back(base + b.doc_start_offsets[r]);
    out.dataset.insert(out.dataset.end(), b.dataset.begin(), b.dataset.end());
    out.sequence.insert(out.sequence.end(), b.sequence.begin(), b.sequence.end());
    out.epoch.insert(out.epoch.end(), b.epoch.begin(), b.epoch.end());
  }
  return out;
}

TEST_F(Loader, RowsArePackedSequencesWithTheirDocumentStarts) {
  DataLoader loader(config({{a, 1.0}}, 64, 4));
  const auto& info = loader.datasets().at(0);
  EXPECT_EQ(info.tokens, a->stream.size());
  EXPECT_EQ(info.sequences, static_cast<int64_t>((a->stream.size() - 1) / 64));
  EXPECT_EQ(info.train_sequences, info.sequences);
  EXPECT_EQ(info.name, "A");
  for (const Batch& batch : take(loader, 120)) {  // more than an epoch
    ASSERT_EQ(batch.rows, 4);
    ASSERT_EQ(batch.tokens.size(), 4u * 65);
    for (int64_t r = 0; r < batch.rows; ++r) expect_row_matches(batch, r, *a);
  }
}

TEST_F(Loader, Uint32DatasetReadsWideIds) {
  DataLoader loader(config({{w, 1.0}}, 50, 3));
  int32_t largest = 0;
  for (const Batch& batch : take(loader, 20)) {
    for (int64_t r = 0; r < batch.rows; ++r) expect_row_matches(batch, r, *w);
    largest = std::max(largest, *std::max_element(batch.tokens.begin(), batch.tokens.end()));
  }
  EXPECT_GT(largest, 65535);
}

TEST_F(Loader, EachEpochIsADifferentPermutationAndReproducible) {
  const int64_t L = 64, B = 8;
  auto order_of = [&](uint64_t seed) {
    auto cfg = config({{a, 1.0}}, L, B);
    cfg.seed = seed;
    DataLoader loader(cfg);
    const int64_t n = loader.datasets()[0].train_sequences;
    std::vector<std::vector<int64_t>> epochs(3);
    for (int64_t drawn = 0; drawn < 3 * n;) {
      const Batch batch = loader.next();
      for (int64_t r = 0; r < batch.rows && drawn < 3 * n; ++r, ++drawn) {
        EXPECT_EQ(batch.epoch[r], drawn / n);
        epochs[static_cast<size_t>(drawn / n)].push_back(batch.sequence[r]);
      }
    }
    return epochs;
  };
  const auto epochs = order_of(1234);
  const size_t n = epochs[0].size();
  for (const auto& e : epochs) {
    std::vector<int64_t> sorted = e;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all) << "an epoch visits every sequence exactly once";
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  EXPECT_NE(epochs[0], epochs[2]);
  EXPECT_EQ(order_of(1234), epochs);
  EXPECT_NE(order_of(1235)[0], epochs[0]);
}

TEST_F(Loader, BlendProportionsAreExactInEveryBatch) {
  DataLoader loader(config({{a, 0.5}, {b, 0.3}, {c, 0.2}}, 32, 10));
  std::vector<std::vector<std::pair<int64_t, int64_t>>> draws(3);  // (epoch, sequence) per dataset
  const Reference* refs[] = {a, b, c};
  for (const Batch& batch : take(loader, 200)) {
    std::vector<int> count(3, 0);
    for (int64_t r = 0; r < batch.rows; ++r) {
      const auto d = static_cast<size_t>(batch.dataset[r]);
      ++count[d];
      expect_row_matches(batch, r, *refs[d]);
      draws[d].emplace_back(batch.epoch[r], batch.sequence[r]);
    }
    ASSERT_EQ(count, (std::vector<int>{5, 3, 2})) << "batch " << batch.index;
  }
  // Meanwhile the small dataset C went through several epochs, each a full permutation.
  const auto n = static_cast<size_t>(loader.datasets()[2].train_sequences);
  ASSERT_GE(draws[2].size(), 4 * n);
  for (size_t e = 0; e < 4; ++e) {
    std::vector<int64_t> seqs;
    for (size_t k = e * n; k < (e + 1) * n; ++k) {
      EXPECT_EQ(draws[2][k].first, static_cast<int64_t>(e));
      seqs.push_back(draws[2][k].second);
    }
    std::sort(seqs.begin(), seqs.end());
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(seqs[i], static_cast<int64_t>(i)) << "epoch " << e;
  }
}

TEST_F(Loader, ResumeFromStateContinuesExactly) {
  const auto cfg = config({{a, 0.5}, {b, 0.3}, {c, 0.2}}, 32, 6, /*prefetch=*/3);
  DataLoader reference(cfg);
  const auto all = take(reference, 20);

  DataLoader first(cfg);
  const auto head = take(first, 7);
  const std::vector<uint8_t> state = first.state();  // after 7 batches, whatever was prefetched

  auto cfg_fresh = cfg;
  cfg_fresh.prefetch = 0;
  DataLoader resumed(cfg_fresh);
  take(resumed, 2);  // a loader somewhere else in the stream
  resumed.restore(state);
  const auto tail = take(resumed, 13);
  expect_same(head, std::vector<Batch>(all.begin(), all.begin() + 7));
  expect_same(tail, std::vector<Batch>(all.begin() + 7, all.end()));
  EXPECT_EQ(resumed.state(), reference.state());
}

// A version-1 state (checkpoints written before the state recorded data.packing) still resumes:
// made here from a version-2 one by dropping the packing field (bytes 40..43, after the magic,
// version, dataset count, seed, seq_len and global batch) and re-signing it.
TEST_F(Loader, Version1StateStillResumes) {
  const auto cfg = config({{a, 0.5}, {b, 0.5}}, 32, 6);
  DataLoader reference(cfg);
  const auto all = take(reference, 6);
  DataLoader first(cfg);
  take(first, 2);
  const std::vector<uint8_t> v2 = first.state();
  ASSERT_EQ(v2[8], 2);  // the version, little-endian
  std::vector<uint8_t> v1(v2.begin(), v2.begin() + 40);
  v1[8] = 1;
  v1.insert(v1.end(), v2.begin() + 44, v2.end() - 32);
  Sha256 h;
  h.update(v1);
  const auto digest = h.digest();
  v1.insert(v1.end(), digest.begin(), digest.end());
  DataLoader resumed(cfg);
  resumed.restore(v1);
  expect_same(take(resumed, 4), std::vector<Batch>(all.begin() + 2, all.end()));
}

TEST_F(Loader, GlobalBatchesDoNotDependOnTheDpSize) {
  const auto cfg = config({{a, 0.5}, {b, 0.3}, {c, 0.2}}, 32, 12, 2);
  DataLoader single(cfg);
  const auto reference = take(single, 15);
  for (int64_t dp : {2, 3, 4, 6}) {
    std::vector<std::unique_ptr<DataLoader>> ranks;
    for (int64_t r = 0; r < dp; ++r) {
      auto c2 = cfg;
      c2.dp_size = dp;
      c2.dp_rank = r;
      ranks.push_back(std::make_unique<DataLoader>(c2));
    }
    for (const Batch& global : reference) {
      std::vector<Batch> slices;
      for (auto& rank : ranks) slices.push_back(rank->next());
      EXPECT_EQ(slices[0].rows, 12 / dp);
      expect_same({concatenate(slices)}, {global});
    }
  }
}

TEST_F(Loader, RestoringUnderAnotherDpSizeContinuesTheGlobalSequence) {
  const auto cfg = config({{a, 0.5}, {b, 0.3}, {c, 0.2}}, 32, 12, 2);
  DataLoader single(cfg);
  const auto reference = take(single, 16);

  // Two ranks train 6 steps and save (every rank holds the same state).
  std::vector<uint8_t> saved;
  for (int64_t r = 0; r < 2; ++r) {
    auto c2 = cfg;
    c2.dp_size = 2;
    c2.dp_rank = r;
    DataLoader rank(c2);
    take(rank, 6);
    if (r == 0) saved = rank.state();
    EXPECT_EQ(rank.state(), saved) << "ranks agree on the state";
  }
  // Four ranks resume from it.
  std::vector<std::unique_ptr<DataLoader>> ranks;
  for (int64_t r = 0; r < 4; ++r) {
    auto c4 = cfg;
    c4.dp_size = 4;
    c4.dp_rank = r;
    ranks.push_back(std::make_unique<DataLoader>(c4));
    ranks.back()->restore(saved);
  }
  for (size_t step = 6; step < reference.size(); ++step) {
    std::vector<Batch> slices;
    for (auto& rank : ranks) slices.push_back(rank->next());
    expect_same({concatenate(slices)}, {reference[step]});
  }
}

TEST_F(Loader, PrefetchChangesNothingButTiming) {
  DataLoader sync(config({{a, 2}, {b, 1}}, 40, 5, 0));
  DataLoader prefetched(config({{a, 2}, {b, 1}}, 40, 5, 6));
  expect_same(take(sync, 30), take(prefetched, 30));
  EXPECT_EQ(prefetched.stats().batches, 30);
  EXPECT_EQ(sync.state(), prefetched.state());
}

TEST_F(Loader, ValidationSplitIsHeldOut) {
  auto cfg = config({{a, 1.0}, {b, 1.0}}, 64, 4);
  cfg.datasets[0].validation_sequences = 10;
  cfg.datasets[1].validation_fraction = 0.1;
  DataLoader loader(cfg);
  const auto& ia = loader.datasets()[0];
  const auto& ib = loader.datasets()[1];
  EXPECT_EQ(ia.validation_sequences, 10);
  EXPECT_EQ(ia.train_sequences, ia.sequences - 10);
  EXPECT_EQ(ib.validation_sequences, static_cast<int64_t>(0.1 * ib.sequences));
  // Training (three epochs of A) never touches a validation sequence.
  for (const Batch& batch : take(loader, static_cast<int>(3 * ia.train_sequences / 2)))
    for (int64_t r = 0; r < batch.rows; ++r) {
      const auto& info = loader.datasets()[static_cast<size_t>(batch.dataset[r])];
      ASSERT_LT(batch.sequence[r], info.train_sequences);
    }
  // Validation: the last 10 sequences of A, in order, in batches of 4 (4, 4, 2).
  ASSERT_EQ(loader.validation_batches(0), 3);
  std::vector<int64_t> seen;
  for (int64_t i = 0; i < 3; ++i) {
    const Batch v = loader.validation_batch(0, i);
    EXPECT_EQ(v.rows, i < 2 ? 4 : 2);
    for (int64_t r = 0; r < v.rows; ++r) {
      expect_row_matches(v, r, *a);
      seen.push_back(v.sequence[r]);
    }
  }
  std::vector<int64_t> expected(10);
  std::iota(expected.begin(), expected.end(), ia.train_sequences);
  EXPECT_EQ(seen, expected);
  // Split over 2 ranks, the validation rows concatenate to the same batches.
  for (int64_t i = 0; i < 3; ++i) {
    std::vector<Batch> slices;
    for (int64_t r = 0; r < 2; ++r) {
      auto c2 = cfg;
      c2.dp_size = 2;
      c2.dp_rank = r;
      slices.push_back(DataLoader(c2).validation_batch(0, i));
    }
    expect_same({concatenate(slices)}, {loader.validation_batch(0, i)});
  }
  expect_error([&] { loader.validation_batch(0, 3); }, {"3 validation batches"});
}

// data.packing: false: row q is document q alone, padded with pad_id (loss mask 0 there) or
// cut to seq_len + 1 tokens; the documents come from the reference's own starts.
TEST_F(Loader, UnpackedRowsHoldOneDocumentEach) {
  auto cfg = config({{a, 1.0}}, 40, 4);
  cfg.packing = false;
  cfg.pad_id = 256;
  DataLoader loader(cfg);
  const std::vector<int64_t> starts(a->doc_starts.begin(), a->doc_starts.end());
  auto document = [&](int64_t q) {
    const int64_t end = q + 1 < static_cast<int64_t>(starts.size()) ? starts[q + 1] : static_cast<int64_t>(a->stream.size());
    return std::vector<int32_t>(a->stream.begin() + starts[q], a->stream.begin() + end);
  };
  uint64_t longer = 0;
  for (int64_t q = 0; q < static_cast<int64_t>(starts.size()); ++q) longer += document(q).size() > 41 ? 1 : 0;
  const auto& info = loader.datasets().at(0);
  EXPECT_EQ(info.sequences, static_cast<int64_t>(starts.size()));
  EXPECT_EQ(info.truncated_documents, longer);
  EXPECT_GT(longer, 0u);   // the case is exercised: some documents are cut...
  EXPECT_LT(longer, 400u);  // ...and some padded
  int64_t padded_rows = 0;
  for (const Batch& batch : take(loader, 60)) {
    for (int64_t r = 0; r < batch.rows; ++r) {
      const std::vector<int32_t> doc = document(batch.sequence[r]);
      const size_t n = std::min<size_t>(doc.size(), 41);
      std::vector<int32_t> expected(doc.begin(), doc.begin() + static_cast<int64_t>(n));
      expected.resize(41, 256);
      std::vector<uint8_t> mask(n, 1);
      mask.resize(41, 0);
      padded_rows += n < 41 ? 1 : 0;
      ASSERT_EQ(std::vector<int32_t>(batch.tokens.begin() + r * 41, batch.tokens.begin() + (r + 1) * 41), expected);
      ASSERT_EQ(std::vector<uint8_t>(batch.loss_mask.begin() + r * 41, batch.loss_mask.begin() + (r + 1) * 41), mask);
      ASSERT_EQ(batch.doc_start_offsets[r + 1] - batch.doc_start_offsets[r], 1);
      ASSERT_EQ(batch.doc_starts[static_cast<size_t>(batch.doc_start_offsets[r])], 0);
    }
  }
  EXPECT_GT(padded_rows, 0);
}

// An evaluation-only dataset is never drawn for training (the blend is that of the others
// alone, batch for batch) and is a validation set whole; the loader state round-trips.
TEST_F(Loader, EvalOnlyDatasetIsNeverTrainedOn) {
  auto cfg = config({{a, 1.0}, {c, 0.0}}, 32, 4);
  cfg.datasets[1].eval_only = true;
  DataLoader loader(cfg);
  DataLoader alone(config({{a, 1.0}}, 32, 4));
  const auto& ic = loader.datasets()[1];
  EXPECT_TRUE(ic.eval_only);
  EXPECT_EQ(ic.weight_units, 0u);
  EXPECT_EQ(ic.validation_sequences, ic.sequences);
  const auto got = take(loader, 20), want = take(alone, 20);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].tokens, want[i].tokens) << "batch " << i;
    for (int32_t d : got[i].dataset) ASSERT_EQ(d, 0);
  }
  ASSERT_EQ(loader.validation_batches(1), (ic.sequences + 3) / 4);
  std::vector<int64_t> seen;
  for (int64_t i = 0; i < loader.validation_batches(1); ++i) {
    const Batch v = loader.validation_batch(1, i);
    for (int64_t r = 0; r < v.rows; ++r) {
      expect_row_matches(v, r, *c);
      seen.push_back(v.sequence[r]);
    }
  }
  std::vector<int64_t> all(static_cast<size_t>(ic.sequences));
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(seen, all);
  // With a split given, only that part is evaluated.
  auto part = cfg;
  part.datasets[1].validation_sequences = 3;
  EXPECT_EQ(DataLoader(part).datasets()[1].validation_sequences, 3);
  // Resume: the state names the evaluation-only dataset (0 weight units) and continues exactly.
  DataLoader resumed(cfg);
  resumed.restore(loader.state());
  expect_same(take(resumed, 3), take(loader, 3));
  auto trained = cfg;
  trained.datasets[1].eval_only = false;
  trained.datasets[1].weight = 1.0;
  DataLoader other(trained);
  expect_error([&] { other.restore(loader.state()); }, {"blend weight units 0", "evaluation-only in one of them"});
  // Nothing left to train on.
  auto none = cfg;
  none.datasets[0].eval_only = true;
  expect_error([&] { DataLoader l(none); }, {"every dataset is evaluation-only"});
}

TEST_F(Loader, RestoreRefusesAnotherConfiguration) {
  const auto cfg = config({{a, 0.5}, {b, 0.5}}, 32, 6);
  DataLoader source(cfg);
  take(source, 3);
  const auto state = source.state();
  auto expect_refused = [&](LoaderConfig other, std::initializer_list<std::string> parts) {
    DataLoader loader(other);
    expect_error([&] { loader.restore(state); }, parts);
  };
  auto c1 = cfg;
  c1.seed = 99;
  expect_refused(c1, {"saved with seed 1234, this run has 99"});
  c1 = cfg;
  c1.seq_len = 16;
  expect_refused(c1, {"saved with seq_len 32, this run has 16"});
  c1 = cfg;
  c1.global_batch = 12;
  expect_refused(c1, {"saved with global batch 6, this run has 12"});
  c1 = cfg;
  c1.packing = false;
  expect_refused(c1, {"saved with data.packing true, this run has false"});
  c1 = cfg;
  c1.datasets[1].weight = 0.25;
  expect_refused(c1, {"blend weight units 1, this run's are 2 (weights changed)"});
  c1 = cfg;
  std::swap(c1.datasets[0], c1.datasets[1]);
  expect_refused(c1, {"dataset 0 ('" + b->dir + "') is not the data the state was saved with"});
  c1 = cfg;
  c1.datasets.push_back(LoaderDataset{c->dir, 1.0, 0, 0});
  expect_refused(c1, {"saved with 2 datasets, this run has 3"});
  c1 = cfg;
  c1.datasets[0].validation_sequences = 5;
  expect_refused(c1, {"dataset 0", "train / 0 validation sequences, this run splits"});

  DataLoader same(cfg);
  auto corrupt = state;
  corrupt[20] ^= 1;
  expect_error([&] { same.restore(corrupt); }, {"checksum mismatch"});
  expect_error([&] { same.restore(std::vector<uint8_t>(state.begin(), state.begin() + 30)); }, {"loader state"});
  expect_error([&] { same.restore(std::vector<uint8_t>(100, 7)); }, {"not a loader state"});
  // A refused restore leaves the loader where it was.
  auto fresh = take(same, 1);
  DataLoader ref(cfg);
  expect_same(fresh, take(ref, 1));
}

TEST_F(Loader, ConfigurationErrors) {
  auto cfg = config({{a, 1.0}}, 32, 6);
  auto c1 = cfg;
  c1.dp_size = 4;
  expect_error([&] { DataLoader l(c1); }, {"global batch 6 does not split over 4 data-parallel ranks"});
  c1 = cfg;
  c1.dp_size = 2;
  c1.dp_rank = 2;
  expect_error([&] { DataLoader l(c1); }, {"data-parallel rank 2 of 2"});
  c1 = cfg;
  c1.tokenizer_sha256 = std::string(64, 'f');
  expect_error([&] { DataLoader l(c1); }, {a->dir, "tokenizer sha256 " + std::string(64, 'b'), "this run's tokenizer is"});
  c1 = config({{a, 1.0}, {w, 1.0}}, 32, 6);
  expect_error([&] { DataLoader l(c1); }, {w->dir, "blended datasets need one tokenizer"});
  c1 = cfg;
  c1.vocab_size = 100;
  expect_error([&] { DataLoader l(c1); }, {"vocabulary size 257, larger than the model's 100"});
  c1 = cfg;
  c1.seq_len = 100000;
  expect_error([&] { DataLoader l(c1); }, {a->dir, "none is left to train on"});
  c1 = cfg;
  c1.datasets[0].validation_fraction = 0.5;
  c1.datasets[0].validation_sequences = 3;
  expect_error([&] { DataLoader l(c1); }, {"not both"});
  c1 = cfg;
  c1.datasets[0].path = tmp->path() + "/nope";
  expect_error([&] { DataLoader l(c1); }, {"nope", "no manifest.pb"});
  c1 = cfg;
  c1.datasets[0].weight = 0;
  expect_error([&] { DataLoader l(c1); }, {"weights must be positive"});
}

}  // namespace
}  // namespace exatrain
