// RoPE and SwiGLU: the per-element math, once, for every implementation that is not ATen.
//   - the SIMT_HD functions below are what an element computes; the fused CPU kernel
//     (rope_swiglu_cpu.cpp) calls them in vectorizable loops;
//   - the SIMT_KERNEL bodies at the end call the same functions, one element (pair) per thread;
//     nvcc compiles them for sm_80 / sm_90a (rope_swiglu.cu), the host compiler into the CPU
//     emulation of kernels/simt.h (rope_swiglu_emulated.cpp), where the tests run them.
// Elements are fp32 (float) or bf16 (uint16_t bits); math is fp32. With bf16 elements every
// intermediate that transformers holds as a bf16 tensor is rounded to bf16 here too, so the
// result is the reference's, not a more precise one (see each function).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/rope_swiglu.h"
#include "kernels/simt.h"

namespace exatrain::kernels {

// ---- element types -----------------------------------------------------------------------------

template <class T>
SIMT_HD float load_element(const T* p, int64_t i);
template <>
SIMT_HD float load_element<float>(const float* p, int64_t i) { return p[i]; }
template <>
SIMT_HD float load_element<uint16_t>(const uint16_t* p, int64_t i) { return simt::bf16_to_float(p[i]); }

template <class T>
SIMT_HD void store_element(T* p, int64_t i, float v);
template <>
SIMT_HD void store_element<float>(float* p, int64_t i, float v) { p[i] = v; }
template <>
SIMT_HD void store_element<uint16_t>(uint16_t* p, int64_t i, float v) { p[i] = simt::bf16_bits(v); }

// v as a T tensor would hold it: unchanged for fp32, rounded to nearest even for bf16.
template <class T>
SIMT_HD float as_element(float v);
template <>
SIMT_HD float as_element<float>(float v) { return v; }
template <>
SIMT_HD float as_element<uint16_t>(float v) { return simt::bf16_to_float(simt::bf16_bits(v)); }

// ---- RoPE ----------------------------------------------------------------------------------------
// transformers: y = x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1), with cos and
// sin cast to x's dtype first (the binding passes them so). Per pair (i, i + half) of a row:
//   y1 = x1 c1 - x2 s1,   y2 = x2 c2 + x1 s2
// each product and the sum rounded to T, as the three T tensors of the reference are.
template <class T>
SIMT_HD void rope_pair_forward(float x1, float x2, float c1, float c2, float s1, float s2, float& y1, float& y2) {
  y1 = as_element<T>(x1 * c1) + as_element<T>(-x2 * s1);
  y2 = as_element<T>(x2 * c2) + as_element<T>(x1 * s2);
}

// The transpose: autograd's dx = g * cos + (the rotation's transpose of g * sin), i.e.
//   dx1 = g1 c1 + g2 s2,   dx2 = g2 c2 - g1 s1
// with g * cos and g * sin rounded to T (each is a T tensor in the reference's backward) and
// their sum rounded once by the store (autograd's accumulation of x's two uses).
template <class T>
SIMT_HD void rope_pair_backward(float g1, float g2, float c1, float c2, float s1, float s2, float& dx1, float& dx2) {
  dx1 = as_element<T>(g1 * c1) + as_element<T>(g2 * s2);
  dx2 = as_element<T>(g2 * c2) - as_element<T>(g1 * s1);
}

// Row r of the flattened [batch, heads, seq] index -> element offsets of x, y and the tables.
struct RopeRow {
  int64_t x, y, table;
};
SIMT_HD RopeRow rope_row(const RopeParams& p, int64_t r) {
  const int64_t t = r % p.seq, bh = r / p.seq, h = bh % p.heads, b = bh / p.heads;
  return RopeRow{b * p.x_stride[0] + h * p.x_stride[1] + t * p.x_stride[2],
                 b * p.y_stride[0] + h * p.y_stride[1] + t * p.y_stride[2],
                 b * p.table_stride_b + t * p.head_dim};
}

// One pair (i, i + half) of row r; `backward`: x is the output's gradient, y the input's.
template <class T>
SIMT_HD void rope_pair(const RopeParams& p, bool backward, int64_t r, int64_t i) {
  const RopeRow row = rope_row(p, r);
  const int64_t half = p.head_dim / 2;
  const T* x = static_cast<const T*>(p.x) + row.x;
  T* y = static_cast<T*>(p.y) + row.y;
  const T* c = static_cast<const T*>(p.cos) + row.table;
  const T* s = static_cast<const T*>(p.sin) + row.table;
  const float x1 = load_element<T>(x, i), x2 = load_element<T>(x, i + half);
  const float c1 = load_element<T>(c, i), c2 = load_element<T>(c, i + half);
  const float s1 = load_element<T>(s, i), s2 = load_element<T>(s, i + half);
  float y1, y2;
  if (backward)
    rope_pair_backward<T>(x1, x2, c1, c2, s1, s2, y1, y2);
  else
    rope_pair_forward<T>(x1, x2, c1, c2, s1, s2, y1, y2);
  store_element<T>(y, i, y1);
  store_element<T>(y, i + half, y2);
}

// ---- SwiGLU --------------------------------------------------------------------------------------

// e^-|g|, Cephes' expf on x = -|g|: n = round(x log2 e), r = x - n ln 2 in two parts
// (Cody-Waite), e^r by a degree-6 polynomial, times 2^n built in the exponent bits; within about
// 1 ulp of expf. Taking |g| keeps e^-|g| in (0, 1]: no overflow. Beyond |g| = 87 (where 2^n would
// leave the normal floats) the result is 0, as ATen's silu gives -0 for large negative g. The
// clamp and that flush are integer operations on the bits (non-negative floats order as their
// bits; NaN flushes too and comes back through g itself), so the CPU loops vectorize without
// -ffast-math (std::exp does not; a float clamp with a constant bound gets its paths split by
// GCC's jump threading and then stays scalar), and the GPU runs the same arithmetic.
SIMT_HD float swiglu_exp_neg_abs(float g) {
  float a = fabsf(g);
  int32_t a_bits;
  std::memcpy(&a_bits, &a, sizeof a_bits);
  const int32_t k87 = 0x42ae0000;                    // 87.0f
  const int32_t keep = (a_bits - (k87 + 1)) >> 31;  // all ones where |g| <= 87, else 0
  a_bits = a_bits < k87 ? a_bits : k87;
  std::memcpy(&a, &a_bits, sizeof a);
  const float x = -a;
  const float magic = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) * (1 << 23);
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  const float e = p * two_n;
  int32_t e_bits;
  std::memcpy(&e_bits, &e, sizeof e_bits);
  e_bits &= keep;
  float flushed;
  std::memcpy(&flushed, &e_bits, sizeof flushed);
  return flushed;
}

// sigmoid(g) = num / den with e = e^-|g|, den = 1 + e and num = 1 (g >= 0) or e (g < 0); num is
// picked by the sign bit (a mask, not a select of a constant, for the vectoriser as above).
struct Sigmoid {
  float num, den;
};
SIMT_HD Sigmoid swiglu_sigmoid(float g) {
  const float e = swiglu_exp_neg_abs(g);
  int32_t g_bits, e_bits;
  std::memcpy(&g_bits, &g, sizeof g_bits);
  std::memcpy(&e_bits, &e, sizeof e_bits);
  const int32_t negative = g_bits >> 31;  // all ones for g < 0 (and -0, where e = 1 anyway)
  const int32_t num_bits = (e_bits & negative) | (0x3f800000 & ~negative);
  float num;
  std::memcpy(&num, &num_bits, sizeof num);
  return Sigmoid{num, 1.f + e};
}

// silu(g) = g sigmoid(g); for g >= 0 exactly ATen's g / (1 + e^-g).
SIMT_HD float swiglu_silu(const Sigmoid& s, float g) { return (g * s.num) / s.den; }

// transformers: down(act_fn(gate) * up) with act_fn = SiLU; in bf16 the SiLU output is a bf16
// tensor before the product (ATen computes silu in fp32 and rounds).
template <class T>
SIMT_HD float swiglu_forward(float g, float u) {
  return as_element<T>(swiglu_silu(swiglu_sigmoid(g), g)) * u;
}

// Autograd of silu(gate) * up, from gate and up alone (silu recomputed, not saved):
//   dup = dy silu(g)                      (silu as the forward rounded it)
//   dgate = (dy u) sig (1 + g (1 - sig))  (ATen's silu_backward, its input dy u rounded to T)
template <class T>
SIMT_HD void swiglu_backward(float g, float u, float dy, float& dg, float& du) {
  const Sigmoid s = swiglu_sigmoid(g);
  const float sig = s.num / s.den;
  du = dy * as_element<T>(swiglu_silu(s, g));
  dg = as_element<T>(dy * u) * sig * (1.f + g * (1.f - sig));
}

template <class T>
SIMT_HD void swiglu_element(const SwigluParams& p, bool backward, int64_t i) {
  const float g = load_element<T>(static_cast<const T*>(p.gate), i);
  const float u = load_element<T>(static_cast<const T*>(p.up), i);
  if (!backward) {
    store_element<T>(static_cast<T*>(p.out), i, swiglu_forward<T>(g, u));
    return;
  }
  float dg, du;
  swiglu_backward<T>(g, u, load_element<T>(static_cast<const T*>(p.dout), i), dg, du);
  store_element<T>(static_cast<T*>(p.dgate), i, dg);
  store_element<T>(static_cast<T*>(p.dup), i, du);
}

// ---- the CUDA kernels --------------------------------------------------------------------------
// Elementwise, so no shared memory and no synchronisation: a block of kElementwiseThreads
// threads owns kElementwiseThreads * kElementwisePerThread consecutive work items (RoPE: pairs of
// a row; SwiGLU: elements); thread t takes items t, t + threads, ... so each step of the block
// reads consecutive addresses (coalesced), and each thread has several loads in flight.

inline constexpr int kElementwiseThreads = 256, kElementwisePerThread = 4;
inline constexpr int64_t kElementwisePerBlock = int64_t{kElementwiseThreads} * kElementwisePerThread;

SIMT_HD int64_t elementwise_blocks(int64_t items) { return (items + kElementwisePerBlock - 1) / kElementwisePerBlock; }
SIMT_HD int64_t rope_pairs(const RopeParams& p) { return p.batch * p.heads * p.seq * (p.head_dim / 2); }

template <class T>
SIMT_KERNEL void rope_kernel(RopeParams p, bool backward) {
  const int64_t half = p.head_dim / 2, pairs = rope_pairs(p);
  const int64_t first = static_cast<int64_t>(simt::block_x()) * kElementwisePerBlock + simt::thread_x();
  for (int k = 0; k < kElementwisePerThread; ++k) {
    const int64_t item = first + int64_t{k} * kElementwiseThreads;
    if (item >= pairs) return;
    rope_pair<T>(p, backward, item / half, item % half);
  }
}

template <class T>
SIMT_KERNEL void swiglu_kernel(SwigluParams p, bool backward) {
  const int64_t first = static_cast<int64_t>(simt::block_x()) * kElementwisePerBlock + simt::thread_x();
  for (int k = 0; k < kElementwisePerThread; ++k) {
    const int64_t item = first + int64_t{k} * kElementwiseThreads;
    if (item >= p.n) return;
    swiglu_element<T>(p, backward, item);
  }
}

}  // namespace exatrain::kernels
