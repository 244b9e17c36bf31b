// Checks shards against the sha256 their manifest records, on one background thread, while the
// loader already serves batches from them: a shard edited, corrupted or swapped after
// `exatrain data prepare` (one id changed to another valid id, EOS removed, loss-mask bits
// flipped) keeps its structure and reads fine; only its checksum tells. `exatrain data verify`
// checks the same, file by file, up front; the trainer cannot wait that long before its first
// step, so it hashes beside training. What the loader guarantees with it: loader.h.
// A dedicated thread rather than a task on trainer/core/thread_pool.h: the order of the work
// changes while it runs (prefer() moves a shard a batch is about to read to the front), which a
// queued pool task cannot do.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace exatrain {

class ShardVerifier {
 public:
  struct Shard {
    std::string path;                // for the message
    std::string dataset_dir;         // for the advice (`exatrain data verify DIR`)
    std::span<const uint8_t> bytes;  // the whole file, as mapped; must outlive the verifier
    std::string sha256;              // what the manifest says
  };

  // Starts hashing at once, shards in the order given unless prefer() says otherwise.
  explicit ShardVerifier(std::vector<Shard> shards);
  ~ShardVerifier();  // stops the thread; shards not yet hashed stay unchecked
  ShardVerifier(const ShardVerifier&) = delete;
  ShardVerifier& operator=(const ShardVerifier&) = delete;

  // Hashes shard i next, if it is still waiting (a batch is about to read it).
  void prefer(size_t i);
  // Throws an Error naming the first shard found not to match its manifest, if any so far.
  void check() const;
  // Waits until every shard is hashed, then check().
  void wait() const;

  size_t shards() const { return shards_.size(); }
  // Progress: shards and bytes hashed so far, and the seconds that took (for the log).
  struct Progress {
    size_t shards = 0;
    uint64_t bytes = 0;
    double seconds = 0;
  };
  Progress progress() const;

 private:
  enum class State { Waiting, Hashing, Done };
  void run();

  std::vector<Shard> shards_;
  std::vector<State> state_;
  std::deque<size_t> preferred_;  // asked for by prefer(), oldest first
  size_t next_ = 0;               // the next shard in the given order
  Progress progress_;
  std::string error_;  // the first mismatch
  bool stop_ = false;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace exatrain
