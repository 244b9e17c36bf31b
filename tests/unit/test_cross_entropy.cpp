// The fused cross-entropy (ops::cross_entropy, kernels/cross_entropy_cpu.cpp) against
// at::cross_entropy_loss in float64 on the same values: per-row losses and the logits' gradient
// through a weighted sum (the loss masks of training), odd vocabulary sizes, ignored targets,
// bf16 logits, logits large enough to overflow a naive exp, a slice of the vocabulary. The
// vocab-parallel combination across real ranks: tests/multirank/cross_entropy.sh.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "kernels/cross_entropy.h"
#include "kernels/ops.h"
#include "trainer/model/exaone4.h"

namespace exatrain {
namespace {

struct Result {
  at::Tensor loss, grad;  // [rows], [rows, vocab]
};

// Per-row losses and d(sum_i w_i loss_i)/dlogits of `impl` on `logits` (in their dtype); the
// reference runs at::cross_entropy_loss on float64 copies.
Result run(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& weights, ops::Impl impl) {
  at::AutoGradMode grad(true);
  at::Tensor x = logits.detach().requires_grad_(true);
  at::Tensor loss = impl == ops::Impl::Reference
                        ? at::cross_entropy_loss(x, targets, {}, at::Reduction::None, kernels::kIgnoreTarget)
                        : ops::cross_entropy(x, targets, impl);
  (loss * weights.to(loss.scalar_type())).sum().backward();
  return {loss.detach(), x.grad()};
}

// Largest difference relative to the largest reference value (at least 1).
double rel(const at::Tensor& got, const at::Tensor& want) {
  const double scale = std::max(1.0, want.abs().max().item<double>());
  return (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>() / scale;
}

struct Case {
  int64_t rows, vocab;
  double scale;  // logits ~ N(0, scale^2)
};

// Targets: random ids, the first and last column, and one ignored row when there are 4+ rows.
at::Tensor make_targets(int64_t rows, int64_t vocab, at::Generator& gen) {
  at::Tensor t = at::randint(vocab, {rows}, gen, at::kLong);
  t[0] = vocab - 1;
  if (rows > 1) t[1] = 0;
  if (rows > 3) t[3] = kernels::kIgnoreTarget;
  return t;
}

TEST(CrossEntropy, Fp32MatchesFloat64) {
  double worst_loss = 0, worst_grad = 0;
  for (const Case& c : {Case{5, 1, 1}, Case{7, 17, 3}, Case{6, 1023, 4}, Case{9, 1025, 4}, Case{4, 4099, 8},
                        Case{3, 102400 / 8 + 3, 5}, Case{64, 102400, 4}}) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.vocab);
    const at::Tensor z = at::randn({c.rows, c.vocab}, gen) * c.scale;
    const at::Tensor t = make_targets(c.rows, c.vocab, gen);
    const at::Tensor w = at::rand({c.rows}, gen) + 0.25;
    const Result got = run(z, t, w, ops::Impl::Cpu), want = run(z.to(at::kDouble), t, w, ops::Impl::Reference);
    EXPECT_EQ(got.loss.scalar_type(), at::kFloat);
    EXPECT_EQ(got.grad.scalar_type(), at::kFloat);
    const double el = rel(got.loss, want.loss), eg = rel(got.grad, want.grad);
    worst_loss = std::max(worst_loss, el);
    worst_grad = std::max(worst_grad, eg);
    // exps and sums in double, per-row results and the gradient rounded to fp32: measured
    // <= 7.8e-8 (loss) and 7.0e-8 (gradient, relative to its largest entry), bounds 3e-7
    EXPECT_LE(el, 3e-7) << c.rows << " x " << c.vocab;
    EXPECT_LE(eg, 3e-7) << c.rows << " x " << c.vocab;
    std::printf("  %ld x %ld: loss %.2e gradient %.2e\n", c.rows, c.vocab, el, eg);
  }
  std::printf("fp32: loss %.2e, gradient %.2e\n", worst_loss, worst_grad);
}

TEST(CrossEntropy, IgnoredRowsHaveNoLossAndNoGradient) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor z = at::randn({6, 301}, gen);
  at::Tensor t = make_targets(6, 301, gen);
  t[5] = kernels::kIgnoreTarget;
  const Result got = run(z, t, at::ones({6}), ops::Impl::Cpu);
  for (int64_t r : {3, 5}) {
    EXPECT_EQ(got.loss[r].item<float>(), 0.f);
    EXPECT_EQ(got.grad[r].abs().max().item<float>(), 0.f);
  }
  EXPECT_GT(got.loss[4].item<float>(), 0.f);
  // The model's loss: the mean over the counted tokens, as at::cross_entropy_loss's mean.
  const at::Tensor z3 = z.view({2, 3, 301}), t3 = t.view({2, 3});
  const double fused = token_cross_entropy(z3, t3, {}, KernelChoice::Auto).item<double>();
  const double reference = token_cross_entropy(z3.to(at::kDouble), t3, {}, KernelChoice::Reference).item<double>();
  EXPECT_NEAR(fused, reference, 1e-6 * std::abs(reference));
}

TEST(CrossEntropy, WeightedTokenLossEqualsTheReference) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const at::Tensor z = at::randn({2, 5, 211}, gen) * 2, t = at::randint(211, {2, 5}, gen, at::kLong);
  const at::Tensor mask = at::tensor({1, 1, 0, 0, 1, 0, 0, 1, 1, 0}, at::kFloat).view({2, 5});
  auto loss_and_grad = [&](const at::Tensor& logits, KernelChoice k) {
    at::AutoGradMode grad(true);
    at::Tensor x = logits.detach().requires_grad_(true);
    at::Tensor loss = token_cross_entropy(x, t, mask / mask.sum(), k);
    loss.backward();
    return std::make_pair(loss.item<double>(), x.grad());
  };
  const auto [fused, fused_grad] = loss_and_grad(z, KernelChoice::Auto);
  const auto [reference, reference_grad] = loss_and_grad(z.to(at::kDouble), KernelChoice::Reference);
  std::printf("weighted token loss: %.2e relative, gradient %.2e\n", std::abs(fused - reference) / reference,
              rel(fused_grad, reference_grad));
  // measured: the same loss to double's printing, gradient 3.7e-9 of its largest entry
  EXPECT_NEAR(fused, reference, 1e-6 * reference);
  EXPECT_LE(rel(fused_grad, reference_grad), 1e-7);
  // Masked tokens get no gradient at all.
  EXPECT_EQ(fused_grad.view({10, 211})[2].abs().max().item<float>(), 0.f);
}

TEST(CrossEntropy, Bf16LogitsMatchFloat64) {
  double worst_loss = 0, worst_grad = 0;
  for (const Case& c : {Case{7, 17, 3}, Case{6, 1025, 4}, Case{4, 8191, 6}}) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.vocab + 1);
    const at::Tensor z = (at::randn({c.rows, c.vocab}, gen) * c.scale).to(at::kBFloat16);
    const at::Tensor t = make_targets(c.rows, c.vocab, gen);
    const at::Tensor w = at::rand({c.rows}, gen) + 0.25;
    const Result got = run(z, t, w, ops::Impl::Cpu), want = run(z.to(at::kDouble), t, w, ops::Impl::Reference);
    EXPECT_EQ(got.grad.scalar_type(), at::kBFloat16);  // no fp32 copy handed back
    // The reference as the model ran it before (fp32 logits, gradient cast to bf16): our bf16
    // gradient is the same rounding of nearly the same fp32 value.
    const Result aten = run(z, t, w, ops::Impl::Reference);
    const double el = rel(got.loss, want.loss), eg = rel(got.grad, want.grad);
    worst_loss = std::max(worst_loss, el);
    worst_grad = std::max(worst_grad, eg);
    // loss in fp32 from exact bf16 values: measured <= 3.1e-8, bound 2e-6 (as fp32). The
    // gradient is rounded to bf16 once: at most half an ulp, 2^-8 of a value in [1, 2) (the
    // weights reach 1.25): measured 3.0e-3 of the largest entry, bound 2^-8 + 1e-6; the ATen
    // reference's own bf16 gradient is as far, and the two differ by at most one ulp where their
    // fp32 values straddle a rounding boundary (measured 2^-8; bound one ulp at 1.25, 2^-7)
    EXPECT_LE(el, 2e-6) << c.rows << " x " << c.vocab;
    EXPECT_LE(eg, 0.00390625 + 1e-6) << c.rows << " x " << c.vocab;
    EXPECT_LE(rel(aten.grad, want.grad), 0.00390625 + 1e-6);
    EXPECT_LE(rel(got.grad, aten.grad), 0.0078125 + 1e-6);
  }
  std::printf("bf16: loss %.2e, gradient %.2e\n", worst_loss, worst_grad);
}

TEST(CrossEntropy, LargeLogitsDoNotOverflow) {
  // exp(z) overflows fp32 above 88; these rows sit at +-3e4 with spreads of 1e3, one row has a
  // single huge logit (softmax exactly one-hot in fp32), one row is constant.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  at::Tensor z = at::randn({5, 2049}, gen) * 1000;
  z[0] += 3e4;
  z[1] -= 3e4;
  z[2].fill_(0.f);
  z[2][100] = 1e30f;
  z[3].fill_(7.5e3f);
  const at::Tensor t = at::tensor(std::vector<int64_t>{5, 2048, 100, 0, 77}, at::kLong);
  const at::Tensor w = at::ones({5});
  const Result got = run(z, t, w, ops::Impl::Cpu), want = run(z.to(at::kDouble), t, w, ops::Impl::Reference);
  EXPECT_TRUE(at::isfinite(got.loss).all().item<bool>());
  EXPECT_TRUE(at::isfinite(got.grad).all().item<bool>());
  // per row, relative to the row's own loss (up to 6e4 here)
  for (int64_t r = 0; r < 5; ++r)
    EXPECT_LE(std::abs(got.loss[r].item<double>() - want.loss[r].item<double>()),
              2e-6 * std::max(1.0, std::abs(want.loss[r].item<double>())))
        << "row " << r;
  std::printf("large logits: gradient %.2e\n", rel(got.grad, want.grad));
  EXPECT_LE(rel(got.grad, want.grad), 1e-7);  // measured 1.2e-10
  EXPECT_NEAR(got.loss[3].item<double>(), std::log(2049.0), 1e-5);  // constant row: log V
}

TEST(CrossEntropy, SliceOfTheVocabularyOnOneRank) {
  // One "rank" of three holding columns [700, 1400) of 2,100: the forward of a single slice with
  // no other ranks is the cross-entropy over that slice alone, targets outside it add nothing
  // (their rows' loss is log S + max), and the gradient has no -1 for them.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(6);
  const at::Tensor z = at::randn({4, 700}, gen);
  const at::Tensor t = at::tensor(std::vector<int64_t>{700, 1399, 5, 2000}, at::kLong);
  at::Tensor x = z.detach().requires_grad_(true);
  at::AutoGradMode grad(true);
  const at::Tensor fused = ops::cross_entropy(x, t, ops::Impl::Cpu, /*vocab_start=*/700);
  fused.sum().backward();
  const at::Tensor lse = at::logsumexp(z.to(at::kDouble), 1);
  const at::Tensor zd = z.to(at::kDouble);
  const std::vector<double> want{(lse[0] - zd[0][0]).item<double>(), (lse[1] - zd[1][699]).item<double>(),
                                 lse[2].item<double>(), lse[3].item<double>()};
  for (int64_t r = 0; r < 4; ++r) EXPECT_NEAR(fused[r].item<double>(), want[static_cast<size_t>(r)], 1e-6) << r;
  at::Tensor soft = at::softmax(zd, 1);
  soft[0][0] -= 1;
  soft[1][699] -= 1;
  std::printf("slice: gradient %.2e\n", rel(x.grad(), soft));
  EXPECT_LE(rel(x.grad(), soft), 1e-7);  // measured 2.7e-8
}

TEST(CrossEntropy, ResolveAndChecks) {
  EXPECT_EQ(ops::resolve_cross_entropy_impl(KernelChoice::Auto, at::kCPU), ops::Impl::Cpu);
  EXPECT_EQ(ops::resolve_cross_entropy_impl(KernelChoice::Reference, at::kCPU), ops::Impl::Reference);
  EXPECT_THROW(ops::cross_entropy(at::zeros({2, 3}), at::zeros({3}, at::kLong), ops::Impl::Cpu), std::exception);
  // A target outside the vocabulary is an error on one rank, as in at::cross_entropy_loss.
  EXPECT_THROW(ops::cross_entropy(at::zeros({2, 3}), at::tensor(std::vector<int64_t>{0, 3}), ops::Impl::Cpu),
               std::exception);
  EXPECT_THROW(ops::cross_entropy(at::zeros({2, 3}), at::tensor(std::vector<int64_t>{-1, 0}), ops::Impl::Cpu),
               std::exception);
}

}  // namespace
}  // namespace exatrain
