// Scoped bf16 autocast on one device type: on for the scope when `enabled`, then back to what it
// was (the trainer's steps under train.precision: bf16; `exatrain logits --dtype bf16`).
#pragma once

#include <ATen/autocast_mode.h>

namespace exatrain {

class AutocastScope {
 public:
  AutocastScope(bool enabled, at::DeviceType device) : enabled_(enabled), device_(device) {
    if (!enabled_) return;
    previous_ = at::autocast::is_autocast_enabled(device_);
    at::autocast::set_autocast_dtype(device_, at::kBFloat16);
    at::autocast::set_autocast_enabled(device_, true);
  }
  ~AutocastScope() {
    if (!enabled_) return;
    at::autocast::set_autocast_enabled(device_, previous_);
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_, previous_ = false;
  at::DeviceType device_;
};

}  // namespace exatrain
