#include "data/shards/loader.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <thread>

#include "data/shards/blend_schedule.h"
#include "data/shards/bounded_queue.h"
#include "data/shards/index_permutation.h"
#include "data/shards/shard_verifier.h"
#include "trainer/core/sha256.h"
#include "data/shards/token_dataset.h"
#include "trainer/core/error.h"

namespace exatrain {

namespace {

constexpr char kStateMagic[8] = {'E', 'X', 'A', 'L', 'O', 'A', 'D', 'R'};
// Version 2 adds data.packing after the global batch; version 1 states (without it) still load.
constexpr uint32_t kStateVersion = 2;

// Where the training stream stands: the next global batch and each dataset's draws so far.
struct Position {
  int64_t batch = 0;
  std::vector<uint64_t> drawn;
};

// The permutation key of dataset d's epoch e.
uint64_t shuffle_key(uint64_t seed, size_t dataset, uint64_t epoch) {
  return mix64(mix64(mix64(seed ^ 0x5eed5eed5eed5eedull) ^ (dataset + 1)) ^ (epoch + 1));
}

class StateWriter {
 public:
  void bytes(const void* p, size_t n) { out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); }
  void u32(uint32_t v) { bytes(&v, 4); }
  void u64(uint64_t v) { bytes(&v, 8); }
  std::vector<uint8_t> out;
};

class StateReader {
 public:
  explicit StateReader(std::span<const uint8_t> in) : in_(in) {}
  void bytes(void* p, size_t n) {
    if (in_.size() - pos_ < n)
      fail("loader state: truncated ({} bytes, needs more than {}); is it a loader state?", in_.size(), pos_ + n - 1);
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
  }
  uint32_t u32() {
    uint32_t v;
    bytes(&v, 4);
    return v;
  }
  uint64_t u64() {
    uint64_t v;
    bytes(&v, 8);
    return v;
  }
  std::string str(size_t n) {
    std::string s(n, '\0');
    bytes(s.data(), n);
    return s;
  }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

}  // namespace

struct DataLoader::Impl {
  LoaderConfig config;
  std::vector<std::unique_ptr<TokenDataset>> data;
  std::vector<LoaderDatasetInfo> info;
  std::unique_ptr<BlendSchedule> blend;  // over the training datasets only
  std::vector<size_t> blended;             // blend index -> dataset index
  std::vector<size_t> first_shard;          // dataset d's shards are the verifier's [first_shard[d], ...)
  std::unique_ptr<ShardVerifier> verifier;  // null when verify_checksums is off
  Position consumer;  // what state() reports
  LoaderStats stats;

  struct Prefetched {
    Batch batch;
    Position after;
    std::exception_ptr error;
  };
  std::unique_ptr<BoundedQueue<Prefetched>> queue;
  std::thread producer;

  explicit Impl(const LoaderConfig& c);
  void check_config() const;
  void fill_row(Batch& out, size_t dataset, int64_t sequence, int64_t epoch) const;
  Batch make_batch(Position& pos) const;
  void start_prefetch();
  void stop_prefetch();
  std::vector<uint8_t> encode_state(const Position& pos) const;
  Position decode_state(std::span<const uint8_t> bytes) const;
};

void DataLoader::Impl::check_config() const {
  const auto& c = config;
  if (c.datasets.empty()) fail("loader: no datasets");
  if (c.seq_len < 1 || c.seq_len >= (int64_t{1} << 30)) fail("loader: seq_len {} (must be 1 .. 2^30)", c.seq_len);
  if (c.global_batch < 1) fail("loader: global batch {} (must be at least 1)", c.global_batch);
  if (c.dp_size < 1 || c.dp_rank < 0 || c.dp_rank >= c.dp_size)
    fail("loader: data-parallel rank {} of {}", c.dp_rank, c.dp_size);
  if (c.global_batch % c.dp_size != 0)
    fail("loader: global batch {} does not split over {} data-parallel ranks", c.global_batch, c.dp_size);
  if (c.prefetch < 0) fail("loader: prefetch {} (must be 0 or more)", c.prefetch);
}

DataLoader::Impl::Impl(const LoaderConfig& c) : config(c) {
  check_config();
  std::vector<double> weights;
  for (size_t d = 0; d < c.datasets.size(); ++d) {
    const LoaderDataset& spec = c.datasets[d];
    data.push_back(std::make_unique<TokenDataset>(spec.path));
    const TokenDataset& ds = *data.back();
    const DatasetManifest& m = ds.manifest();
    if (!c.tokenizer_sha256.empty() && m.tokenizer_sha256 != c.tokenizer_sha256)
      fail("dataset '{}' was tokenized with tokenizer sha256 {}, but this run's tokenizer is {}", spec.path,
           m.tokenizer_sha256, c.tokenizer_sha256);
    if (d > 0 && m.tokenizer_sha256 != data[0]->manifest().tokenizer_sha256)
      fail("dataset '{}' was tokenized with tokenizer sha256 {}, dataset '{}' with {}: blended datasets need one "
           "tokenizer", spec.path, m.tokenizer_sha256, c.datasets[0].path, data[0]->manifest().tokenizer_sha256);
    if (c.vocab_size > 0 && m.vocab_size > static_cast<uint64_t>(c.vocab_size))
      fail("dataset '{}' has vocabulary size {}, larger than the model's {}", spec.path, m.vocab_size, c.vocab_size);
    if (spec.validation_sequences < 0) fail("dataset '{}': validation_sequences {} is negative", spec.path, spec.validation_sequences);
    if (spec.validation_fraction < 0 || spec.validation_fraction >= 1)
      fail("dataset '{}': validation_fraction {} (must be in [0, 1))", spec.path, spec.validation_fraction);
    if (spec.validation_sequences > 0 && spec.validation_fraction > 0)
      fail("dataset '{}': set validation_sequences or validation_fraction, not both", spec.path);

    LoaderDatasetInfo in;
    in.path = spec.path;
    in.name = m.name;
    in.tokens = ds.tokens();
    in.has_loss_mask = ds.has_loss_mask();
    in.sequences = ds.tokens() > static_cast<uint64_t>(c.seq_len) ? static_cast<int64_t>((ds.tokens() - 1) / c.seq_len) : 0;
    if (!c.packing) {
      in.sequences = static_cast<int64_t>(ds.documents());
      for (uint64_t i = 0; i < ds.documents(); ++i) {
        const auto [begin, end] = ds.document(i);
        if (end - begin > static_cast<uint64_t>(c.seq_len + 1)) ++in.truncated_documents;
      }
    }
    in.eval_only = spec.eval_only;
    in.validation_sequences = spec.validation_sequences;
    if (spec.validation_fraction > 0)
      in.validation_sequences = std::max<int64_t>(1, static_cast<int64_t>(spec.validation_fraction * in.sequences));
    if (spec.eval_only && spec.validation_sequences == 0 && spec.validation_fraction == 0)
      in.validation_sequences = in.sequences;
    if (spec.eval_only) {
      if (in.sequences < 1 || in.validation_sequences > in.sequences)
        fail("dataset '{}' (evaluation only): {} tokens make {} sequences of seq_len + 1 = {} tokens, {} asked for "
             "validation", spec.path, in.tokens, in.sequences, c.seq_len + 1, in.validation_sequences);
      in.train_sequences = in.sequences - in.validation_sequences;  // not trained on: the first N_d are skipped
    } else {
      in.train_sequences = in.sequences - in.validation_sequences;
      if (in.train_sequences < 1)
        fail("dataset '{}': {} tokens make {} sequences of seq_len + 1 = {} tokens; with {} held out for validation, "
             "none is left to train on", spec.path, in.tokens, in.sequences, c.seq_len + 1, in.validation_sequences);
      weights.push_back(spec.weight);
      blended.push_back(d);
    }
    info.push_back(in);
  }
  if (blended.empty()) fail("loader: every dataset is evaluation-only; at least one must be trained on");
  blend = std::make_unique<BlendSchedule>(weights);
  for (size_t i = 0; i < blended.size(); ++i) info[blended[i]].weight_units = blend->units()[i];
  consumer.drawn.assign(info.size(), 0);
  if (c.verify_checksums) {
    std::vector<ShardVerifier::Shard> shards;
    for (const auto& ds : data) {
      first_shard.push_back(shards.size());
      for (size_t s = 0; s < ds->shard_count(); ++s)
        shards.push_back(ShardVerifier::Shard{ds->shard(s).path(), ds->dir(), ds->shard(s).file_bytes(),
                                              ds->manifest().shards[s].sha256});
    }
    verifier = std::make_unique<ShardVerifier>(std::move(shards));
  }
}

void DataLoader::Impl::fill_row(Batch& out, size_t dataset, int64_t sequence, int64_t epoch) const {
  const int64_t L = config.seq_len;
  const size_t row = out.dataset.size();
  if (!config.packing) {  // one document, padded (or cut to the row)
    const auto [begin, end] = data[dataset]->document(static_cast<uint64_t>(sequence));
    const uint64_t n = std::min<uint64_t>(end - begin, static_cast<uint64_t>(L + 1));
    if (verifier) {
      const auto [first, last] = data[dataset]->shards_of(begin, n);
      for (size_t s = first; s <= last; ++s) verifier->prefer(first_shard[dataset] + s);
    }
    int32_t* tokens = out.tokens.data() + row * (L + 1);
    uint8_t* mask = out.loss_mask.data() + row * (L + 1);
    data[dataset]->read(begin, n, tokens);
    data[dataset]->read_loss_mask(begin, n, mask);
    std::fill(tokens + n, tokens + L + 1, config.pad_id);
    std::fill(mask + n, mask + L + 1, uint8_t{0});
    out.doc_starts.push_back(0);
    out.doc_start_offsets.push_back(static_cast<int64_t>(out.doc_starts.size()));
    out.dataset.push_back(static_cast<int32_t>(dataset));
    out.sequence.push_back(sequence);
    out.epoch.push_back(epoch);
    return;
  }
  if (verifier) {  // hash these shards next, if they are still waiting
    const auto [first, last] = data[dataset]->shards_of(static_cast<uint64_t>(sequence * L), static_cast<uint64_t>(L + 1));
    for (size_t s = first; s <= last; ++s) verifier->prefer(first_shard[dataset] + s);
  }
  data[dataset]->read(static_cast<uint64_t>(sequence * L), static_cast<uint64_t>(L + 1), out.tokens.data() + row * (L + 1));
  data[dataset]->read_loss_mask(static_cast<uint64_t>(sequence * L), static_cast<uint64_t>(L + 1),
                                out.loss_mask.data() + row * (L + 1));
  data[dataset]->document_starts(static_cast<uint64_t>(sequence * L), static_cast<uint64_t>(L + 1), out.doc_starts);
  out.doc_start_offsets.push_back(static_cast<int64_t>(out.doc_starts.size()));
  out.dataset.push_back(static_cast<int32_t>(dataset));
  out.sequence.push_back(sequence);
  out.epoch.push_back(epoch);
}

Batch DataLoader::Impl::make_batch(Position& pos) const {
  const int64_t B = config.global_batch, L = config.seq_len;
  const int64_t lo = config.dp_rank * B / config.dp_size, hi = (config.dp_rank + 1) * B / config.dp_size;
  Batch out;
  out.index = pos.batch;
  out.rows = hi - lo;
  out.seq_len = L;
  out.tokens.resize(static_cast<size_t>(out.rows * (L + 1)));
  out.loss_mask.resize(static_cast<size_t>(out.rows * (L + 1)));
  out.doc_start_offsets.push_back(0);
  // Every rank walks the whole global batch through the schedule (cheap), reads only its rows.
  std::vector<uint64_t> drawn;  // the training datasets' draws, in blend order
  for (size_t d : blended) drawn.push_back(pos.drawn[d]);
  for (int64_t i = 0; i < B; ++i) {
    const size_t d = blended[blend->next(drawn)];
    pos.drawn[d] += 1;
    if (i < lo || i >= hi) continue;
    const uint64_t k = pos.drawn[d] - 1;
    const auto n = static_cast<uint64_t>(info[d].train_sequences);
    const uint64_t epoch = k / n;
    const IndexPermutation shuffle(n, shuffle_key(config.seed, d, epoch));
    fill_row(out, d, static_cast<int64_t>(shuffle.at(k % n)), static_cast<int64_t>(epoch));
  }
  ++pos.batch;
  return out;
}

void DataLoader::Impl::start_prefetch() {
  if (config.prefetch <= 0) return;
  queue = std::make_unique<BoundedQueue<Prefetched>>(static_cast<size_t>(config.prefetch));
  producer = std::thread([this, pos = consumer]() mutable {
    for (;;) {
      Prefetched item;
      try {
        item.batch = make_batch(pos);
        item.after = pos;
      } catch (...) {
        item.error = std::current_exception();
        queue->push(std::move(item));
        queue->close();
        return;
      }
      if (!queue->push(std::move(item))) return;
    }
  });
}

void DataLoader::Impl::stop_prefetch() {
  if (queue) queue->close_and_clear();
  if (producer.joinable()) producer.join();
  queue.reset();
}

std::vector<uint8_t> DataLoader::Impl::encode_state(const Position& pos) const {
  StateWriter w;
  w.bytes(kStateMagic, 8);
  w.u32(kStateVersion);
  w.u32(static_cast<uint32_t>(info.size()));
  w.u64(config.seed);
  w.u64(static_cast<uint64_t>(config.seq_len));
  w.u64(static_cast<uint64_t>(config.global_batch));
  w.u32(config.packing ? 1 : 0);
  for (size_t d = 0; d < info.size(); ++d) {
    const std::string& id = data[d]->identity();
    w.bytes(id.data(), id.size());  // 64 hex characters
    w.u64(info[d].weight_units);  // 0 for an evaluation-only dataset
    w.u64(static_cast<uint64_t>(info[d].train_sequences));
    w.u64(static_cast<uint64_t>(info[d].validation_sequences));
  }
  w.u64(static_cast<uint64_t>(pos.batch));
  for (uint64_t n : pos.drawn) w.u64(n);
  const auto digest = [&] {
    exatrain::Sha256 h;
    h.update(w.out);
    return h.digest();
  }();
  w.bytes(digest.data(), digest.size());
  return w.out;
}

Position DataLoader::Impl::decode_state(std::span<const uint8_t> bytes) const {
  if (bytes.size() < 8 + 32 || std::memcmp(bytes.data(), kStateMagic, 8) != 0)
    fail("loader state: not a loader state ({} bytes, no \"EXALOADR\" magic)", bytes.size());
  {
    exatrain::Sha256 h;
    h.update(bytes.first(bytes.size() - 32));
    const auto digest = h.digest();
    if (std::memcmp(digest.data(), bytes.data() + bytes.size() - 32, 32) != 0)
      fail("loader state: checksum mismatch ({} bytes); the state is corrupt", bytes.size());
  }
  StateReader r(bytes.first(bytes.size() - 32));
  r.str(8);
  const uint32_t version = r.u32();
  if (version != 1 && version != kStateVersion)
    fail("loader state: version {}, this exatrain reads versions 1 and {}", version, kStateVersion);
  const uint32_t n = r.u32();
  if (n != info.size()) fail("loader state: saved with {} datasets, this run has {}", n, info.size());
  const uint64_t seed = r.u64(), seq_len = r.u64(), global_batch = r.u64();
  if (seed != config.seed) fail("loader state: saved with seed {}, this run has {}", seed, config.seed);
  if (seq_len != static_cast<uint64_t>(config.seq_len))
    fail("loader state: saved with seq_len {}, this run has {}", seq_len, config.seq_len);
  if (global_batch != static_cast<uint64_t>(config.global_batch))
    fail("loader state: saved with global batch {}, this run has {}", global_batch, config.global_batch);
  if (version >= 2) {
    const bool packing = r.u32() != 0;
    if (packing != config.packing)
      fail("loader state: saved with data.packing {}, this run has {} (rows would be cut differently; keep "
           "data.packing as it was to resume)", packing, config.packing);
  }
  for (size_t d = 0; d < n; ++d) {
    const std::string id = r.str(64);
    const uint64_t units = r.u64(), train = r.u64(), validation = r.u64();
    const std::string& path = config.datasets[d].path;
    if (id != data[d]->identity())
      fail("loader state: dataset {} ('{}') is not the data the state was saved with (its tokenizer or shard "
           "checksums differ)", d, path);
    if (units != info[d].weight_units)
      fail("loader state: dataset {} ('{}') had blend weight units {}, this run's are {} ({})", d, path, units,
           info[d].weight_units, units == 0 || info[d].weight_units == 0 ? "evaluation-only in one of them"
                                                                          : "weights changed");
    if (train != static_cast<uint64_t>(info[d].train_sequences) ||
        validation != static_cast<uint64_t>(info[d].validation_sequences))
      fail("loader state: dataset {} ('{}') was split {} train / {} validation sequences, this run splits {} / {}", d,
           path, train, validation, info[d].train_sequences, info[d].validation_sequences);
  }
  Position pos;
  pos.batch = static_cast<int64_t>(r.u64());
  uint64_t total = 0;
  for (size_t d = 0; d < n; ++d) {
    pos.drawn.push_back(r.u64());
    total += pos.drawn.back();
  }
  if (total != static_cast<uint64_t>(pos.batch) * static_cast<uint64_t>(config.global_batch))
    fail("loader state: {} samples drawn, but {} batches of {} make {}", total, pos.batch, config.global_batch,
         pos.batch * config.global_batch);
  return pos;
}

DataLoader::DataLoader(const LoaderConfig& config) : impl_(std::make_unique<Impl>(config)) { impl_->start_prefetch(); }

DataLoader::~DataLoader() { impl_->stop_prefetch(); }

Batch DataLoader::next() {
  Impl& s = *impl_;
  if (!s.queue) {
    Batch b = s.make_batch(s.consumer);
    if (s.verifier) s.verifier->check();
    ++s.stats.batches;
    return b;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto item = s.queue->pop();
  s.stats.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!item) fail("loader: the prefetch thread stopped after an error");
  if (item->error) std::rethrow_exception(item->error);
  if (s.verifier) s.verifier->check();  // a mismatch found since this batch was assembled
  s.consumer = std::move(item->after);
  ++s.stats.batches;
  return std::move(item->batch);
}

std::vector<uint8_t> DataLoader::state() const { return impl_->encode_state(impl_->consumer); }

void DataLoader::restore(std::span<const uint8_t> state) {
  Position pos = impl_->decode_state(state);  // checks everything before touching the loader
  impl_->stop_prefetch();
  impl_->consumer = std::move(pos);
  impl_->start_prefetch();
}

const std::vector<LoaderDatasetInfo>& DataLoader::datasets() const { return impl_->info; }

int64_t DataLoader::validation_batches(size_t dataset) const {
  if (dataset >= impl_->info.size()) fail("loader: no dataset {} (there are {})", dataset, impl_->info.size());
  const int64_t v = impl_->info[dataset].validation_sequences, B = impl_->config.global_batch;
  return (v + B - 1) / B;
}

Batch DataLoader::validation_batch(size_t dataset, int64_t index) const {
  const Impl& s = *impl_;
  if (index < 0 || index >= validation_batches(dataset))
    fail("loader: dataset {} has {} validation batches, asked for batch {}", dataset, validation_batches(dataset), index);
  const LoaderDatasetInfo& in = s.info[dataset];
  const int64_t B = s.config.global_batch, L = s.config.seq_len;
  const int64_t first = index * B;
  const int64_t n = std::min(B, in.validation_sequences - first);  // rows of this global batch
  const int64_t lo = s.config.dp_rank * n / s.config.dp_size, hi = (s.config.dp_rank + 1) * n / s.config.dp_size;
  Batch out;
  out.index = index;
  out.rows = hi - lo;
  out.seq_len = L;
  out.tokens.resize(static_cast<size_t>(out.rows * (L + 1)));
  out.loss_mask.resize(static_cast<size_t>(out.rows * (L + 1)));
  out.doc_start_offsets.push_back(0);
  for (int64_t i = lo; i < hi; ++i) s.fill_row(out, dataset, in.train_sequences + first + i, 0);
  if (s.verifier) s.verifier->check();
  return out;
}

LoaderStats DataLoader::stats() const { return impl_->stats; }

void DataLoader::wait_verified() const {
  if (impl_->verifier) impl_->verifier->wait();
}

DataLoader::Verification DataLoader::verification() const {
  if (!impl_->verifier) return {};
  const ShardVerifier::Progress p = impl_->verifier->progress();
  return Verification{impl_->verifier->shards(), p.shards, p.bytes, p.seconds};
}

}  // namespace exatrain
