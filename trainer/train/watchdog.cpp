#include "trainer/train/watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "trainer/core/progress.h"

namespace exatrain {

ProgressWatchdog::ProgressWatchdog(double limit_s, int rank, std::function<void(const std::string&)> on_stuck)
    : limit_s_(limit_s), rank_(rank), on_stuck_(std::move(on_stuck)) {
  note_progress();
  thread_ = std::thread([this] { run(); });
}

ProgressWatchdog::~ProgressWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void ProgressWatchdog::run() {
  // Checks 50 times per limit, at most once a second: the report comes at most 2% late.
  const auto period = std::chrono::duration<double>(std::clamp(limit_s_ / 50, 0.01, 1.0));
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
    const ProgressMark mark = last_progress();
    const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now().time_since_epoch()).count();
    const double idle = static_cast<double>(now - mark.nanoseconds) / 1e9;
    if (idle <= limit_s_) continue;
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    const std::string message = fmt::format(
        "exatrain: error: rank {} on {} made no progress for {:.0f} s (in {} at step {}), outside any collective; "
        "it is stuck (a hung file system, data loader or device?); ending the job (parallel.timeout_s)",
        rank_, host, idle, *mark.phase ? mark.phase : "start-up", mark.step);
    if (on_stuck_) {
      on_stuck_(message);
      return;
    }
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(3);
  }
}

}  // namespace exatrain
