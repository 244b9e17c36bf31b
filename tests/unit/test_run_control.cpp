// The torch-free parts of a run's fault handling: the spike detector and step guard (against
// statistics computed here independently), their checkpoint round trip, the test fault
// injector's parsing, the run-directory lock, the whole-line appender and the watchdog.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <thread>
#include <vector>

#include "tests/unit/expect_error.h"
#include "tests/unit/scratch_dir.h"
#include "trainer/core/atomic_file.h"
#include "trainer/core/progress.h"
#include "trainer/core/run_lock.h"
#include "trainer/train/fault_injection.h"
#include "trainer/train/step_guard.h"
#include "trainer/train/stop_signals.h"
#include "trainer/train/watchdog.h"

namespace exatrain {
namespace {

// z of x against the population mean and deviation of `window`, computed directly.
double direct_z(const std::vector<double>& window, double x) {
  double mean = 0;
  for (double v : window) mean += v;
  mean /= static_cast<double>(window.size());
  double var = 0;
  for (double v : window) var += (v - mean) * (v - mean);
  return (x - mean) / std::sqrt(var / static_cast<double>(window.size()));
}

TEST(RollingZScore, MatchesTheDirectFormulaOverTheLastWindow) {
  RollingZScore z(4);
  const std::vector<double> xs = {3.0, 2.5, 2.7, 2.4, 2.2, 2.6, 9.0, 2.1};
  std::vector<double> seen;
  for (double x : xs) {
    const double got = z.zscore(x);
    if (seen.size() < 4) {
      EXPECT_TRUE(std::isnan(got)) << "window not full yet";
    } else {
      const std::vector<double> last(seen.end() - 4, seen.end());
      EXPECT_NEAR(got, direct_z(last, x), 1e-12);
    }
    z.push(x);
    seen.push_back(x);
  }
  EXPECT_EQ(z.values().size(), 4u);
}

TEST(RollingZScore, ConstantWindow) {
  RollingZScore z(2);
  z.push(1.0);
  z.push(1.0);
  EXPECT_EQ(z.zscore(1.0), 0.0);
  EXPECT_TRUE(std::isinf(z.zscore(2.0)) && z.zscore(2.0) > 0);
}

TEST(StepGuard, SkipsUpwardSpikesOnlyOnceTheWindowIsFull) {
  StepGuard guard(NonfiniteAction::Stop, 3, 3.0);
  EXPECT_EQ(guard.judge(100, 1).verdict, StepVerdict::Update);  // nothing to compare with yet
  for (double loss : {5.0, 5.1, 4.9}) EXPECT_EQ(guard.judge(loss, 1.0 + loss / 100).verdict, StepVerdict::Update);
  const StepJudgement spike = guard.judge(50.0, 1.05);
  EXPECT_EQ(spike.verdict, StepVerdict::SkipSpike);
  EXPECT_GT(spike.loss_zscore, 3.0);
  EXPECT_EQ(guard.judge(0.1, 1.0).verdict, StepVerdict::Update);  // a drop is not a spike
  EXPECT_EQ(guard.skipped_spikes(), 1);
  StepGuard off(NonfiniteAction::Stop, 3, 0.0);  // zscore 0: measured, never skipped
  for (double loss : {5.0, 5.1, 4.9}) off.judge(loss, 1.0);
  const StepJudgement measured = off.judge(50.0, 1.0);
  EXPECT_EQ(measured.verdict, StepVerdict::Update);
  EXPECT_GT(measured.loss_zscore, 3.0);
}

TEST(StepGuard, NonfiniteStopsOrSkipsAndStaysOutOfTheWindow) {
  StepGuard stop(NonfiniteAction::Stop, 2, 0);
  EXPECT_EQ(stop.judge(NAN, 1).verdict, StepVerdict::StopNonfinite);
  EXPECT_EQ(stop.judge(1, INFINITY).verdict, StepVerdict::StopNonfinite);
  StepGuard skip(NonfiniteAction::Skip, 2, 0);
  skip.judge(1.0, 1.0);
  EXPECT_EQ(skip.judge(NAN, 1).verdict, StepVerdict::SkipNonfinite);
  skip.judge(3.0, 1.0);
  // The window is {1, 3}: the NaN never entered it.
  EXPECT_NEAR(skip.judge(2.0, 1.0).loss_zscore, 0.0, 1e-12);
  EXPECT_EQ(skip.skipped_nonfinite(), 1);
}

TEST(StepGuard, SavesAndRestoresExactly) {
  StepGuard a(NonfiniteAction::Skip, 4, 2.5);
  for (double x : {1.0 / 3, 2.0 / 7, 0.1, 0.30000000000000004, 5.5}) a.judge(x, x * 2);
  a.judge(NAN, 1);
  StepGuard b(NonfiniteAction::Skip, 4, 2.5);
  b.restore(a.save());
  EXPECT_EQ(b.save(), a.save());
  EXPECT_EQ(b.skipped_nonfinite(), 1);
  for (double x : {0.2, 7.0, 0.25}) {
    const StepJudgement ja = a.judge(x, 1), jb = b.judge(x, 1);
    EXPECT_EQ(ja.verdict, jb.verdict);
    EXPECT_EQ(ja.loss_zscore, jb.loss_zscore);  // bit-identical: the window round-trips exactly
  }
  StepGuard fresh(NonfiniteAction::Skip, 4, 2.5);
  fresh.restore("");
  EXPECT_EQ(fresh.skipped_spikes(), 0);
  expect_error([&] { fresh.restore("something else 3\n"); }, {"step-guard"});
  expect_error([&] { fresh.restore("exatrain-step-guard 1\n0 0\n3 1.0\n"); }, {"truncated"});
}

TEST(FaultInjector, ParsesKindsStepsAndRanks) {
  const FaultInjector rank2("nan_grad@5:2,signal@3,slow@4:2", 2);
  EXPECT_TRUE(rank2.at(FaultKind::NanGrad, 5));
  EXPECT_FALSE(rank2.at(FaultKind::NanGrad, 4));
  EXPECT_FALSE(rank2.at(FaultKind::Signal, 3));  // rank 0's
  EXPECT_FALSE(rank2.since(FaultKind::Slow, 3));
  EXPECT_TRUE(rank2.since(FaultKind::Slow, 9));
  EXPECT_TRUE(FaultInjector("signal@3", 0).at(FaultKind::Signal, 3));
  expect_error([] { FaultInjector("nan@5", 0); }, {"'nan@5'", "KIND@STEP[:RANK]"});
  expect_error([] { FaultInjector("hang@0", 0); }, {"'hang@0'", ">= 1"});
  expect_error([] { FaultInjector("hang@x", 0); }, {"'hang@x'"});
}

TEST(RunDirLock, SecondHolderIsRefusedNamingTheFirst) {
  const ScratchDir scratch;
  {
    RunDirLock first(scratch.path.string());
    // flock belongs to the open file: a second open in this process conflicts like another process.
    expect_error([&] { RunDirLock second(scratch.path.string()); },
                 {"is in use by another exatrain train", "pid " + std::to_string(::getpid()), "--run-dir"});
  }
  RunDirLock again(scratch.path.string());  // released with the first
  expect_error([&] { RunDirLock missing((scratch.path / "nope").string()); }, {"nope/.lock"});
}

TEST(LineAppender, WholeLinesOrNothing) {
  const ScratchDir scratch;
  const std::string path = (scratch.path / "m.jsonl").string();
  LineAppender out;
  out.open(path, /*truncate=*/true);
  EXPECT_EQ(out.append("{\"step\":1}"), "");
  // A file-size limit (the kernel's own check, like a full disk): a line that does not fit in
  // the limit fails and is cut back, leaving the file as it was.
  struct rlimit old;
  getrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 4096 + 100;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string big(5000, 'x');
  const std::string error = out.append(big);
  setrlimit(RLIMIT_FSIZE, &old);
  EXPECT_NE(error.find("cannot write '" + path + "'"), std::string::npos) << error;
  EXPECT_EQ(out.append("{\"step\":2}"), "");
  EXPECT_EQ(read_bytes(path), "{\"step\":1}\n{\"step\":2}\n");
  LineAppender again;
  again.open(path, /*truncate=*/false);
  EXPECT_EQ(again.append("3"), "");
  EXPECT_EQ(read_bytes(path), "{\"step\":1}\n{\"step\":2}\n3\n");
}

TEST(ProgressWatchdog, ReportsOnlyWithoutProgress) {
  std::atomic<int> reports{0};
  std::string message;
  {
    ProgressWatchdog dog(0.3, 7, [&](const std::string& m) {
      message = m;
      reports += 1;
    });
    for (int i = 0; i < 10; ++i) {  // 0.5 s with progress every 50 ms: never reported
      note_progress("step");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(reports.load(), 0);
    note_step(12);
    note_progress("evaluation");
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
  }
  EXPECT_EQ(reports.load(), 1);
  EXPECT_NE(message.find("rank 7 on "), std::string::npos) << message;
  EXPECT_NE(message.find("(in evaluation at step 12)"), std::string::npos) << message;
}

TEST(StopSignals, FirstSignalIsKeptAndTheProcessLives) {
  install_stop_signals();
  EXPECT_EQ(stop_signal(), 0);
  std::raise(SIGUSR1);
  std::raise(SIGTERM);  // a second signal changes nothing, and does not end the process
  EXPECT_EQ(stop_signal(), SIGUSR1);
  EXPECT_STREQ(signal_name(stop_signal()), "SIGUSR1");
}

}  // namespace
}  // namespace exatrain
