// One training process group per run directory: rank 0 holds an exclusive flock(2) on
// RUN/.lock for the whole run, so a second `exatrain train` on the same --run-dir (by mistake,
// or a resubmitted job while the old one still runs) is refused before it writes anything. The
// lock goes when the process ends, however it ends (a killed run leaves nothing to clean up).
// On NFS, Linux emulates flock with byte-range locks, which NFSv4 servers honour across nodes.
#pragma once

#include <string>

namespace exatrain {

class RunDirLock {
 public:
  // Locks DIR/.lock (DIR must exist) and records "pid PID on HOST since TIME" in it; fails naming
  // the holder when another process has it.
  explicit RunDirLock(const std::string& dir);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace exatrain
