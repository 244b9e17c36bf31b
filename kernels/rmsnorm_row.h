// The per-element and per-row math of RMSNorm, compiled for host and device: the fused CPU kernel
// (kernels/rmsnorm_cpu.cpp) and the CUDA kernels (kernels/rmsnorm_kernel.cuh, also run under the
// CPU emulation) call these, so they round alike. Only the order in which a row's sums are added
// differs (8 vector lanes on the CPU, threads and warp shuffles on the GPU).
//
// transformers' Exaone4RMSNorm: weight * (x.float() * rsqrt(mean(x.float()^2) + eps)).to(x.dtype)
//   forward:  s = 1 / sqrt(mean(x^2) + eps) (kept for backward), n = x s, y = weight * n, with n
//             rounded to bf16 first when x is bf16 (`round`);
//   backward: dn = dy weight (rounded to bf16 likewise: the cast's gradient is cast too),
//             dx = s (dn - n mean(dn n)) = s (dn - x c) with c = s^2 mean(dn x),
//             dweight = sum over rows of dy n.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/simt.h"

namespace exatrain::kernels {

// float -> bf16 -> float, round to nearest even (as at::BFloat16's constructor); inf and NaN pass
// through. Written so GCC vectorises the CPU loops around it.
SIMT_HD float rms_round_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return f;  // inf, NaN
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

// 1 / rms of a row from its sum of squares.
SIMT_HD float rms_inverse(float sum_sq, int64_t cols, float eps) {
  return 1.f / sqrtf(sum_sq / static_cast<float>(cols) + eps);
}

// The normalised element n = x s, as the forward's cast leaves it.
SIMT_HD float rms_normalized(float x, float s, bool round) { return round ? rms_round_bf16(x * s) : x * s; }

// The gradient reaching n: dy weight, cast as the forward's cast.
SIMT_HD float rms_grad_normalized(float dy, float weight, bool round) {
  return round ? rms_round_bf16(dy * weight) : dy * weight;
}

// c = s^2 mean(dn x) from the row's sum of dn x.
SIMT_HD float rms_backward_coefficient(float dot, float s, int64_t cols) { return dot * s * s / static_cast<float>(cols); }

// dx = s (dn - x c).
SIMT_HD float rms_grad_input(float dn, float x, float s, float c) { return s * (dn - x * c); }

}  // namespace exatrain::kernels
