// A fixed set of worker threads for the data path's parallel work (encoding, counting words,
// hashing shards): the one thread pool in exatrain. No torch here.
//
//   ThreadPool pool(resolve_thread_count(options.threads));
//   pool.parallel_for(items.size(), [&](size_t i) { results[i] = work(items[i]); });
//
// Results that go to slot i do not depend on the number of threads. A long-lived producer that
// blocks on its consumer (the loader's prefetch, the reader of `data prepare`) is a thread of its
// own, not a pool task.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace exatrain {

// `requested` when positive, else one per core (at least 1).
int resolve_thread_count(int requested);

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // starts max(threads, 1) workers
  // Runs what is still queued, then joins the workers.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()); }

  // Queues `task` for a worker; the future holds its exception, if any.
  std::future<void> submit(std::function<void()> task);

  // Runs fn(0) .. fn(n - 1) with at most threads() running at once and returns when they are
  // done. When a call throws, indices above it that have not started are skipped and the
  // exception of the lowest index that threw is rethrown: what a serial loop would throw. With
  // one thread, one index, or when called from one of this pool's tasks, it runs serially on the
  // calling thread.
  void parallel_for(size_t n, const std::function<void(size_t)>& fn);

 private:
  void work();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stopping_ = false;
};

}  // namespace exatrain
