#include "trainer/optim/adamw.h"

#include <ATen/ATen.h>

#include <cmath>

namespace exatrain {

AdamW::AdamW(std::vector<at::Tensor> params, std::vector<bool> decay, const OptimizerConfig& config)
    : params_(std::move(params)), decay_(std::move(decay)), config_(config) {
  for (const auto& p : params_) {
    exp_avg_.push_back(at::zeros_like(p, p.options().dtype(at::kFloat)));
    exp_avg_sq_.push_back(at::zeros_like(p, p.options().dtype(at::kFloat)));
    steps_.push_back(at::zeros({}, p.options().dtype(at::kFloat)));
  }
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_;
  // Two groups, with and without weight decay; parameters without a gradient are skipped.
  for (const bool decayed : {true, false}) {
    std::vector<at::Tensor> p, g, m, v, s;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (decay_[i] != decayed || !params_[i].grad().defined()) continue;
      p.push_back(params_[i]);
      g.push_back(params_[i].grad());
      m.push_back(exp_avg_[i]);
      v.push_back(exp_avg_sq_[i]);
      s.push_back(steps_[i]);
    }
    if (p.empty()) continue;
    at::_foreach_add_(s, 1);
    at::_fused_adamw_(p, g, m, v, /*max_exp_avg_sqs=*/{}, s, lr, config_.beta1, config_.beta2,
                      decayed ? config_.weight_decay : 0.0, config_.eps, /*amsgrad=*/false, /*maximize=*/false);
  }
}

int64_t AdamW::state_bytes() const {
  int64_t bytes = 0;
  for (size_t i = 0; i < params_.size(); ++i)
    bytes += exp_avg_[i].nbytes() + exp_avg_sq_[i].nbytes();
  return bytes;
}

}  // namespace exatrain
