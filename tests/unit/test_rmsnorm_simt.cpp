// The CUDA RMSNorm kernels (kernels/rmsnorm_kernel.cuh) under the SIMT emulation, torch-free,
// against the formulas written out in double precision on the same inputs, and against the fused
// CPU kernel (kernels/rmsnorm_cpu.cpp, the same row math). Built into unit_core and, with
// ThreadSanitizer, into unit_simt_tsan; tests/bench/kernel_coverage.sh measures the line
// coverage of rmsnorm_kernel.cuh and rmsnorm_row.h by these tests. (unit_model's Norm.* judges
// the CPU kernel against ATen; on a GPU, ops::rms_norm checks the CUDA kernel before using it.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/rmsnorm.h"
#include "kernels/simt.h"

namespace exatrain::kernels {
namespace {

// A tensor as the kernel sees it: fp32 values, or bf16 bits (and their float values).
struct Elements {
  std::vector<float> f;
  std::vector<uint16_t> b;
  bool bf16 = false;
  const void* data() const { return bf16 ? static_cast<const void*>(b.data()) : f.data(); }
  void* data() { return bf16 ? static_cast<void*>(b.data()) : f.data(); }
  double at(size_t i) const { return bf16 ? simt::bf16_to_float(b[i]) : f[i]; }
};
Elements make(size_t n, bool bf16) { return Elements{std::vector<float>(n), std::vector<uint16_t>(n), bf16}; }
Elements random_elements(size_t n, bool bf16, std::mt19937& gen, float scale) {
  std::normal_distribution<float> normal;
  Elements e = make(n, bf16);
  for (size_t i = 0; i < n; ++i) {
    e.b[i] = simt::bf16_bits(normal(gen) * scale);
    e.f[i] = bf16 ? simt::bf16_to_float(e.b[i]) : normal(gen) * scale;
  }
  return e;
}

struct NormCase {
  int64_t rows, cols;
  bool x_bf16, y_bf16;  // y_bf16: a bf16 weight too (the output bf16, as torch promotes)
};

struct NormResult {
  Elements y, dx;
  std::vector<float> inv, dweight;
};

NormResult run_emulated(const NormCase& c, const Elements& x, const std::vector<float>& w, const Elements& dy) {
  const size_t n = static_cast<size_t>(c.rows * c.cols);
  NormResult r{make(n, c.y_bf16), make(n, c.x_bf16), std::vector<float>(static_cast<size_t>(c.rows)),
               std::vector<float>(static_cast<size_t>(c.cols))};
  std::vector<float> partials(static_cast<size_t>(rmsnorm_partial_count(c.rows, c.cols)), std::nanf(""));
  RmsNormParams p;
  p.x = x.data();
  p.x_bf16 = c.x_bf16;
  p.y_bf16 = c.y_bf16;
  p.weight = w.data();
  p.rows = c.rows;
  p.cols = c.cols;
  p.eps = 1e-5f;
  p.y = r.y.data();
  p.inv = r.inv.data();
  rmsnorm_forward_emulated(p);
  p.dy = dy.data();
  p.dx = r.dx.data();
  p.dweight = r.dweight.data();
  p.partials = partials.data();  // NaN-filled: every entry the reduction reads must be written
  rmsnorm_backward_emulated(p);
  return r;
}

// Row shapes of each kernel: the per-head q/k norm (head_dim 64 and 128: a warp per row, rows
// not a multiple of the block's 8), odd narrow rows (1, 37 columns: lanes with nothing), and the
// block-per-row kernel at 129 (one warp), 1,031 (three warps, odd) and 5,120 (the 32B hidden
// size: 10 warps, every register column used); fp32, bf16 x with an fp32 weight (autocast) and
// bf16 x and weight (train.weights: bf16, bf16 output).
TEST(RmsNormSimt, EmulatedMatchesFloat64) {
  const std::vector<NormCase> cases = {
      {37, 64, false, false},  {21, 128, false, false}, {9, 37, false, false},   {3, 1, false, false},
      {4, 129, false, false},  {5, 1031, false, false}, {7, 5120, false, false}, {37, 64, true, false},
      {21, 128, true, true},   {5, 1031, true, false},  {7, 5120, true, true},
  };
  for (const NormCase& c : cases) {
    std::mt19937 gen(static_cast<unsigned>(c.rows * 1000 + c.cols));
    const size_t n = static_cast<size_t>(c.rows * c.cols);
    const Elements x = random_elements(n, c.x_bf16, gen, 3.f);
    std::vector<float> w(static_cast<size_t>(c.cols));
    std::uniform_real_distribution<float> uniform(0.5f, 1.5f);
    for (auto& v : w) v = c.y_bf16 ? simt::bf16_to_float(simt::bf16_bits(uniform(gen))) : uniform(gen);
    const Elements dy = random_elements(n, c.y_bf16, gen, 1.f);
    const NormResult got = run_emulated(c, x, w, dy);

    double y_err = 0, y_top = 0, dx_err = 0, term = 0, inv_err = 0, dw_err = 0, dw_top = 0;
    std::vector<double> dw(static_cast<size_t>(c.cols), 0.0);
    for (int64_t r = 0; r < c.rows; ++r) {
      double ss = 0, dot = 0;
      for (int64_t i = 0; i < c.cols; ++i) ss += x.at(static_cast<size_t>(r * c.cols + i)) * x.at(static_cast<size_t>(r * c.cols + i));
      const double s = 1.0 / std::sqrt(ss / static_cast<double>(c.cols) + 1e-5);
      inv_err = std::max(inv_err, std::abs(got.inv[static_cast<size_t>(r)] - s) / s);
      for (int64_t i = 0; i < c.cols; ++i) {
        const size_t k = static_cast<size_t>(r * c.cols + i);
        dot += dy.at(k) * w[static_cast<size_t>(i)] * x.at(k);
      }
      for (int64_t i = 0; i < c.cols; ++i) {
        const size_t k = static_cast<size_t>(r * c.cols + i);
        const double xv = x.at(k), g = dy.at(k), wi = w[static_cast<size_t>(i)];
        const double y = wi * xv * s;
        y_err = std::max(y_err, std::abs(got.y.at(k) - y));
        y_top = std::max(y_top, std::abs(y));
        // dx = s (dn - x s^2 mean(dn x)), dn = dy w
        const double dx = s * (g * wi - xv * s * s * dot / static_cast<double>(c.cols));
        dx_err = std::max(dx_err, std::abs(got.dx.at(k) - dx));
        term = std::max(term, std::abs(s * g * wi));
        dw[static_cast<size_t>(i)] += g * xv * s;
      }
    }
    for (int64_t i = 0; i < c.cols; ++i) {
      dw_err = std::max(dw_err, std::abs(got.dweight[static_cast<size_t>(i)] - dw[static_cast<size_t>(i)]));
      dw_top = std::max(dw_top, std::abs(dw[static_cast<size_t>(i)]));
    }
    const std::string what = std::to_string(c.rows) + " x " + std::to_string(c.cols) + (c.x_bf16 ? " bf16" : " fp32") +
                             (c.y_bf16 ? " (bf16 weight)" : "");
    std::printf("rmsnorm emulated %s: inv %.2e, y %.2e, dx %.2e, dweight %.2e\n", what.c_str(), inv_err,
                y_err / y_top, dx_err / term, dw_err / std::max(dw_top, 1e-30));
    // fp32 measured (2026-11-30) up to 1.14e-7 (y), 1.19e-7 (dx, of its first term), 1.32e-7
    // (dweight), 1.3e-7 (inv): a few fp32 roundings. bf16: n and dn rounded to bf16 (2^-9 each)
    // as transformers' casts round, the outputs rounded again: measured up to 5.3e-3 (dx).
    EXPECT_LE(inv_err, 2e-7) << what;
    const double bound = c.x_bf16 ? 8e-3 : 3e-7;
    EXPECT_LE(y_err / y_top, bound) << what;
    EXPECT_LE(dx_err / term, bound) << what;
    EXPECT_LE(dw_err / std::max(dw_top, 1e-30), bound) << what;
  }
}

// The emulated CUDA body and the fused CPU kernel share the per-element math: on rows whose sums
// both add exactly (small integers: no rounding in any order), y and 1/rms agree bit for bit, in
// fp32 and with bf16 rounding; dx to an fp32 rounding (the CPU kernel's vector copies contract
// x c into a multiply-add, the host-compiled emulation does not) or a bf16 one; dweight to the
// sum's rounding (CPU: double per thread, GPU: fp32 per row group, then double).
TEST(RmsNormSimt, EmulatedEqualsCpuKernelOnExactSums) {
  for (const NormCase& c : {NormCase{19, 128, false, false}, NormCase{3, 1031, false, false},
                            NormCase{19, 64, true, false}, NormCase{3, 1031, true, false}}) {
    const size_t n = static_cast<size_t>(c.rows * c.cols);
    Elements x = make(n, c.x_bf16), dy = make(n, false);
    std::vector<float> w(static_cast<size_t>(c.cols));
    for (size_t i = 0; i < n; ++i) {
      x.f[i] = static_cast<float>(static_cast<int>((i * 7919) % 17) - 8);
      x.b[i] = simt::bf16_bits(x.f[i]);
      dy.f[i] = static_cast<float>(static_cast<int>((i * 104729) % 13) - 6) / 8.f;
    }
    for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f + static_cast<float>(i % 5) / 4.f;
    const NormResult got = run_emulated(c, x, w, dy);
    std::vector<float> y(n), inv(static_cast<size_t>(c.rows)), dx(n), scratch(static_cast<size_t>(c.cols));
    std::vector<double> dw(static_cast<size_t>(c.cols), 0.0);
    rmsnorm_forward_rows(x.f.data(), w.data(), y.data(), inv.data(), c.cols, 1e-5f, c.x_bf16, 0, c.rows);
    rmsnorm_backward_rows(x.f.data(), w.data(), inv.data(), dy.f.data(), dx.data(), dw.data(), scratch.data(), c.cols,
                          c.x_bf16, 0, c.rows);
    const std::string what = std::to_string(c.cols) + (c.x_bf16 ? " bf16" : " fp32");
    for (size_t r = 0; r < inv.size(); ++r) ASSERT_EQ(got.inv[r], inv[r]) << what << " row " << r;
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(got.y.at(i), y[i]) << what << " y " << i;
      // dx = s (dn - x c): the dot product of dn and x in c is exact too (dn: multiples of 2^-5)
      const double tol = c.x_bf16 ? std::abs(dx[i]) / 256 + 1e-6 : 2.4e-7 * std::max(1.0, std::abs(double{dx[i]}));
      ASSERT_NEAR(got.dx.at(i), dx[i], tol) << what << " dx " << i;
    }
    for (size_t i = 0; i < dw.size(); ++i)
      ASSERT_NEAR(got.dweight[i], dw[i], 1e-6 * std::max(1.0, std::abs(dw[i]))) << what << " dweight " << i;
  }
}

// A row with nothing to normalise, and no rows: 1/rms = 1/sqrt(eps), zeros out; the backward of
// zero rows writes a zero dweight (every group's partials written, none left unset).
TEST(RmsNormSimt, ZeroRowAndNoRows) {
  const NormCase c{1, 200, false, false};
  const Elements x = make(200, false), dy = make(200, false);
  const std::vector<float> w(200, 1.f);
  const NormResult got = run_emulated(c, x, w, dy);
  EXPECT_FLOAT_EQ(got.inv[0], 1.f / std::sqrt(1e-5f));
  for (size_t i = 0; i < 200; ++i) ASSERT_EQ(got.y.f[i], 0.f);
  std::vector<float> dweight(64, 1.f), partials(static_cast<size_t>(rmsnorm_partial_count(0, 64)), std::nanf(""));
  RmsNormParams p;
  p.cols = 64;
  p.weight = w.data();
  p.dweight = dweight.data();
  p.partials = partials.data();
  rmsnorm_forward_emulated(p);  // no rows: nothing to do
  rmsnorm_backward_emulated(p);
  for (float v : dweight) ASSERT_EQ(v, 0.f);
}


// What the kernels do not take is refused, not run: rows wider than kRmsNormMaxCols (the
// operator sends those to the reference) and a bf16 output from an fp32 input (torch promotes
// that to fp32).
TEST(RmsNormSimt, RefusesWhatTheKernelsDoNotTake) {
  std::vector<float> x(kRmsNormMaxCols + 1, 1.f), y(x.size()), w(x.size(), 1.f), inv(1);
  RmsNormParams p;
  p.x = x.data();
  p.weight = w.data();
  p.y = y.data();
  p.inv = inv.data();
  p.rows = 1;
  p.cols = kRmsNormMaxCols + 1;
  EXPECT_THROW(rmsnorm_forward_emulated(p), std::invalid_argument);
  p.cols = 8;
  p.y_bf16 = true;
  EXPECT_THROW(rmsnorm_forward_emulated(p), std::invalid_argument);
}

}  // namespace
}  // namespace exatrain::kernels
