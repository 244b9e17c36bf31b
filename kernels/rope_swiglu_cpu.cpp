// The fused CPU RoPE and SwiGLU (kernels/rope_swiglu.h): one pass over the data, reading the
// input dtype (fp32 or bf16) directly and writing the output dtype, the per-element math of
// kernels/rope_swiglu.cuh in loops the vectoriser turns into SIMD (no calls, no branches: exp is
// the polynomial there). Built once per instruction set with GCC's target_clones, as
// rmsnorm_cpu.cpp; compiled with -ffp-contract=off (CMakeLists.txt) so fp32 RoPE rounds each
// product as ATen's separate multiply and add do (bit-equal to the reference).
#include <cstdint>

#include "kernels/rope_swiglu.cuh"
#include "kernels/rope_swiglu.h"

namespace exatrain::kernels {

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define EXATRAIN_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define EXATRAIN_CLONES
#endif
#define EXATRAIN_INLINE inline __attribute__((always_inline))
// Outputs never overlap inputs (the bindings allocate them): without this GCC versions the
// RoPE loop on run-time overlap checks of its eight streams, gives up (more than 10) and leaves
// it scalar.
#define EXATRAIN_IVDEP _Pragma("GCC ivdep")

// Pair (i, i + half) of each row: two contiguous streams of x, cos, sin and y per row.
template <class T>
EXATRAIN_INLINE void rope_rows(const RopeParams& p, bool backward, int64_t begin, int64_t end) {
  const int64_t half = p.head_dim / 2;
  for (int64_t r = begin; r < end; ++r) {
    const RopeRow row = rope_row(p, r);
    const T* __restrict__ x = static_cast<const T*>(p.x) + row.x;
    T* __restrict__ y = static_cast<T*>(p.y) + row.y;
    const T* __restrict__ c = static_cast<const T*>(p.cos) + row.table;
    const T* __restrict__ s = static_cast<const T*>(p.sin) + row.table;
    if (backward) {
      EXATRAIN_IVDEP for (int64_t i = 0; i < half; ++i) {
        float d1, d2;
        rope_pair_backward<T>(load_element<T>(x, i), load_element<T>(x, i + half), load_element<T>(c, i),
                              load_element<T>(c, i + half), load_element<T>(s, i), load_element<T>(s, i + half), d1,
                              d2);
        store_element<T>(y, i, d1);
        store_element<T>(y, i + half, d2);
      }
    } else {
      EXATRAIN_IVDEP for (int64_t i = 0; i < half; ++i) {
        float y1, y2;
        rope_pair_forward<T>(load_element<T>(x, i), load_element<T>(x, i + half), load_element<T>(c, i),
                             load_element<T>(c, i + half), load_element<T>(s, i), load_element<T>(s, i + half), y1,
                             y2);
        store_element<T>(y, i, y1);
        store_element<T>(y, i + half, y2);
      }
    }
  }
}

template <class T>
EXATRAIN_INLINE void swiglu_range(const SwigluParams& p, bool backward, int64_t begin, int64_t end) {
  const T* __restrict__ g = static_cast<const T*>(p.gate);
  const T* __restrict__ u = static_cast<const T*>(p.up);
  if (!backward) {
    T* __restrict__ out = static_cast<T*>(p.out);
    EXATRAIN_IVDEP for (int64_t i = begin; i < end; ++i)
      store_element<T>(out, i, swiglu_forward<T>(load_element<T>(g, i), load_element<T>(u, i)));
    return;
  }
  const T* __restrict__ dy = static_cast<const T*>(p.dout);
  T* __restrict__ dg = static_cast<T*>(p.dgate);
  T* __restrict__ du = static_cast<T*>(p.dup);
  EXATRAIN_IVDEP for (int64_t i = begin; i < end; ++i) {
    float a, b;
    swiglu_backward<T>(load_element<T>(g, i), load_element<T>(u, i), load_element<T>(dy, i), a, b);
    store_element<T>(dg, i, a);
    store_element<T>(du, i, b);
  }
}

}  // namespace

EXATRAIN_CLONES
void rope_rows_cpu(const RopeParams& p, bool backward, int64_t begin, int64_t end) {
  if (p.bf16)
    rope_rows<uint16_t>(p, backward, begin, end);
  else
    rope_rows<float>(p, backward, begin, end);
}

EXATRAIN_CLONES
void swiglu_cpu(const SwigluParams& p, bool backward, int64_t begin, int64_t end) {
  if (p.bf16)
    swiglu_range<uint16_t>(p, backward, begin, end);
  else
    swiglu_range<float>(p, backward, begin, end);
}

// The copy target_clones' resolver picks: the first of its list this CPU supports.
const char* rope_swiglu_cpu_isa() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (avx512)";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "generic";
}

}  // namespace exatrain::kernels
