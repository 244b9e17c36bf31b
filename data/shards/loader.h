// The streaming loader: packed token sequences from memory-mapped shards, blended across
// datasets, shuffled per epoch, sliced per data-parallel rank, resumable from a few bytes.
//
// Determinism contract (docs/data.md): the sequence of GLOBAL batches depends only on the
// seed, the datasets (their data and order), their weights and validation splits, seq_len and
// the global batch size; never on the number of data-parallel ranks, on threads or on timing.
//
//   packing   dataset d's tokens, concatenated in manifest order, are cut into
//             S_d = (tokens - 1) / seq_len sequences; sequence q is tokens
//             [q * seq_len, q * seq_len + seq_len + 1): inputs and their shifted targets, so
//             each token is a target exactly once. Document starts are kept per row.
//             Without packing, S_d = documents and sequence q is document q, padded.
//   split     the last V_d sequences of each dataset are its validation set; the first
//             N_d = S_d - V_d are for training. An evaluation-only dataset has N_d = 0 and
//             takes no part in the blend.
//   blend     global sample s comes from the dataset given by BlendSchedule; it is that
//             dataset's k-th draw, k = its draws so far.
//   shuffle   draw k of dataset d is training sequence P_{d,e}(k mod N_d), epoch e = k / N_d,
//             P a permutation keyed by (seed, d, e): every epoch sees every sequence once,
//             each epoch in a different order.
//   batch     global batch b is samples [b * B, (b + 1) * B); rank r of dp reads only rows
//             [r * B / dp, (r + 1) * B / dp).
//
// A prefetch thread keeps `prefetch` batches ready; next() only waits if it falls behind.
//
// Integrity (verify_checksums, on by default). Every id read is checked against the vocabulary
// as the batch is assembled: an id outside it is an Error naming the shard and the token's
// position, before the batch is handed out. And every shard is hashed (sha256) against its
// manifest by one background thread (ShardVerifier), from the moment the datasets are opened,
// the shards the next batches read first. Batches never wait for the hashing, so the first
// steps are not delayed; instead:
//   - next() and validation_batch() hand out nothing once a mismatch has been found: the
//     Error names the shard file;
//   - wait_verified() blocks until every shard is hashed (the trainer calls it before its last
//     step, so a run never finishes on unchecked data).
// So a corrupt shard can reach the optimizer only in the steps taken while it is still being
// hashed, the first seconds of a run (docs/performance.md has the rate).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace exatrain {

struct LoaderDataset {
  std::string path;                  // a prepared dataset directory
  double weight = 1.0;               // relative share of the training samples
  int64_t validation_sequences = 0;  // the last N sequences are held out, or
  double validation_fraction = 0;    // this fraction of them (at least 1 when > 0)
  // Evaluation only: never drawn for training (its weight is ignored); its validation set is all
  // its sequences, or the validation_sequences / validation_fraction given.
  bool eval_only = false;
};

struct LoaderConfig {
  std::vector<LoaderDataset> datasets;
  int64_t seq_len = 0;       // tokens per row are seq_len + 1
  int64_t global_batch = 0;  // rows per step over all DP ranks
  uint64_t seed = 0;
  int64_t dp_rank = 0;
  int64_t dp_size = 1;
  int64_t prefetch = 4;               // batches prepared ahead by a thread; 0: none
  std::string tokenizer_sha256;       // if set, every dataset must have been made with it
  int64_t vocab_size = 0;             // if set, datasets with a larger vocabulary are rejected
  bool verify_checksums = true;       // hash every shard in the background (above)
  // false: row q of a dataset is its document q alone, padded with pad_id to seq_len + 1 tokens
  // (loss mask 0 on the padding); a longer document keeps its first seq_len + 1 tokens (counted
  // in LoaderDatasetInfo::truncated_documents).
  bool packing = true;
  int32_t pad_id = 0;
};

// One rank's slice of one global batch.
struct Batch {
  int64_t index = 0;    // global batch number in the training stream (validation: in the split)
  int64_t rows = 0;     // this rank's rows
  int64_t seq_len = 0;  // each row holds seq_len + 1 tokens
  std::vector<int32_t> tokens;             // [rows, seq_len + 1]
  std::vector<uint8_t> loss_mask;  // [rows, seq_len + 1]: 1 where token t counts as a training target (position t predicted from t - 1); all 1 for datasets without a mask
  std::vector<int32_t> doc_starts;         // per row, positions in [0, seq_len] where a document starts
  std::vector<int64_t> doc_start_offsets;  // [rows + 1]: row r's are doc_starts[offsets[r], offsets[r + 1])
  std::vector<int32_t> dataset;            // [rows] index into LoaderConfig::datasets
  std::vector<int64_t> sequence;           // [rows] sequence number within that dataset
  std::vector<int64_t> epoch;              // [rows] that dataset's epoch (0 for validation)
};

struct LoaderDatasetInfo {
  std::string path;
  std::string name;
  uint64_t tokens = 0;
  int64_t sequences = 0;             // S_d
  int64_t train_sequences = 0;       // N_d
  int64_t validation_sequences = 0;  // V_d
  uint64_t weight_units = 0;        // the blend weight as BlendSchedule runs it (0: evaluation only)
  bool eval_only = false;
  bool has_loss_mask = false;        // else Batch::loss_mask is all 1 on its rows
  uint64_t truncated_documents = 0;  // packing off: documents longer than a row (cut to seq_len + 1 tokens)
};

struct LoaderStats {
  int64_t batches = 0;
  double wait_seconds = 0;  // time next() spent waiting for the prefetch thread
};

class DataLoader {
 public:
  explicit DataLoader(const LoaderConfig& config);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // This rank's slice of the next global training batch.
  Batch next();

  // Where next() continues (the batches returned so far, not those prefetched), as bytes with
  // a magic, a version, a fingerprint of the config and a checksum.
  std::vector<uint8_t> state() const;
  // Continues from a state() of a loader with the same data, weights, splits, seed, seq_len,
  // global batch and packing; the DP size may differ. Errors say what differs.
  void restore(std::span<const uint8_t> state);

  const std::vector<LoaderDatasetInfo>& datasets() const;
  // Validation: batch i of dataset d is its validation sequences [i * B, (i + 1) * B) in order
  // (the last batch may be short); this rank gets its share of the rows. No prefetch.
  int64_t validation_batches(size_t dataset) const;
  Batch validation_batch(size_t dataset, int64_t index) const;

  LoaderStats stats() const;

  // Blocks until the background hashing has checked every shard; an Error names a shard that
  // does not match its manifest. Returns at once when verify_checksums is off.
  void wait_verified() const;
  struct Verification {
    size_t shards = 0, checked = 0;  // checked: hashed and matching so far
    uint64_t bytes = 0;              // hashed so far
    double seconds = 0;              // from opening the datasets to the last shard hashed
  };
  Verification verification() const;  // all zero when verify_checksums is off

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace exatrain
