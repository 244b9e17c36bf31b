// The accelerators `exatrain plan` knows, read from configs/hardware.yaml (embedded at build
// time; `--hardware FILE` reads another file of the same shape).
#pragma once

#include <string>

#include "trainer/plan/cost_model.h"

namespace exatrain {

// `name` from the embedded configs/hardware.yaml, or from `path` when it is not empty; an
// unknown name lists the known ones.
Hardware load_hardware(const std::string& name, const std::string& path = "");

}  // namespace exatrain
