// Test-only faults, so that tests can reach the code that handles them at an exact step on an
// exact rank: EXATRAIN_FAULT_INJECT="KIND@STEP[:RANK][,...]" (RANK defaults to 0; STEP is the
// 1-based step as the log prints it). Kinds:
//   nan_loss    this rank's loss share of the step is NaN (its gradients are left alone)
//   nan_grad    one element of this rank's local gradients is NaN before the reduction
//   loss_spike  this rank's loss share is multiplied by 100 (what the spike detector sees)
//   hang        this rank sleeps before the step's forward pass, outside any collective
//   signal      this rank receives SIGUSR1 before the step's forward pass
//   slow        from this step on, this rank sleeps 300 ms per step outside collectives (a slow node)
// The trainer logs a warning when any is set. Real signals, kills and disk faults are what the
// tests use wherever they can be timed (tests/e2e/faults.sh).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace exatrain {

enum class FaultKind { NanLoss, NanGrad, LossSpike, Hang, Signal, Slow };

class FaultInjector {
 public:
  FaultInjector() = default;
  // Parses `spec` (the variable's text); keeps the faults for `rank`. Throws on a bad spec.
  FaultInjector(const std::string& spec, int rank);
  static FaultInjector from_env(int rank);

  bool at(FaultKind kind, int64_t step) const;
  bool since(FaultKind kind, int64_t step) const;  // set for a step <= `step`
  bool empty() const { return spec_.empty(); }
  const std::string& spec() const { return spec_; }

 private:
  std::string spec_;
  std::vector<std::pair<FaultKind, int64_t>> faults_;  // this rank's
};

}  // namespace exatrain
