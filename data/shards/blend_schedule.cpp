#include "data/shards/blend_schedule.h"

#include <fmt/ranges.h>

#include <cmath>
#include <numeric>

#include "trainer/core/error.h"

namespace exatrain {

BlendSchedule::BlendSchedule(const std::vector<double>& weights) {
  if (weights.empty()) fail("blend: no datasets");
  double max_weight = 0;
  for (size_t d = 0; d < weights.size(); ++d) {
    if (!std::isfinite(weights[d]) || weights[d] <= 0)
      fail("blend: dataset {} has weight {}; weights must be positive", d, weights[d]);
    max_weight = std::max(max_weight, weights[d]);
  }
  // The largest weight becomes 1e9 units; the others keep their ratio to it within 1e-9.
  for (size_t d = 0; d < weights.size(); ++d) {
    const auto units = static_cast<uint64_t>(std::llround(weights[d] / max_weight * 1e9));
    if (units == 0) fail("blend: dataset {} has weight {}, below 1e-9 of the largest ({})", d, weights[d], max_weight);
    units_.push_back(units);
  }
  uint64_t g = 0;
  for (uint64_t u : units_) g = std::gcd(g, u);
  for (uint64_t& u : units_) u /= g;  // 0.7 / 0.3 -> 7 / 3
  total_units_ = std::accumulate(units_.begin(), units_.end(), uint64_t{0});
}

size_t BlendSchedule::next(std::vector<uint64_t>& drawn) const {
  if (drawn.size() != units_.size()) fail("blend: {} draw counts for {} datasets", drawn.size(), units_.size());
  const size_t k = units_.size();
  if (k == 1) {
    ++drawn[0];
    return 0;
  }
  using Int = __int128;
  Int t = 1;  // the sample being assigned, 1-based
  for (uint64_t n : drawn) t += n;
  // With shares w_d = units_d / total and m = 2k - 2:
  //   eligible:  w_d * t - s_d >= 1/m      <=>  m * (units_d * t - s_d * total) >= total
  //   deadline:  (s_d + 1 - 1/m) / w_d     ~    (m * s_d + m - 1) / units_d   (same order)
  const Int m = 2 * static_cast<Int>(k) - 2;
  const Int total = total_units_;
  size_t best = k;
  for (size_t d = 0; d < k; ++d) {
    const Int behind = static_cast<Int>(units_[d]) * t - static_cast<Int>(drawn[d]) * total;
    if (m * behind < total) continue;
    if (best == k) {
      best = d;
      continue;
    }
    // deadline(d) < deadline(best), cross-multiplied.
    if ((m * static_cast<Int>(drawn[d]) + m - 1) * static_cast<Int>(units_[best]) <
        (m * static_cast<Int>(drawn[best]) + m - 1) * static_cast<Int>(units_[d]))
      best = d;
  }
  // The shortfalls w_d * t - s_d sum to 1, so the largest is at least 1/k >= 1/m.
  if (best == k) fail("blend: no dataset is behind its share (draw counts {} are inconsistent)", fmt::join(drawn, ","));
  ++drawn[best];
  return best;
}

}  // namespace exatrain
