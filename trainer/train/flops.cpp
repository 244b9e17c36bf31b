#include "trainer/train/flops.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>


namespace exatrain {

double measure_gemm_peak_flops(double seconds, int64_t n) {
  at::NoGradGuard no_grad;
  at::Tensor a = at::randn({n, n}), b = at::randn({n, n}), c = at::empty({n, n});
  at::mm_out(c, a, b);  // warm-up
  double best = 0;
  const auto start = std::chrono::steady_clock::now();
  do {
    const auto t0 = std::chrono::steady_clock::now();
    at::mm_out(c, a, b);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * static_cast<double>(n * n * n) / dt);
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds);
  return best;
}

}  // namespace exatrain
