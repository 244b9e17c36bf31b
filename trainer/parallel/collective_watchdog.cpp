#include "trainer/parallel/collective_watchdog.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <fmt/format.h>

#include "trainer/core/progress.h"

namespace exatrain {

using Clock = std::chrono::steady_clock;

CollectiveWatchdog::CollectiveWatchdog(std::function<void(const std::string&)> on_failure)
    : on_failure_(std::move(on_failure)) {
  thread_ = std::thread([this] { run(); });
}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void CollectiveWatchdog::watch(Operation operation) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    watched_.push_back(Watched{std::move(operation), Clock::now()});
  }
  wake_.notify_all();
}

int CollectiveWatchdog::add_abort_hook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(mutex_);
  abort_hooks_[next_hook_] = std::move(hook);
  return next_hook_++;
}

void CollectiveWatchdog::remove_abort_hook(int id) {
  std::lock_guard<std::mutex> lock(mutex_);
  abort_hooks_.erase(id);
}

size_t CollectiveWatchdog::outstanding() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return watched_.size();
}

void CollectiveWatchdog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_ && !failed_) {
    // Idle until something is watched; then poll often enough to report within 2% of the
    // shortest timeout (at least every 0.5 s, at most every 2 ms).
    if (watched_.empty()) {
      wake_.wait(lock, [this] { return stop_ || !watched_.empty(); });
      continue;
    }
    double shortest = watched_.front().operation.timeout_s;
    for (const auto& w : watched_) shortest = std::min(shortest, w.operation.timeout_s);
    const auto period = std::chrono::duration<double>(std::clamp(shortest / 50, 0.002, 0.5));
    // Operations complete in the order they were queued on one stream, but streams differ
    // between groups: check all, drop the complete ones.
    std::string message;
    for (auto it = watched_.begin(); it != watched_.end();) {
      const Operation& op = it->operation;
      std::string error;
      if (op.poll(error)) {
        it = watched_.erase(it);
        continue;
      }
      const double waited = std::chrono::duration<double>(Clock::now() - it->start).count();
      if (!error.empty())
        message = fmt::format("exatrain: error: rank {}: {} {} on group '{}' (rank {} of {}) failed at step {}: {}; "
                              "aborting the job", op.world_rank, op.backend, op.op, op.group, op.group_rank,
                              op.group_size, op.step, error);
      else if (waited > op.timeout_s)
        message = fmt::format("exatrain: error: rank {}: {} {} on group '{}' (rank {} of {}) did not complete within "
                              "{:g} s at step {}; another rank has stopped or is stuck; aborting the job "
                              "(parallel.timeout_s)", op.world_rank, op.backend, op.op, op.group, op.group_rank,
                              op.group_size, op.timeout_s, op.step);
      if (!message.empty()) break;
      ++it;
    }
    // The host does not wait on these, but when it needs a result it blocks in a CUDA call; a
    // collective in flight is waiting for peers, not this rank being stuck, as in the MPI wait
    // loop (trainer/train/watchdog.h), so the stuck-rank report is left to the ranks that are.
    if (message.empty() && !watched_.empty()) note_progress();
    if (!message.empty()) {
      failed_ = true;
      std::vector<std::function<void()>> hooks;
      for (auto& [id, hook] : abort_hooks_) hooks.push_back(hook);
      lock.unlock();  // the hooks and the handler may take time; watch() must not block on them
      for (auto& hook : hooks) hook();
      fail(message);
      return;
    }
    wake_.wait_for(lock, period, [this] { return stop_; });
  }
}

void CollectiveWatchdog::fail(const std::string& message) {
  if (on_failure_) {
    on_failure_(message);
    return;
  }
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  std::_Exit(3);
}

}  // namespace exatrain
