// The per-row math of the fused softmax cross-entropy, compiled for host and device: the fused
// CPU kernel (kernels/cross_entropy_cpu.cpp), the CUDA kernel (kernels/cross_entropy_kernel.cuh)
// and that kernel's body under the CPU emulation all call these, so they round alike.
//
// A row of logits z (one token, this rank's slice of the vocabulary) is reduced to a pair
// (m, s): its max and the sum of exp(z - m). Pairs of two parts of a row combine exactly
// (online softmax):  m = max(m1, m2),  s = s1 exp(m1 - m) + s2 exp(m2 - m).
// With the row's global pair (M, S) the loss is log S - (z_target - M) and the gradient of the
// logits (softmax - onehot(target)) g with the softmax exp((z - M) - log S): M and log S are kept
// apart, never as M + log S, so logits of 1e4 keep their digits.
//
// Logits and results are fp32 (or bf16); the exponentials and their sums are double. In fp32
// the argument's own rounding was off by up to 6e-8 |z - M| relative (6e-7 at -10) and the sums
// over 102,400 columns by 3e-7: small, but AdamW's first steps turn the sign of near-zero
// gradients into whole updates, and that moved parity_state's weights against torch past its
// bound (1.06e-4 per tensor, bound 1e-4; 6.5e-5 in double, the old ATen loss 6.9e-5).
#pragma once

#include <cstdint>

#include "kernels/simt.h"

namespace exatrain::kernels {

// The target id of a token that counts for nothing (torch's ignore_index default).
inline constexpr int64_t kIgnoreTarget = -100;

// Below every finite float: the max of an empty part is -inf, and -inf - -inf would be NaN.
inline constexpr float kXentLowest = -3.402823466e38f;

// exp(x) in double for x <= 0: 2^n e^f with n = round(x log2 e), f = x - n ln 2, e^f by its
// degree-10 Taylor series (relative 5e-13 for |f| <= ln2 / 2): rounded once to fp32, within
// about half an ulp. Arguments below -110 (-inf, a masked logit, included) count as -110: e^-110
// is 0 in fp32 and adds nothing measurable to a sum. Plain arithmetic, so CPU loops vectorize
// without -ffast-math (cross_entropy_cpu.cpp is built with -fno-trapping-math, which lets GCC
// turn the clamp into a vector select), and the GPU computes the same bits as the emulation.
SIMT_HD double xent_exp(double x) {
  const double xc = x < -110.0 ? -110.0 : x;
  const double r = xc * 1.4426950408889634 + 6755399441055744.0;  // 1.5 * 2^52: rounds to an integer
  int64_t n;
  std::memcpy(&n, &r, sizeof n);
  n -= 0x4338000000000000LL;
  const double f = xc - (r - 6755399441055744.0) * 0.6931471805599453;
  double p = 1.0 / 3628800;
  p = p * f + 1.0 / 362880;
  p = p * f + 1.0 / 40320;
  p = p * f + 1.0 / 5040;
  p = p * f + 1.0 / 720;
  p = p * f + 1.0 / 120;
  p = p * f + 1.0 / 24;
  p = p * f + 1.0 / 6;
  p = p * f + 0.5;
  p = p * f + 1.0;
  p = p * f + 1.0;
  const int64_t bits = (n + 1023) << 52;
  double two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return p * two_n;
}

// exp((z - max) - offset) for a logit z of a row whose max is `max` (offset: 0 for the sums,
// log S for the probabilities); z - max is exact in double.
SIMT_HD double xent_exp_from(float z, float max, double offset) {
  return xent_exp((static_cast<double>(z) - max) - offset);
}

// Logits and their gradients as stored: fp32, or bf16 bits (widened exactly; gradients rounded
// once, to nearest even, as the reference's cast of its fp32 gradient rounds).
SIMT_HD float xent_load(const float* p, int64_t i) { return p[i]; }
SIMT_HD float xent_load(const uint16_t* p, int64_t i) { return simt::bf16_to_float(p[i]); }
SIMT_HD void xent_store(float* p, int64_t i, float v) { p[i] = v; }
SIMT_HD void xent_store(uint16_t* p, int64_t i, float v) { p[i] = simt::bf16_bits(v); }

// Folds one logit into a running pair with one exp: a new max rescales the sum (a -inf logit,
// a masked one, adds nothing).
SIMT_HD void xent_push(float& m, double& s, float z) {
  if (z > m) {
    s = m < kXentLowest ? 1.0 : s * xent_exp_from(m, z, 0.0) + 1.0;
    m = z;
  } else if (z >= kXentLowest) {
    s += xent_exp_from(z, m, 0.0);
  }
}

// Combines pair (m2, s2) into (m, s). An empty part is (-inf, 0).
SIMT_HD void xent_merge(float& m, double& s, float m2, double s2) {
  if (m2 < kXentLowest) return;
  if (m < kXentLowest) {
    m = m2;
    s = s2;
    return;
  }
  const float top = m2 > m ? m2 : m;
  s = s * xent_exp_from(m, top, 0.0) + s2 * xent_exp_from(m2, top, 0.0);
  m = top;
}

// This slice's column of the target, or -1 when another rank holds it or the token is ignored.
SIMT_HD int64_t xent_local_target(int64_t target, int64_t vocab_start, int64_t cols) {
  const int64_t local = target - vocab_start;
  return target != kIgnoreTarget && local >= 0 && local < cols ? local : -1;
}

// d loss / d z_i for the row's global (max, log S), incoming gradient g of the row's loss.
SIMT_HD float xent_grad(float z, float max, float log_sum, bool is_target, float g) {
  const float p = static_cast<float>(xent_exp_from(z, max, log_sum));
  return (is_target ? p - 1.f : p) * g;
}

}  // namespace exatrain::kernels
