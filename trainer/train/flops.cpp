#include "trainer/train/flops.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

#include "trainer/model/param_spec.h"

namespace exatrain {

double train_flops_per_token(const ModelConfig& c, int64_t seq_len) {
  double matmul_params = 0;
  for (const auto& s : build_param_specs(c))
    if (s.kind == ParamKind::Linear || s.kind == ParamKind::LmHead) matmul_params += static_cast<double>(s.numel());
  if (c.tie_embeddings) matmul_params += static_cast<double>(c.vocab_size * c.hidden_size);  // lm_head reuses it
  double attention = 0;
  const auto kinds = c.layer_kinds();
  for (const auto kind : kinds) {
    const int64_t context =
        kind == LayerKind::Sliding ? std::min(seq_len, c.sliding_window) : seq_len;
    attention += 12.0 * static_cast<double>(c.num_heads * c.resolved_head_dim() * context);
  }
  return 6.0 * matmul_params + attention;
}

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
