// The checks between backward and the optimizer update: a non-finite loss or gradient norm,
// and spikes (llm.c's outlier detector: a z-score of the loss and of the gradient norm against
// the last `window` steps). The trainer reduces what each rank saw to one agreed input, so every
// rank reaches the same verdict; this class holds only the arithmetic and the counters, and its
// state goes into checkpoints (a resumed run skips exactly what the uninterrupted run skips).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace exatrain {

// Mean and standard deviation of the last `window` values (population, as llm.c). zscore() is
// NaN until the window is full, and 0 when every value in it is the same.
class RollingZScore {
 public:
  explicit RollingZScore(int64_t window) : window_(window) {}
  double zscore(double x) const;
  void push(double x);
  bool full() const { return static_cast<int64_t>(values_.size()) >= window_; }
  const std::deque<double>& values() const { return values_; }
  void clear() { values_.clear(); }

 private:
  int64_t window_;
  std::deque<double> values_;
};

enum class NonfiniteAction { Skip, Stop };

enum class StepVerdict {
  Update,         // apply the optimizer step
  SkipNonfinite,  // train.on_nonfinite: skip
  SkipSpike,      // a z-score above train.spike.zscore
  StopNonfinite,  // train.on_nonfinite: stop (the caller saves the last good state)
};

struct StepJudgement {
  StepVerdict verdict = StepVerdict::Update;
  double loss_zscore = 0, grad_norm_zscore = 0;  // NaN until the window is full
};

class StepGuard {
 public:
  // zscore <= 0: spikes are measured (metrics) but never skipped.
  StepGuard(NonfiniteAction on_nonfinite, int64_t window, double zscore);

  // `loss` and `grad_norm` are the agreed (global) values of this step. A finite step enters
  // the windows after it is judged, as in llm.c (a skipped spike still counts in the statistics,
  // so a lasting level shift stops being a spike).
  StepJudgement judge(double loss, double grad_norm);

  int64_t skipped_nonfinite() const { return skipped_nonfinite_; }
  int64_t skipped_spikes() const { return skipped_spikes_; }

  // For checkpoints: the windows and counters as text ("exatrain-step-guard 1" lines), and back.
  // restore() of an empty string leaves the guard fresh (a checkpoint from before this existed).
  std::string save() const;
  void restore(const std::string& text);

 private:
  NonfiniteAction on_nonfinite_;
  double zscore_;
  RollingZScore loss_, grad_norm_;
  int64_t skipped_nonfinite_ = 0, skipped_spikes_ = 0;
};

}  // namespace exatrain
