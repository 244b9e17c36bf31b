// Which dataset each sample of the blended stream comes from, in exact proportions.
//
// Tijdeman's chairman-assignment algorithm (R. Tijdeman, "The chairman assignment problem",
// Discrete Mathematics 32, 1980): with k datasets of shares w_d and s_d(t) draws after t
// samples, sample t goes, among the datasets that are at least 1/(2k-2) behind their share
// (w_d * t - s_d(t-1) >= 1/(2k-2)), to the one whose deadline (s_d(t-1) + 1 - 1/(2k-2)) / w_d
// comes first; ties to the lower index. It guarantees, for every prefix of every length n,
//
//     |s_d(n) - w_d * n| <= 1 - 1/(2k-2)    (< 1: the best possible bound, for all d)
//
// where the simpler "most behind its share" rule (Megatron-LM's blending index) can drift past
// one sample. Everything runs in integer arithmetic on the weights rounded to multiples of
// 1e-9 of the largest, so every rank on every machine picks the same datasets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace exatrain {

class BlendSchedule {
 public:
  // Positive weights, any scale (0.7/0.3 and 7/3 are the same blend).
  explicit BlendSchedule(const std::vector<double>& weights);

  size_t datasets() const { return units_.size(); }
  // The integer weights the schedule runs on (for the loader's state fingerprint).
  const std::vector<uint64_t>& units() const { return units_; }
  // The dataset of the next sample, given how many each has drawn so far; `drawn` is updated.
  size_t next(std::vector<uint64_t>& drawn) const;

 private:
  std::vector<uint64_t> units_;
  uint64_t total_units_ = 0;
};

}  // namespace exatrain
