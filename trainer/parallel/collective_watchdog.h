// Timeouts for collectives the host does not wait for. NCCL collectives are queued on a stream
// and the host goes on (the compute stream waits on an event, not the host), so no wait loop
// exists where a timeout could be checked, as the MPI path checks it (comm.cpp). Instead one
// thread per process, like PyTorch's NCCL watchdog, polls every outstanding operation; one that
// fails, or does not complete within its timeout, is reported in one line naming the operation,
// group, rank and step; the abort hooks run (ncclCommAbort on every communicator, so no kernel
// spins forever on a peer that is gone) and the process ends with exit status 3, which mpirun
// and srun (--kill-on-bad-exit) turn into the end of the job (as ProgressWatchdog does).
// No CUDA here: an operation's completion is a callback (a CUDA event query for NCCL).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace exatrain {

class CollectiveWatchdog {
 public:
  struct Operation {
    std::string backend = "NCCL", op, group;
    int world_rank = 0, group_rank = 0, group_size = 1;
    int64_t step = 0;
    double timeout_s = 300;
    // True once complete. On failure it sets `error` (the operation is then reported at once).
    std::function<bool(std::string& error)> poll;
  };
  // `on_failure` receives the message; by default it is printed to stderr and the process ends
  // (_Exit(3)). Either way the abort hooks have run first.
  explicit CollectiveWatchdog(std::function<void(const std::string&)> on_failure = {});
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // Starts watching `operation` from now. Thread-safe.
  void watch(Operation operation);
  // Run before a failure is reported (e.g. ncclCommAbort of one communicator). Thread-safe.
  int add_abort_hook(std::function<void()> hook);
  void remove_abort_hook(int id);
  // Operations not yet seen complete.
  size_t outstanding() const;

 private:
  struct Watched {
    Operation operation;
    std::chrono::steady_clock::time_point start;
  };
  void run();
  void fail(const std::string& message);

  std::function<void(const std::string&)> on_failure_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Watched> watched_;
  std::map<int, std::function<void()>> abort_hooks_;
  int next_hook_ = 0;
  bool stop_ = false, failed_ = false;
  std::thread thread_;
};

}  // namespace exatrain
