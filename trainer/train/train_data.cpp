#include "trainer/train/train_data.h"

#include <ATen/ATen.h>

#include <chrono>

#include "data/shards/loader.h"
#include "data/tokenizer/tokenizer.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"
#include "trainer/parallel/topology.h"
#include "trainer/train/data_source.h"

namespace exatrain {

struct TrainData::Impl {
  const RunConfig& config;
  int64_t rows = 0;  // this DP rank's rows per global batch
  int64_t dp_rank = 0;
  std::unique_ptr<DataLoader> loader;     // data.datasets
  std::unique_ptr<TokenFileSource> file;  // data.path
  double wait = 0;
  bool verified_logged = false;
};

namespace {

// A loader batch as tensors; targets' mask drops position 0 (nothing predicts it). With
// `document_mask`, each row's document ids come from its document starts, and a target that
// begins a document is not counted (nothing of its document precedes it: transformers running
// each document alone has no such prediction).
RankBatch to_tensors(const Batch& b, bool document_mask) {
  RankBatch out;
  const int64_t width = b.seq_len + 1;
  out.tokens = at::empty({b.rows, width}, at::kLong);
  auto* dst = out.tokens.data_ptr<int64_t>();
  for (size_t i = 0; i < b.tokens.size(); ++i) dst[i] = b.tokens[i];
  EXATRAIN_CHECK(b.loss_mask.size() == b.tokens.size(), "internal: loader batch has {} mask entries for {} tokens",
                 b.loss_mask.size(), b.tokens.size());
  at::Tensor mask = at::empty({b.rows, width}, at::kFloat);
  auto* m = mask.data_ptr<float>();
  for (size_t i = 0; i < b.loss_mask.size(); ++i) m[i] = b.loss_mask[i] ? 1.0f : 0.0f;
  if (document_mask) {
    out.segments = at::empty({b.rows, b.seq_len}, at::kInt);
    auto* seg = out.segments.data_ptr<int32_t>();
    for (int64_t r = 0; r < b.rows; ++r) {
      int32_t id = 0;
      int64_t next = b.doc_start_offsets[static_cast<size_t>(r)];
      const int64_t end = b.doc_start_offsets[static_cast<size_t>(r) + 1];
      for (int64_t t = 0; t < width; ++t) {
        const bool starts = next < end && b.doc_starts[static_cast<size_t>(next)] == t;
        if (starts) ++next;
        if (starts && t > 0) {
          ++id;
          m[r * width + t] = 0.0f;  // target t begins a document
        }
        if (t < b.seq_len) seg[r * b.seq_len + t] = id;
      }
    }
  }
  out.mask = mask.narrow(1, 1, b.seq_len).contiguous();
  return out;
}

}  // namespace

TrainData::TrainData(const RunConfig& config, const Topology& topo) : impl_(new Impl{config}) {
  const auto& t = config.train;
  impl_->rows = t.global_batch / topo.dp;
  impl_->dp_rank = topo.dp_rank;
  if (!config.data.tokenizer.empty()) {
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::from_file(config.data.tokenizer));
    if (tokenizer_->vocab_size() > static_cast<uint64_t>(config.model.vocab_size))
      config_error2(config.locations, "model.vocab_size", "data.tokenizer",
                    fmt::format("{} is smaller than the tokenizer's {} ids ('{}'); raise model.vocab_size",
                                config.model.vocab_size, tokenizer_->vocab_size(), config.data.tokenizer));
  }
  if (!config.data.datasets.empty()) {
    LoaderConfig lc;
    for (const auto& d : config.data.datasets)
      lc.datasets.push_back(
          LoaderDataset{d.path, d.weight, d.validation_sequences, d.validation_fraction, d.evaluation_only()});
    lc.seq_len = t.seq_len;
    lc.global_batch = t.global_batch;
    lc.seed = static_cast<uint64_t>(t.seed);
    lc.dp_rank = topo.dp_rank;
    lc.dp_size = topo.dp;
    lc.prefetch = config.data.prefetch;
    lc.packing = config.data.packing;
    lc.pad_id = static_cast<int32_t>(config.model.pad_token_id);
    lc.tokenizer_sha256 = tokenizer_ ? tokenizer_->content_sha256() : "";
    lc.vocab_size = config.model.vocab_size;
    impl_->loader = std::make_unique<DataLoader>(lc);
    const auto& infos = impl_->loader->datasets();
    for (size_t d = 0; d < infos.size(); ++d) {
      int64_t batches = impl_->loader->validation_batches(d);
      if (batches == 0) continue;
      if (t.eval_batches > 0) batches = std::min(batches, t.eval_batches);
      validation_.push_back(ValidationSet{d, infos[d].name, batches});
    }
    if (t.eval_every > 0 && validation_.empty())
      config_error(config.locations, "train.eval_every",
                   "no dataset has a validation split; set validation_sequences or validation_fraction on one of "
                   "data.datasets");
  } else if (!config.data.path.empty()) {
    impl_->file = std::make_unique<TokenFileSource>(config.data.path, config.data.format, config.model.vocab_size,
                                                    t.seq_len + 1);
  } else {
    fail("no training data: list prepared datasets (exatrain data prepare) under data.datasets, or set data.path to "
         "a text or token file");
  }
}

TrainData::~TrainData() = default;

void TrainData::wait_verified() const {
  if (impl_->loader) impl_->loader->wait_verified();
}

RankBatch TrainData::next(int64_t step) {
  const auto start = std::chrono::steady_clock::now();
  RankBatch out;
  if (impl_->loader) {
    // The shards' checksums are checked in the background (loader.h): next() fails on a mismatch
    // found so far, and the last step waits for all of them, so that no run finishes on unchecked data.
    if (step + 1 == impl_->config.train.steps) impl_->loader->wait_verified();
    const Batch b = impl_->loader->next();
    const DataLoader::Verification v = impl_->loader->verification();
    if (!impl_->verified_logged && v.shards > 0 && v.checked == v.shards) {
      impl_->verified_logged = true;
      log_info("data: all {} shards ({:.1f} MB) match the sha256 of their manifests (checked in the background in "
               "{:.2f} s)", v.shards, static_cast<double>(v.bytes) / 1e6, v.seconds);
    }
    EXATRAIN_CHECK(b.index == step, "internal: loader returned batch {} for step {}", b.index, step);
    out = to_tensors(b, impl_->config.data.document_mask);
  } else {
    // The global batch depends only on (seed, step); this DP rank takes its rows.
    const auto& t = impl_->config.train;
    at::Tensor global = impl_->file->batch(static_cast<uint64_t>(t.seed), static_cast<uint64_t>(step), t.global_batch);
    out.tokens = global.narrow(0, impl_->dp_rank * impl_->rows, impl_->rows);
  }
  impl_->wait += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

RankBatch TrainData::validation_batch(const ValidationSet& set, int64_t index) const {
  return to_tensors(impl_->loader->validation_batch(set.dataset, index), impl_->config.data.document_mask);
}

std::vector<uint8_t> TrainData::state() const { return impl_->loader ? impl_->loader->state() : std::vector<uint8_t>{}; }

void TrainData::restore(const std::vector<uint8_t>& state) {
  if (!impl_->loader) return;
  if (state.empty()) fail("the checkpoint holds no loader position, but this run reads data.datasets");
  impl_->loader->restore(state);
}

double TrainData::take_wait_seconds() {
  const double w = impl_->wait;
  impl_->wait = 0;
  return w;
}

std::vector<int64_t> TrainData::encode_prompt(const std::string& text) const {
  if (tokenizer_) {
    std::vector<int64_t> ids;
    for (uint32_t id : tokenizer_->encode(text)) ids.push_back(id);
    return ids;
  }
  if (impl_->file && impl_->config.data.format == DataFormat::Text) return text_to_byte_ids(text);
  return {};
}

std::string TrainData::decode(const std::vector<int64_t>& ids) const {
  if (tokenizer_) {
    std::vector<uint32_t> u;
    for (int64_t id : ids)
      if (id >= 0) u.push_back(static_cast<uint32_t>(id));
    return tokenizer_->decode(u);
  }
  if (impl_->file && impl_->config.data.format == DataFormat::Text) return byte_ids_to_text(ids);
  std::string s;
  for (int64_t id : ids) {  // (not `s += sep + to_string`: g++ 12 warns -Wstringop-overflow on that)
    if (!s.empty()) s += ' ';
    s += std::to_string(id);
  }
  return s;
}

std::vector<std::string> TrainData::describe() const {
  std::vector<std::string> lines;
  if (tokenizer_)
    lines.push_back(fmt::format("tokenizer: {} ({} ids, sha256 {})", impl_->config.data.tokenizer,
                                tokenizer_->vocab_size(), tokenizer_->content_sha256()));
  if (impl_->file) {
    lines.push_back(fmt::format("data: {} ({} tokens)", impl_->config.data.path, impl_->file->size()));
    return lines;
  }
  const auto& infos = impl_->loader->datasets();
  const auto& data = impl_->config.data;
  if (data.document_mask || !data.packing)
    lines.push_back(fmt::format("data: {}{}", data.packing ? "documents packed into rows" : "one document per row, "
                                "padded (data.packing: false)", data.document_mask ? ", attention and RoPE positions "
                                "restart at each document (data.document_mask)" : ""));
  for (size_t i = 0; i < infos.size(); ++i) {
    const auto& d = infos[i];
    if (d.truncated_documents > 0)
      lines.push_back(fmt::format("dataset {}: {} of {} documents are longer than a row (train.seq_len + 1 = {} "
                                  "tokens) and are truncated to it (data.packing: false)", d.name, d.truncated_documents,
                                  d.sequences, impl_->config.train.seq_len + 1));
    if (d.eval_only)
      lines.push_back(fmt::format("dataset {}: {} tokens, {} sequences, evaluation only ({} validation){} ({})", d.name,
                                  d.tokens, d.sequences, d.validation_sequences, d.has_loss_mask ? ", loss mask" : "",
                                  d.path));
    else
      lines.push_back(fmt::format("dataset {}: {} tokens, {} sequences ({} training, {} validation), weight {}{} ({})",
                                  d.name, d.tokens, d.sequences, d.train_sequences, d.validation_sequences,
                                  impl_->config.data.datasets[i].weight, d.has_loss_mask ? ", loss mask" : "", d.path));
  }
  return lines;
}

}  // namespace exatrain
