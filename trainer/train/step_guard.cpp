#include "trainer/train/step_guard.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "trainer/core/error.h"

namespace exatrain {

double RollingZScore::zscore(double x) const {
  if (!full()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0, sum_sq = 0;
  for (double v : values_) sum += v;
  const double n = static_cast<double>(values_.size()), mean = sum / n;
  for (double v : values_) sum_sq += (v - mean) * (v - mean);
  const double std = std::sqrt(sum_sq / n);
  if (std == 0) return x == mean ? 0.0 : std::copysign(std::numeric_limits<double>::infinity(), x - mean);
  return (x - mean) / std;
}

void RollingZScore::push(double x) {
  values_.push_back(x);
  while (static_cast<int64_t>(values_.size()) > window_) values_.pop_front();
}

StepGuard::StepGuard(NonfiniteAction on_nonfinite, int64_t window, double zscore)
    : on_nonfinite_(on_nonfinite), zscore_(zscore), loss_(window), grad_norm_(window) {}

StepJudgement StepGuard::judge(double loss, double grad_norm) {
  StepJudgement j;
  if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
    j.loss_zscore = j.grad_norm_zscore = std::numeric_limits<double>::quiet_NaN();
    if (on_nonfinite_ == NonfiniteAction::Stop) {
      j.verdict = StepVerdict::StopNonfinite;
    } else {
      j.verdict = StepVerdict::SkipNonfinite;
      skipped_nonfinite_ += 1;
    }
    return j;
  }
  j.loss_zscore = loss_.zscore(loss);
  j.grad_norm_zscore = grad_norm_.zscore(grad_norm);
  loss_.push(loss);
  grad_norm_.push(grad_norm);
  // NaN (window not yet full) compares false: no skip.
  if (zscore_ > 0 && (j.loss_zscore > zscore_ || j.grad_norm_zscore > zscore_)) {
    j.verdict = StepVerdict::SkipSpike;
    skipped_spikes_ += 1;
  }
  return j;
}

std::string StepGuard::save() const {
  std::ostringstream out;
  out.precision(17);
  out << "exatrain-step-guard 1\n" << skipped_nonfinite_ << " " << skipped_spikes_ << "\n";
  for (const RollingZScore* w : {&loss_, &grad_norm_}) {
    out << w->values().size();
    for (double v : w->values()) out << " " << v;
    out << "\n";
  }
  return out.str();
}

void StepGuard::restore(const std::string& text) {
  loss_.clear();
  grad_norm_.clear();
  skipped_nonfinite_ = skipped_spikes_ = 0;
  if (text.empty()) return;
  std::istringstream in(text);
  std::string magic;
  int version = 0;
  in >> magic >> version >> skipped_nonfinite_ >> skipped_spikes_;
  if (magic != "exatrain-step-guard" || version != 1) fail("checkpoint: unreadable step-guard state (version {})", version);
  for (RollingZScore* w : {&loss_, &grad_norm_}) {
    size_t n = 0;
    in >> n;
    for (size_t i = 0; i < n && in; ++i) {
      double v;
      in >> v;
      w->push(v);
    }
  }
  if (!in) fail("checkpoint: the step-guard state is truncated");
}

}  // namespace exatrain
