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
#pragma once

#include <cstdint>

#include "kernels/simt.h"

namespace exatrain::kernels {

// The target id of a token that counts for nothing (torch's ignore_index default).
inline constexpr int64_t kIgnoreTarget = -100;

// exp(x) for x <= 88 (arguments here are z - max <= 0): 2^n e^f with n = round(x log2 e) and
// f = x - n ln 2 in two steps (Cody and Waite: ln 2 split into a high part with few bits, whose
// product with n is exact, and a low part), |f| <= ln2 / 2, e^f by its degree-7 Taylor series:
// relative error about 1e-7 over the whole range (one-step reduction: 6e-8 |x|, 2e-6 at -35).
// Exactly 0 below -87 and for -inf. Plain arithmetic so CPU loops vectorize without
// -ffast-math, and the GPU computes the same bits as the emulation.
SIMT_HD float xent_exp(float x) {
  const float xc = x < -87.f ? -87.f : x;
  const float r = xc * 1.44269504088896341f + 12582912.f;  // 1.5 * 2^23: rounds to an integer in the mantissa
  int32_t n;
  std::memcpy(&n, &r, sizeof n);
  n -= 0x4B400000;
  const float nf = r - 12582912.f;
  float f = xc - nf * 0.693145751953125f;  // ln 2, high part (16 bits): exact product
  f = f - nf * 1.428606765330187e-06f;     // ln 2, low part
  float p = 1.f / 5040.f;
  p = p * f + 1.f / 720.f;
  p = p * f + 1.f / 120.f;
  p = p * f + 1.f / 24.f;
  p = p * f + 1.f / 6.f;
  p = p * f + 0.5f;
  p = p * f + 1.f;
  p = p * f + 1.f;
  const int32_t bits = (n + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return x < -87.f ? 0.f : p * two_n;
}

// Logits and their gradients as stored: fp32, or bf16 bits (widened exactly; gradients rounded
// once, to nearest even, as the reference's cast of its fp32 gradient rounds).
SIMT_HD float xent_load(const float* p, int64_t i) { return p[i]; }
SIMT_HD float xent_load(const uint16_t* p, int64_t i) { return simt::bf16_to_float(p[i]); }
SIMT_HD void xent_store(float* p, int64_t i, float v) { p[i] = v; }
SIMT_HD void xent_store(uint16_t* p, int64_t i, float v) { p[i] = simt::bf16_bits(v); }

// Below every finite float: the max of an empty part is -inf, and -inf - -inf would be NaN.
inline constexpr float kXentLowest = -3.402823466e38f;

// Folds one logit into a running pair with one exp: a new max rescales the sum (a -inf logit,
// a masked one, adds nothing).
SIMT_HD void xent_push(float& m, float& s, float z) {
  if (z > m) {
    s = s * xent_exp(m - z) + 1.f;
    m = z;
  } else if (z >= kXentLowest) {
    s += xent_exp(z - m);
  }
}

// Combines pair (m2, s2) into (m, s). An empty part is (-inf, 0).
SIMT_HD void xent_merge(float& m, float& s, float m2, float s2) {
  if (m2 < kXentLowest) return;
  if (m < kXentLowest) {
    m = m2;
    s = s2;
    return;
  }
  const float top = m2 > m ? m2 : m;
  s = s * xent_exp(m - top) + s2 * xent_exp(m2 - top);
  m = top;
}

// This slice's column of the target, or -1 when another rank holds it or the token is ignored.
SIMT_HD int64_t xent_local_target(int64_t target, int64_t vocab_start, int64_t cols) {
  const int64_t local = target - vocab_start;
  return target != kIgnoreTarget && local >= 0 && local < cols ? local : -1;
}

// d loss / d z_i for the row's global (max, log S), incoming gradient g of the row's loss.
SIMT_HD float xent_grad(float z, float max, float log_sum, bool is_target, float g) {
  const float p = xent_exp((z - max) - log_sum);
  return (is_target ? p - 1.f : p) * g;
}

}  // namespace exatrain::kernels
