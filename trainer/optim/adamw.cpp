#include "trainer/optim/adamw.h"

#include <ATen/ATen.h>

#include <cmath>

namespace exatrain {

AdamW::AdamW(std::vector<at::Tensor> params, std::vector<bool> decay, const OptimizerConfig& config)
    : params_(std::move(params)), decay_(std::move(decay)), config_(config) {
  for (const auto& p : params_) {
    exp_avg_.push_back(at::zeros_like(p, p.options().dtype(at::kFloat)));
    exp_avg_sq_.push_back(at::zeros_like(p, p.options().dtype(at::kFloat)));
  }
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_;
  const double b1 = config_.beta1, b2 = config_.beta2;
  const double bias1 = 1.0 - std::pow(b1, static_cast<double>(step_));
  const double bias2 = 1.0 - std::pow(b2, static_cast<double>(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    exp_avg_[i].mul_(b1).add_(g, 1.0 - b1);
    exp_avg_sq_[i].mul_(b2).addcmul_(g, g, 1.0 - b2);
    if (decay_[i] && config_.weight_decay > 0) p.mul_(1.0 - lr * config_.weight_decay);
    at::Tensor denom = (exp_avg_sq_[i] / bias2).sqrt_().add_(config_.eps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bias1);
  }
}

int64_t AdamW::state_bytes() const {
  int64_t bytes = 0;
  for (size_t i = 0; i < params_.size(); ++i)
    bytes += exp_avg_[i].nbytes() + exp_avg_sq_[i].nbytes();
  return bytes;
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  double sum_sq = 0.0;
  for (const auto& p : params)
    if (p.grad().defined()) sum_sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  const double norm = std::sqrt(sum_sq);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  }
  return norm;
}

}  // namespace exatrain
