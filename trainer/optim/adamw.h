// AdamW with decoupled weight decay on a list of parameters (used by `bench train`; training
// uses DistributedOptimizer, which runs the same fused kernel on its owned slice).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "trainer/core/config.h"

namespace exatrain {

class AdamW {
 public:
  // `decay[i]` says whether params[i] is weight-decayed. Moments are fp32, like the params.
  AdamW(std::vector<at::Tensor> params, std::vector<bool> decay, const OptimizerConfig& config);

  // One update with learning rate `lr` from the parameters' .grad(), in ATen's fused AdamW
  // kernel (one pass over memory per parameter):
  //   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
  //   p -= lr * wd * p  (decayed params only);  p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
  void step(double lr);
  int64_t steps_taken() const { return step_; }
  // Bytes of optimizer state (the two moments).
  int64_t state_bytes() const;

 private:
  std::vector<at::Tensor> params_, exp_avg_, exp_avg_sq_, steps_;  // steps_: per-param step counts
  std::vector<bool> decay_;
  OptimizerConfig config_;
  int64_t step_ = 0;
};

}  // namespace exatrain
