#include "trainer/core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <limits>

namespace exatrain {

namespace {

// The pool whose worker this thread is (parallel_for from inside a task must not wait on its
// own pool's queue).
thread_local const ThreadPool* current_pool = nullptr;

}  // namespace

int resolve_thread_count(int requested) {
  if (requested > 0) return requested;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

ThreadPool::ThreadPool(int threads) {
  const int n = std::max(threads, 1);
  workers_.reserve(n);
  for (int t = 0; t < n; ++t) workers_.emplace_back([this] { work(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::work() {
  current_pool = this;
  for (;;) {
    std::packaged_task<void()> task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to run
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();  // an exception goes into the task's future
  }
}

std::future<void> ThreadPool::submit(std::function<void()> task) {
  std::packaged_task<void()> packaged(std::move(task));
  std::future<void> done = packaged.get_future();
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(packaged));
  }
  wake_.notify_one();
  return done;
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (n == 1 || workers_.size() == 1 || current_pool == this) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  // Indices are claimed in increasing order and only those above the lowest failure are
  // skipped, so every index below it has run: the lowest failure is the serial loop's.
  std::atomic<size_t> next{0};
  std::atomic<size_t> lowest_failed{std::numeric_limits<size_t>::max()};
  std::mutex error_mutex;
  std::exception_ptr error;
  auto run = [&] {
    for (size_t i; (i = next++) < n && i < lowest_failed.load();) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (i < lowest_failed.load()) {
          lowest_failed = i;
          error = std::current_exception();
        }
      }
    }
  };
  std::vector<std::future<void>> running;
  const size_t tasks = std::min(n, workers_.size());
  running.reserve(tasks);
  for (size_t t = 0; t < tasks; ++t) running.push_back(submit(run));
  for (auto& r : running) r.wait();
  if (error) std::rethrow_exception(error);
}

}  // namespace exatrain
