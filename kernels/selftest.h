// `exatrain selftest --kernels`: every operator implementation this machine can run, against
// the reference on a few shapes. Each row: max error relative to the largest reference value,
// the bound it must stay within, and the time per call of the implementation and the reference.
#pragma once

#include <string>
#include <vector>

namespace exatrain::ops {

struct SelftestRow {
  std::string op, impl, shape, dtype;
  double max_error = 0, bound = 0;
  double impl_ms = 0, reference_ms = 0;
  bool passed() const { return max_error <= bound; }
};

std::vector<SelftestRow> run_kernel_selftest();

}  // namespace exatrain::ops
