// Progress of this process's main thread, for the watchdog (trainer/train/watchdog.h): code that
// makes progress calls note_progress() (the training loop at each phase, the collective wait
// loops while they poll, the checkpoint writer per piece). Cheap: one clock read and two
// relaxed stores.
#pragma once

#include <cstdint>

namespace exatrain {

void note_progress();
// Also names what the thread does now ("step", "evaluation", "checkpoint", ...): a string
// literal (kept by pointer).
void note_progress(const char* phase);
void note_step(int64_t step);

struct ProgressMark {
  int64_t nanoseconds = 0;  // steady clock of the last progress
  const char* phase = "";
  int64_t step = 0;
};
ProgressMark last_progress();

}  // namespace exatrain
