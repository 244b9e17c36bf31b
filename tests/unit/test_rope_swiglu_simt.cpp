// The RoPE and SwiGLU CUDA kernel bodies (kernels/rope_swiglu.cuh) under the SIMT emulation,
// torch-free, against the formulas written out in double precision on the same inputs. Built
// into unit_core and, with ThreadSanitizer, into unit_simt_tsan; tests/bench/kernel_coverage.sh
// measures the line coverage of rope_swiglu.cuh by these tests. (unit_model's test_rope_swiglu.cpp
// judges the same bodies against the ATen reference, and the fused CPU kernel bit for bit.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/rope_swiglu.h"
#include "kernels/simt.h"

namespace exatrain::kernels {
namespace {

// Values as the element type holds them: bf16 bits (and their float values) or floats.
struct Values {
  std::vector<float> f;
  std::vector<uint16_t> b;
  const void* data(bool bf16) const { return bf16 ? static_cast<const void*>(b.data()) : f.data(); }
};
Values random_values(size_t n, bool bf16, std::mt19937& gen, float scale = 1.f) {
  std::normal_distribution<float> normal;
  Values v;
  v.f.resize(n);
  v.b.resize(n);
  for (size_t i = 0; i < n; ++i) {
    v.b[i] = simt::bf16_bits(normal(gen) * scale);
    v.f[i] = bf16 ? simt::bf16_to_float(v.b[i]) : normal(gen) * scale;
  }
  return v;
}
std::vector<double> output_values(const std::vector<float>& f, const std::vector<uint16_t>& b, bool bf16) {
  std::vector<double> out(f.size());
  for (size_t i = 0; i < f.size(); ++i) out[i] = bf16 ? simt::bf16_to_float(b[i]) : f[i];
  return out;
}
double relative_error(const std::vector<double>& got, const std::vector<double>& want) {
  double err = 0, top = 1e-30;
  for (size_t i = 0; i < got.size(); ++i) {
    err = std::max(err, std::abs(got[i] - want[i]));
    top = std::max(top, std::abs(want[i]));
  }
  return err / top;
}

// RoPE, forward and backward, on 2 x 3 x 37 x 22 (2,442 pairs: three blocks, the last partial)
// with a table per batch row, x in the [B, T, H, D] layout seen as [B, H, T, D].
TEST(RopeSwigluSimt, RopeMatchesFormula) {
  const int64_t B = 2, H = 3, T = 37, D = 22, half = D / 2;
  for (bool bf16 : {false, true}) {
    std::mt19937 gen(11);
    const Values x = random_values(static_cast<size_t>(B * T * H * D), bf16, gen);
    std::vector<float> cf(static_cast<size_t>(B * T * D)), sf(cf.size());
    std::vector<uint16_t> cb(cf.size()), sb(cf.size());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < D; ++i) {
          const double frequency = std::pow(10000.0, -static_cast<double>(i % half) / half);
          const double angle = static_cast<double>(t + 5 * b) * frequency;
          const size_t k = static_cast<size_t>((b * T + t) * D + i);
          cb[k] = simt::bf16_bits(static_cast<float>(std::cos(angle)));
          sb[k] = simt::bf16_bits(static_cast<float>(std::sin(angle)));
          cf[k] = bf16 ? simt::bf16_to_float(cb[k]) : static_cast<float>(std::cos(angle));
          sf[k] = bf16 ? simt::bf16_to_float(sb[k]) : static_cast<float>(std::sin(angle));
        }
    for (bool backward : {false, true}) {
      std::vector<float> yf(x.f.size());
      std::vector<uint16_t> yb(x.f.size());
      RopeParams p{};
      p.x = x.data(bf16);
      p.y = bf16 ? static_cast<void*>(yb.data()) : yf.data();
      p.cos = bf16 ? static_cast<const void*>(cb.data()) : cf.data();
      p.sin = bf16 ? static_cast<const void*>(sb.data()) : sf.data();
      p.batch = B;
      p.heads = H;
      p.seq = T;
      p.head_dim = D;
      p.x_stride[0] = T * H * D;  // [B, T, H, D] memory
      p.x_stride[1] = D;
      p.x_stride[2] = H * D;
      p.y_stride[0] = H * T * D;  // [B, H, T, D] memory
      p.y_stride[1] = T * D;
      p.y_stride[2] = D;
      p.table_stride_b = T * D;
      p.bf16 = bf16;
      rope_emulated(p, backward);
      std::vector<double> want(x.f.size());
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < half; ++i) {
              const auto xi = [&](int64_t d) {
                return static_cast<double>(x.f[static_cast<size_t>(((b * T + t) * H + h) * D + d)]);
              };
              const auto at = [&](const std::vector<float>& v, int64_t d) {
                return static_cast<double>(v[static_cast<size_t>((b * T + t) * D + d)]);
              };
              double* y = want.data() + ((b * H + h) * T + t) * D;
              if (!backward) {
                y[i] = xi(i) * at(cf, i) - xi(i + half) * at(sf, i);
                y[i + half] = xi(i + half) * at(cf, i + half) + xi(i) * at(sf, i + half);
              } else {  // x is the output's gradient: the transposed rotation
                y[i] = xi(i) * at(cf, i) + xi(i + half) * at(sf, i + half);
                y[i + half] = xi(i + half) * at(cf, i + half) - xi(i) * at(sf, i);
              }
            }
      // fp32: two products and a sum, measured 6.8e-8; bf16: the two products and the result
      // rounded to bf16 (2^-9 each), measured 4.2e-3
      EXPECT_LT(relative_error(output_values(yf, yb, bf16), want), bf16 ? 1e-2 : 5e-7)
          << "bf16 " << bf16 << " backward " << backward;
      std::printf("rope emulated (bf16 %d, backward %d) against double: %.2e\n", bf16, backward,
                  relative_error(output_values(yf, yb, bf16), want));
    }
  }
}

// SwiGLU, forward and backward, over 1,500 elements (two blocks), gate values up to +-12 and a
// few at the ends of silu's range.
TEST(RopeSwigluSimt, SwigluMatchesFormula) {
  const size_t n = 1500;
  for (bool bf16 : {false, true}) {
    std::mt19937 gen(12);
    Values gate = random_values(n, bf16, gen, 4.f);
    const float ends[] = {0.f, -0.f, 90.f, -90.f, 1e4f, -1e4f, -20.f};
    for (size_t i = 0; i < 7; ++i) {
      gate.b[i * 101] = simt::bf16_bits(ends[i]);
      gate.f[i * 101] = bf16 ? simt::bf16_to_float(gate.b[i * 101]) : ends[i];
    }
    const Values up = random_values(n, bf16, gen), dy = random_values(n, bf16, gen);
    std::vector<float> of(n), dgf(n), duf(n);
    std::vector<uint16_t> ob(n), dgb(n), dub(n);
    auto out = [&](std::vector<float>& f, std::vector<uint16_t>& b) {
      return bf16 ? static_cast<void*>(b.data()) : static_cast<void*>(f.data());
    };
    const SwigluParams p{gate.data(bf16), up.data(bf16), out(of, ob), dy.data(bf16), out(dgf, dgb), out(duf, dub),
                         static_cast<int64_t>(n), bf16};
    swiglu_emulated(p, false);
    swiglu_emulated(p, true);
    std::vector<double> want_y(n), want_dg(n), want_du(n);
    for (size_t i = 0; i < n; ++i) {
      const double g = gate.f[i], u = up.f[i], d = dy.f[i];
      const double sig = 1 / (1 + std::exp(-g)), silu = g * sig;
      want_y[i] = silu * u;
      want_du[i] = d * silu;
      want_dg[i] = d * u * sig * (1 + g * (1 - sig));
    }
    // fp32: exp within about an ulp, a division, a product: measured 2.0e-7 (dgate; of the
    // largest value); bf16: silu, the product and the result rounded to bf16, measured 5.0e-3
    const double bound = bf16 ? 1e-2 : 5e-7;
    EXPECT_LT(relative_error(output_values(of, ob, bf16), want_y), bound) << "bf16 " << bf16;
    EXPECT_LT(relative_error(output_values(dgf, dgb, bf16), want_dg), bound) << "bf16 " << bf16;
    EXPECT_LT(relative_error(output_values(duf, dub, bf16), want_du), bound) << "bf16 " << bf16;
    for (double v : output_values(dgf, dgb, bf16)) ASSERT_FALSE(std::isnan(v));
    std::printf("swiglu emulated (bf16 %d) against double: y %.2e, dgate %.2e, dup %.2e\n", bf16,
                relative_error(output_values(of, ob, bf16), want_y),
                relative_error(output_values(dgf, dgb, bf16), want_dg),
                relative_error(output_values(duf, dub, bf16), want_du));
  }
}

}  // namespace
}  // namespace exatrain::kernels
