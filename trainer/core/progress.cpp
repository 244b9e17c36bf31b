#include "trainer/core/progress.h"

#include <atomic>
#include <chrono>

namespace exatrain {

namespace {
std::atomic<int64_t> g_nanoseconds{0};
std::atomic<const char*> g_phase{""};
std::atomic<int64_t> g_step{0};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void note_progress() { g_nanoseconds.store(now_ns(), std::memory_order_relaxed); }

void note_progress(const char* phase) {
  g_phase.store(phase, std::memory_order_relaxed);
  note_progress();
}

void note_step(int64_t step) { g_step.store(step, std::memory_order_relaxed); }

ProgressMark last_progress() {
  return {g_nanoseconds.load(std::memory_order_relaxed), g_phase.load(std::memory_order_relaxed),
          g_step.load(std::memory_order_relaxed)};
}

}  // namespace exatrain
