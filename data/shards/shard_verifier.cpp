#include "data/shards/shard_verifier.h"

#include <algorithm>
#include <chrono>

#include "trainer/core/error.h"
#include "trainer/core/sha256.h"

namespace exatrain {

namespace {

// Hashed in pieces, so that the destructor never waits for a whole shard (256 MiB and more).
constexpr size_t kPieceBytes = size_t{8} << 20;

}  // namespace

ShardVerifier::ShardVerifier(std::vector<Shard> shards)
    : shards_(std::move(shards)), state_(shards_.size(), State::Waiting), thread_([this] { run(); }) {}

ShardVerifier::~ShardVerifier() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void ShardVerifier::prefer(size_t i) {
  std::lock_guard lock(mutex_);
  if (i < state_.size() && state_[i] == State::Waiting &&
      std::find(preferred_.begin(), preferred_.end(), i) == preferred_.end())
    preferred_.push_back(i);
}

void ShardVerifier::check() const {
  std::lock_guard lock(mutex_);
  if (!error_.empty()) throw Error(error_);
}

void ShardVerifier::wait() const {
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !error_.empty() || progress_.shards == shards_.size(); });
  }
  check();
}

ShardVerifier::Progress ShardVerifier::progress() const {
  std::lock_guard lock(mutex_);
  return progress_;
}

void ShardVerifier::run() {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    size_t i = shards_.size();
    {
      std::lock_guard lock(mutex_);
      if (stop_ || !error_.empty()) return;  // after a mismatch the run ends anyway
      while (!preferred_.empty() && i == shards_.size()) {
        if (state_[preferred_.front()] == State::Waiting) i = preferred_.front();
        preferred_.pop_front();
      }
      while (i == shards_.size() && next_ < shards_.size()) {
        if (state_[next_] == State::Waiting) i = next_;
        ++next_;
      }
      if (i == shards_.size()) return;  // all hashed
      state_[i] = State::Hashing;
    }
    const Shard& shard = shards_[i];
    Sha256 hash;
    for (size_t at = 0; at < shard.bytes.size(); at += kPieceBytes) {
      hash.update(shard.bytes.subspan(at, std::min(kPieceBytes, shard.bytes.size() - at)));
      std::lock_guard lock(mutex_);
      if (stop_) return;
    }
    const std::string got = hash.hex_digest();
    {
      std::lock_guard lock(mutex_);
      state_[i] = State::Done;
      ++progress_.shards;
      progress_.bytes += shard.bytes.size();
      progress_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (got != shard.sha256)
        error_ = fmt::format(
            "shard '{}': sha256 is {}, but the dataset's manifest says {}: the file changed after `exatrain data "
            "prepare` (edited, corrupted or swapped with another shard); check it with `exatrain data verify {}` "
            "and prepare the dataset again",
            shard.path, got, shard.sha256, shard.dataset_dir);
    }
    changed_.notify_all();
  }
}

}  // namespace exatrain
