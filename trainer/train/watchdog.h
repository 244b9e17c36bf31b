// A rank that stops making progress outside a collective (a hung file system, data loader or
// device call) ends the job and names itself. The collectives already time out
// (parallel.timeout_s), but the ranks waiting there cannot tell which rank is missing; the
// stuck rank can. A thread checks the main thread's progress (trainer/core/progress.h) and,
// after `limit_s` without any, prints one line naming the rank, host, phase and step, and ends
// the process with exit status 3 without MPI_Finalize, which mpirun and srun
// (--kill-on-bad-exit) turn into the end of the job.
//
// The trainer arms it with 90% of parallel.timeout_s, so the stuck rank speaks before the
// waiting ranks' collective timeouts fire; the collective wait loops note progress while they
// poll, so a rank waiting for a stuck peer is not itself reported.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace exatrain {

class ProgressWatchdog {
 public:
  // `on_stuck` receives the message; by default it is printed and the process ends (_Exit(3)).
  ProgressWatchdog(double limit_s, int rank, std::function<void(const std::string&)> on_stuck = {});
  ~ProgressWatchdog();
  ProgressWatchdog(const ProgressWatchdog&) = delete;
  ProgressWatchdog& operator=(const ProgressWatchdog&) = delete;

 private:
  void run();
  double limit_s_;
  int rank_;
  std::function<void(const std::string&)> on_stuck_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace exatrain
