// trainer/core/thread_pool.h: every index runs once, results do not depend on the thread
// count, the serial loop's exception reaches the caller, and one thread works.
#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/core/thread_pool.h"

namespace exatrain {
namespace {

TEST(ThreadPool, RunsEveryIndexOnceWithAnyThreadCount) {
  constexpr size_t n = 1000;
  std::vector<uint64_t> reference(n);
  for (size_t i = 0; i < n; ++i) reference[i] = i * i + 7;
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    std::vector<std::atomic<int>> calls(n);
    std::vector<uint64_t> out(n);
    pool.parallel_for(n, [&](size_t i) {
      ++calls[i];
      out[i] = i * i + 7;
    });
    EXPECT_EQ(out, reference) << threads << " threads";
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(calls[i].load(), 1) << "index " << i << ", " << threads << " threads";
    pool.parallel_for(0, [&](size_t) { FAIL() << "no index to run"; });
  }
  EXPECT_EQ(ThreadPool(0).threads(), 1);
}

TEST(ThreadPool, RethrowsTheLowestIndexThatThrew) {
  for (int threads : {1, 4}) {
    ThreadPool pool(threads);
    for (int trial = 0; trial < 20; ++trial) {
      std::atomic<int> ran{0};
      try {
        pool.parallel_for(200, [&](size_t i) {
          ++ran;
          if (i == 37 || i == 38 || i == 150) throw std::runtime_error("index " + std::to_string(i));
        });
        ADD_FAILURE() << "no exception";
      } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "index 37") << threads << " threads";
      }
      EXPECT_GE(ran.load(), 38);  // every index up to the failure ran
      if (threads == 1) {
        EXPECT_EQ(ran.load(), 38);  // and, serially, none after it
      }
    }
    // The pool still works afterwards.
    std::atomic<size_t> sum{0};
    pool.parallel_for(10, [&](size_t i) { sum += i; });
    EXPECT_EQ(sum.load(), 45u);
  }
}

TEST(ThreadPool, SubmitRunsTasksAndCarriesExceptions) {
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    std::atomic<int> count{0};
    std::vector<std::future<void>> done;
    for (int t = 0; t < 50; ++t) done.push_back(pool.submit([&] { ++count; }));
    for (auto& d : done) d.get();
    EXPECT_EQ(count.load(), 50);
    auto failing = pool.submit([] { throw std::invalid_argument("bad task"); });
    EXPECT_THROW(failing.get(), std::invalid_argument);
  }
}

TEST(ThreadPool, NestedParallelForRunsSeriallyInsteadOfDeadlocking) {
  ThreadPool pool(2);
  std::vector<int> inner_sums(4);
  pool.parallel_for(4, [&](size_t i) {
    pool.parallel_for(10, [&](size_t j) { inner_sums[i] += int(j); });
  });
  EXPECT_EQ(inner_sums, (std::vector<int>{45, 45, 45, 45}));
}

TEST(ThreadPool, DestructorRunsWhatIsQueued) {
  std::atomic<int> count{0};
  {
    ThreadPool pool(1);
    for (int t = 0; t < 20; ++t) pool.submit([&] { ++count; });
  }
  EXPECT_EQ(count.load(), 20);
}

TEST(ThreadPool, ResolveThreadCount) {
  EXPECT_EQ(resolve_thread_count(3), 3);
  EXPECT_GE(resolve_thread_count(0), 1);
  EXPECT_EQ(resolve_thread_count(-1), resolve_thread_count(0));
}

}  // namespace
}  // namespace exatrain
