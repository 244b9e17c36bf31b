// The watchdog of stream-ordered collectives (trainer/parallel/collective_watchdog.h), with real
// threads and the real clock: operations that complete are forgotten and never reported; one
// that never completes is reported after its timeout, naming operation, group, rank and step,
// after the abort hooks ran; a failed one is reported at once with its error. On a GPU the
// completion callback is a CUDA event query (trainer/parallel/nccl_comm.cpp).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include "trainer/parallel/collective_watchdog.h"

namespace exatrain {
namespace {

using Clock = std::chrono::steady_clock;

struct Report {
  std::mutex mutex;
  std::string message;
  Clock::time_point at;
  int count = 0;
  void operator()(const std::string& m) {
    std::lock_guard<std::mutex> lock(mutex);
    message = m;
    at = Clock::now();
    ++count;
  }
  int seen() {
    std::lock_guard<std::mutex> lock(mutex);
    return count;
  }
};

CollectiveWatchdog::Operation operation(const char* op, double timeout_s, std::function<bool(std::string&)> poll) {
  CollectiveWatchdog::Operation o;
  o.op = op;
  o.group = "dp";
  o.world_rank = 5;
  o.group_rank = 1;
  o.group_size = 4;
  o.step = 17;
  o.timeout_s = timeout_s;
  o.poll = std::move(poll);
  return o;
}

bool wait_for(const std::function<bool()>& condition, double seconds) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return condition();
}

TEST(CollectiveWatchdog, CompletedOperationsAreForgottenAndNeverReported) {
  Report report;
  CollectiveWatchdog dog([&](const std::string& m) { report(m); });
  std::atomic<bool> done{false};
  for (int i = 0; i < 3; ++i)
    dog.watch(operation("all_reduce", 0.3, [&](std::string&) { return done.load(); }));
  EXPECT_EQ(dog.outstanding(), 3u);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // within the timeout
  done = true;
  EXPECT_TRUE(wait_for([&] { return dog.outstanding() == 0; }, 2.0));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // past the timeout: complete ones are not late
  EXPECT_EQ(report.seen(), 0);
}

TEST(CollectiveWatchdog, StuckOperationIsReportedAfterItsTimeoutAfterTheAbortHooks) {
  Report report;
  std::atomic<int> aborted{0};
  std::atomic<bool> hooks_before_report{false};
  CollectiveWatchdog dog([&](const std::string& m) {
    hooks_before_report = aborted.load() == 1;
    report(m);
  });
  dog.add_abort_hook([&] { aborted += 1; });
  const int removed = dog.add_abort_hook([&] { aborted += 100; });
  dog.remove_abort_hook(removed);
  dog.watch(operation("all_reduce", 10.0, [](std::string&) { return true; }));
  const auto start = Clock::now();
  dog.watch(operation("reduce_scatter", 0.25, [](std::string&) { return false; }));
  ASSERT_TRUE(wait_for([&] { return report.seen() > 0; }, 5.0));
  const double after = std::chrono::duration<double>(report.at - start).count();
  EXPECT_GE(after, 0.25);
  EXPECT_LT(after, 0.25 + 1.0);
  EXPECT_EQ(report.message,
            "exatrain: error: rank 5: NCCL reduce_scatter on group 'dp' (rank 1 of 4) did not complete within 0.25 s at "
            "step 17; another rank has stopped or is stuck; aborting the job (parallel.timeout_s)");
  EXPECT_EQ(aborted.load(), 1);
  EXPECT_TRUE(hooks_before_report.load());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(report.seen(), 1);  // reported once
}

TEST(CollectiveWatchdog, FailedOperationIsReportedAtOnceWithItsError) {
  Report report;
  CollectiveWatchdog dog([&](const std::string& m) { report(m); });
  const auto start = Clock::now();
  dog.watch(operation("send_recv", 300.0, [](std::string& error) {
    error = "unhandled system error (remote process exited)";
    return false;
  }));
  ASSERT_TRUE(wait_for([&] { return report.seen() > 0; }, 5.0));
  EXPECT_LT(std::chrono::duration<double>(report.at - start).count(), 1.0);
  EXPECT_EQ(report.message,
            "exatrain: error: rank 5: NCCL send_recv on group 'dp' (rank 1 of 4) failed at step 17: unhandled system "
            "error (remote process exited); aborting the job");
}

}  // namespace
}  // namespace exatrain
