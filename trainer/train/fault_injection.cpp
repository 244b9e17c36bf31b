#include "trainer/train/fault_injection.h"

#include <cstdlib>
#include <map>
#include <sstream>

#include "trainer/core/error.h"

namespace exatrain {

FaultInjector::FaultInjector(const std::string& spec, int rank) : spec_(spec) {
  static const std::map<std::string, FaultKind> kinds = {{"nan_loss", FaultKind::NanLoss},
                                                         {"nan_grad", FaultKind::NanGrad},
                                                         {"loss_spike", FaultKind::LossSpike},
                                                         {"hang", FaultKind::Hang},
                                                         {"signal", FaultKind::Signal},
                                                         {"slow", FaultKind::Slow}};
  std::stringstream in(spec);
  for (std::string item; std::getline(in, item, ',');) {
    if (item.empty()) continue;
    const auto at = item.find('@');
    const auto it = kinds.find(item.substr(0, at));
    if (at == std::string::npos || it == kinds.end())
      fail("EXATRAIN_FAULT_INJECT: '{}' is not KIND@STEP[:RANK] with KIND one of nan_loss, nan_grad, loss_spike, "
           "hang, signal, slow", item);
    const std::string where = item.substr(at + 1);
    const auto colon = where.find(':');
    char* end = nullptr;
    const long long step = std::strtoll(where.substr(0, colon).c_str(), &end, 10);
    const int target = colon == std::string::npos ? 0 : std::atoi(where.substr(colon + 1).c_str());
    if (step < 1 || *end) fail("EXATRAIN_FAULT_INJECT: '{}': the step must be a whole number >= 1", item);
    if (target == rank) faults_.emplace_back(it->second, step);
  }
}

FaultInjector FaultInjector::from_env(int rank) {
  const char* spec = std::getenv("EXATRAIN_FAULT_INJECT");
  return spec && *spec ? FaultInjector(spec, rank) : FaultInjector();
}

bool FaultInjector::at(FaultKind kind, int64_t step) const {
  for (const auto& [k, s] : faults_)
    if (k == kind && s == step) return true;
  return false;
}

bool FaultInjector::since(FaultKind kind, int64_t step) const {
  for (const auto& [k, s] : faults_)
    if (k == kind && s <= step) return true;
  return false;
}

}  // namespace exatrain
