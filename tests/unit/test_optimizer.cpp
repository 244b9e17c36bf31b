// The AdamW kernel (kernels/adamw.h): the CPU kernel and the CUDA kernel body under the CPU
// emulation, against ATen's `_fused_adamw_` (the judge: the kernel torch.optim.AdamW(fused=True)
// runs), over several steps, runs of odd lengths with and without weight decay, and the bf16
// copy of the weights against ATen's own fp32 -> bf16 conversion.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/ops.h"

namespace exatrain {
namespace {

struct Buffers {
  at::Tensor p, m, v;
};

// Runs of odd lengths (not multiples of any vector width or of the emulated block), alternating
// weight decay, laid end to end as the optimizer's owned slice is.
std::vector<kernels::AdamWRun> test_runs(double wd) {
  return {{0, 1000, wd}, {1000, 37, 0.0}, {1037, 1301, wd}, {2338, 3, 0.0}, {2341, 700, wd}};
}

// `steps` AdamW steps with ATen's fused kernel, one tensor list per weight decay.
Buffers reference(const at::Tensor& p0, const std::vector<at::Tensor>& grads, const std::vector<kernels::AdamWRun>& runs,
                  double lr, double b1, double b2, double eps) {
  Buffers r{p0.clone(), at::zeros_like(p0), at::zeros_like(p0)};
  std::vector<at::Tensor> steps;
  for (size_t k = 0; k < runs.size(); ++k) steps.push_back(at::zeros({}, at::kFloat));
  for (const at::Tensor& g : grads) {
    for (size_t k = 0; k < runs.size(); ++k) {
      auto view = [&](const at::Tensor& t) { return t.narrow(0, runs[k].begin, runs[k].length); };
      std::vector<at::Tensor> s{steps[k]};
      at::_foreach_add_(s, 1);
      at::_fused_adamw_({view(r.p)}, {view(g)}, {view(r.m)}, {view(r.v)}, {}, s, lr, b1, b2, runs[k].weight_decay, eps,
                        false, false);
    }
  }
  return r;
}

double max_rel(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

TEST(AdamW, CpuKernelAndEmulatedCudaBodyEqualATen) {
  at::manual_seed(7);
  const double lr = 1e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8;
  const std::vector<kernels::AdamWRun> runs = test_runs(0.1);
  const int64_t n = 3041;
  const at::Tensor p0 = at::randn({n});
  std::vector<at::Tensor> grads;
  for (int t = 0; t < 5; ++t) grads.push_back(at::randn({n}) * (t + 1) * 1e-2);
  const Buffers want = reference(p0, grads, runs, lr, b1, b2, eps);

  for (const bool emulated : {false, true}) {
    Buffers got{p0.clone(), at::zeros_like(p0), at::zeros_like(p0)};
    at::Tensor copy = at::empty({n}, at::kBFloat16);
    auto* bits = reinterpret_cast<uint16_t*>(copy.mutable_data_ptr<at::BFloat16>());
    std::vector<kernels::AdamWRun> with_out = runs;  // each run writes its bf16 weights into `copy`
    for (auto& r : with_out) r.out = bits + r.begin;
    for (size_t t = 0; t < grads.size(); ++t) {
      const kernels::AdamWStep s = kernels::AdamWStep::of(lr, b1, b2, eps, static_cast<int64_t>(t) + 1);
      float *p = got.p.mutable_data_ptr<float>(), *m = got.m.mutable_data_ptr<float>(), *v = got.v.mutable_data_ptr<float>();
      const float* g = grads[t].const_data_ptr<float>();
      if (emulated) {
        kernels::adamw_step_emulated(with_out.data(), static_cast<int64_t>(runs.size()), p, g, m, v, s);
      } else {
        // Two ranges that split a run, as at::parallel_for may.
        kernels::adamw_step_cpu(with_out.data(), static_cast<int64_t>(runs.size()), p, g, m, v, s, 0, 1500);
        kernels::adamw_step_cpu(with_out.data(), static_cast<int64_t>(runs.size()), p, g, m, v, s, 1500, n);
      }
    }
    // Measured (2026-11-30), relative to the largest element: weights 1.9e-7 for the CPU kernel
    // (its AVX-512 copy contracts multiply-adds into FMAs where ATen does not, and the other way
    // round for the lerp) and 1.9e-9 for the emulated body; moments 2.6e-8 and 6.9e-8. A wrong
    // bias correction, a missed weight decay or a swapped run moves the weights by 1e-4 or more.
    SCOPED_TRACE(emulated ? "emulated CUDA body" : "CPU kernel");
    EXPECT_LT(max_rel(got.p, want.p), 4e-7);
    EXPECT_LT(max_rel(got.m, want.m), 2e-7);
    EXPECT_LT(max_rel(got.v, want.v), 2e-7);
    // Weight decay applied to its runs only: the decayed elements moved further than without.
    EXPECT_GT((got.p - p0).abs().max().item<double>(), 1e-3);
    // The bf16 copy is the updated weights rounded to nearest even, bit for bit.
    EXPECT_TRUE(at::equal(copy, got.p.to(at::kBFloat16)));
    std::printf("%s: weights %.2e, exp_avg %.2e, exp_avg_sq %.2e relative to ATen\n",
                emulated ? "emulated CUDA" : "CPU", max_rel(got.p, want.p), max_rel(got.m, want.m),
                max_rel(got.v, want.v));
  }
}

TEST(AdamW, WeightDecayOnlyWhereTheRunSaysSo) {
  // Zero gradients: Adam's update is 0, so only decoupled weight decay moves the weights, by
  // exactly p * lr * wd on decayed runs and not at all elsewhere.
  const int64_t n = 3041;
  const std::vector<kernels::AdamWRun> runs = test_runs(0.5);
  at::Tensor p = at::ones({n}), g = at::zeros({n}), m = at::zeros({n}), v = at::zeros({n});
  const kernels::AdamWStep s = kernels::AdamWStep::of(0.1, 0.9, 0.95, 1e-8, 1);
  kernels::adamw_step_cpu(runs.data(), static_cast<int64_t>(runs.size()), p.mutable_data_ptr<float>(),
                          g.const_data_ptr<float>(), m.mutable_data_ptr<float>(), v.mutable_data_ptr<float>(), s, 0,
                          n);
  for (const auto& r : runs) {
    const at::Tensor part = p.narrow(0, r.begin, r.length);
    EXPECT_TRUE(at::allclose(part, at::full_like(part, static_cast<float>(1.0 - 0.1 * r.weight_decay)), 0, 0)) << r.begin;
  }
}


// The optimizer's check before it trusts the CUDA AdamW kernel on a device
// (ops::adamw_kernel_check, run by ops::adamw_cuda_trusted on a GPU): here the comparison itself,
// on the CUDA kernel's body under the CPU emulation (passes), and on kernels with a fault it must
// catch: weight decay skipped on one run, a bf16 copy left stale.
TEST(AdamW, CudaCheckPassesTheEmulatedBodyAndCatchesFaults) {
  const ops::AdamWCheck good = ops::adamw_kernel_check(at::kCPU, kernels::adamw_step_emulated);
  std::printf("AdamW check, emulated CUDA body: weights %.2e, moments %.2e, bf16 copy %s\n", good.weights,
              good.moments, good.copy_exact ? "exact" : "wrong");
  EXPECT_TRUE(good.passed());
  EXPECT_LT(good.weights, 1e-7);  // measured 7.8e-9, moments 6.8e-8 (bounds 4e-7, 2e-7)

  const ops::AdamWCheck no_decay = ops::adamw_kernel_check(
      at::kCPU, [](const kernels::AdamWRun* runs, int64_t count, float* p, const float* g, float* m, float* v,
                   const kernels::AdamWStep& s) {
        std::vector<kernels::AdamWRun> changed(runs, runs + count);
        changed[2].weight_decay = 0;  // the run of 1,301 elements loses its decay
        kernels::adamw_step_emulated(changed.data(), count, p, g, m, v, s);
      });
  std::printf("AdamW check, a run without its weight decay: weights %.2e\n", no_decay.weights);
  EXPECT_FALSE(no_decay.passed());
  EXPECT_GT(no_decay.weights, 1e-5);
  EXPECT_TRUE(no_decay.copy_exact);

  const ops::AdamWCheck stale_copy = ops::adamw_kernel_check(
      at::kCPU, [](const kernels::AdamWRun* runs, int64_t count, float* p, const float* g, float* m, float* v,
                   const kernels::AdamWStep& s) {
        std::vector<kernels::AdamWRun> changed(runs, runs + count);
        changed[4].out = nullptr;  // the last run writes no bf16 weights
        kernels::adamw_step_emulated(changed.data(), count, p, g, m, v, s);
      });
  EXPECT_FALSE(stale_copy.passed());
  EXPECT_FALSE(stale_copy.copy_exact);
  EXPECT_LT(stale_copy.weights, 1e-7);
}

// The fallback the optimizer takes on a device whose CUDA kernel failed its check
// (ops::adamw_step_reference: _fused_adamw_ per weight decay, then the bf16 copy), against the
// CPU kernel over 5 steps: weights and moments to FMA contraction, the bf16 copies bit for bit
// where the weights are equal.
TEST(AdamW, ReferenceFallbackMatchesKernel) {
  at::manual_seed(9);
  const int64_t n = 3041;
  const double lr = 1e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8;
  const at::Tensor p0 = at::randn({n});
  Buffers k{p0.clone(), at::zeros_like(p0), at::zeros_like(p0)}, r{p0.clone(), at::zeros_like(p0), at::zeros_like(p0)};
  at::Tensor kcopy = at::empty({n}, at::kBFloat16), rcopy = at::empty({n}, at::kBFloat16);
  std::vector<kernels::AdamWRun> kruns = test_runs(0.1), rruns = test_runs(0.1);
  for (auto& run : kruns) run.out = reinterpret_cast<uint16_t*>(kcopy.mutable_data_ptr<at::BFloat16>()) + run.begin;
  for (auto& run : rruns) run.out = reinterpret_cast<uint16_t*>(rcopy.mutable_data_ptr<at::BFloat16>()) + run.begin;
  for (int64_t t = 1; t <= 5; ++t) {
    const at::Tensor g = at::randn({n}) * 1e-2;
    kernels::adamw_step_cpu(kruns.data(), static_cast<int64_t>(kruns.size()), k.p.mutable_data_ptr<float>(),
                            g.const_data_ptr<float>(), k.m.mutable_data_ptr<float>(), k.v.mutable_data_ptr<float>(),
                            kernels::AdamWStep::of(lr, b1, b2, eps, t), 0, n);
    ops::adamw_step_reference(rruns.data(), static_cast<int64_t>(rruns.size()), r.p, g, r.m, r.v, lr, b1, b2, eps, t);
  }
  EXPECT_LT(max_rel(k.p, r.p), 4e-7);
  EXPECT_LT(max_rel(k.m, r.m), 2e-7);
  EXPECT_LT(max_rel(k.v, r.v), 2e-7);
  EXPECT_GT((r.p - p0).abs().max().item<double>(), 1e-3);
  EXPECT_TRUE(at::equal(rcopy, r.p.to(at::kBFloat16)));
}

}  // namespace
}  // namespace exatrain
