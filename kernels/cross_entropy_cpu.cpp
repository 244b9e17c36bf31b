// The fused CPU cross-entropy (kernels/cross_entropy.h). Forward: a row is read once, in chunks
// of kChunk logits that stay in L1: the chunk's max (rescaling the running sum when it rises),
// then the chunk's sum of exp; online softmax per chunk rather than per element, so both loops
// are plain vector loops with one exp per logit (in double, cross_entropy_row.h says why).
// Backward: one pass writing the gradient.
// Built once per instruction set with GCC's target_clones (the loader picks the best copy this
// CPU runs), as kernels/rmsnorm_cpu.cpp.
#include <algorithm>
#include <cstring>

#include "kernels/cpu_clones.h"
#include "kernels/cross_entropy.h"

namespace exatrain::kernels {

namespace {

// The helpers below are inlined into each clone, so each is compiled for its instruction set.
#define XENT_INLINE inline __attribute__((always_inline))

constexpr int64_t kChunk = 1024;  // 4 KiB of fp32 logits
constexpr int kLanes = 16;        // independent partial results: a zmm, or two ymm

XENT_INLINE float chunk_max(const float* x, int64_t n) {
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = kXentLowest;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
  for (; i < n; ++i) acc[0] = x[i] > acc[0] ? x[i] : acc[0];
  float m = acc[0];
  for (int l = 1; l < kLanes; ++l) m = acc[l] > m ? acc[l] : m;
  return m;
}

XENT_INLINE double chunk_sum_exp(const float* x, int64_t n, float m) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += xent_exp_from(x[i + l], m, 0.0);
  for (; i < n; ++i) acc[0] += xent_exp_from(x[i], m, 0.0);
  double s = 0;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// One row: (max, sum of exp(z - max)) of the slice.
template <class T>
XENT_INLINE void forward_row(const T* z, int64_t cols, float* chunk, float& max, float& sum) {
  float m = -__builtin_huge_valf();
  double s = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += kChunk) {
    const int64_t n = std::min(kChunk, cols - c0);
    const float* x = chunk;
    if constexpr (sizeof(T) == 4) {
      x = reinterpret_cast<const float*>(z) + c0;  // fp32: read in place
    } else {
      for (int64_t i = 0; i < n; ++i) chunk[i] = xent_load(z, c0 + i);  // bf16: widened once
    }
    const float cm = chunk_max(x, n);
    if (cm < kXentLowest) continue;  // all -inf: adds nothing
    if (cm > m) {
      s *= xent_exp_from(m, cm, 0.0);  // 0 while m is -inf (s is 0)
      m = cm;
    }
    s += chunk_sum_exp(x, n, m);
  }
  max = m;
  sum = static_cast<float>(s);
}

template <class T>
XENT_INLINE void forward_rows(const CrossEntropyParams& p, int64_t begin, int64_t end) {
  float chunk[kChunk];
  for (int64_t r = begin; r < end; ++r) {
    const T* z = static_cast<const T*>(p.logits) + r * p.cols;
    forward_row(z, p.cols, chunk, p.row_max[r], p.row_sum[r]);
    const int64_t t = xent_local_target(p.targets[r], p.vocab_start, p.cols);
    p.target_logit[r] = t >= 0 ? xent_load(z, t) : 0.f;
  }
}

// float -> bf16 bits, the same bits as simt::bf16_bits (round to nearest even, NaN stays a
// quiet NaN), as arithmetic on masks rather than a branch, so the loop vectorizes (the
// branching form made the bf16 backward 8x slower than the fp32 one).
XENT_INLINE uint16_t bf16_bits_of(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  const uint32_t nan = static_cast<uint32_t>(-static_cast<int32_t>((u & 0x7fffffffu) > 0x7f800000u));  // all ones
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>((rounded & ~nan) | (((u >> 16) | 0x40u) & nan));
}

// One row at a time: the fp32 gradient, written in place (fp32) or a chunk at a time into a
// buffer (widened, the gradient computed in place) and then rounded to bf16 (simple loops
// vectorize; one fused loop did not, and widening inside the double loop was 3x slower).
template <class T>
XENT_INLINE void backward_rows(const CrossEntropyParams& p, int64_t begin, int64_t end) {
  float chunk[kChunk];
  for (int64_t r = begin; r < end; ++r) {
    const T* z = static_cast<const T*>(p.logits) + r * p.cols;
    T* dz = static_cast<T*>(p.dlogits) + r * p.cols;
    const int64_t target = p.targets[r];
    const float max = p.max[r], log_sum = p.log_sum[r];
    const float g = target == kIgnoreTarget ? 0.f : p.grad[r];
    const int64_t t = xent_local_target(target, p.vocab_start, p.cols);
    for (int64_t c0 = 0; c0 < p.cols; c0 += kChunk) {
      const int64_t n = std::min(kChunk, p.cols - c0);
      const float* x = chunk;
      float* out = chunk;
      if constexpr (sizeof(T) == 4) {
        x = reinterpret_cast<const float*>(z) + c0;
        out = reinterpret_cast<float*>(dz) + c0;
      } else {
        for (int64_t i = 0; i < n; ++i) chunk[i] = xent_load(z, c0 + i);  // bf16: widened, then in place
      }
      for (int64_t i = 0; i < n; ++i) out[i] = xent_grad(x[i], max, log_sum, false, g);
      if (t >= c0 && t < c0 + n) out[t - c0] = xent_grad(xent_load(z, t), max, log_sum, true, g);
      if constexpr (sizeof(T) == 2) {
        uint16_t* bits = reinterpret_cast<uint16_t*>(dz) + c0;
        for (int64_t i = 0; i < n; ++i) bits[i] = bf16_bits_of(chunk[i]);
      }
    }
  }
}

}  // namespace

EXATRAIN_CLONES
void cross_entropy_forward_rows(const CrossEntropyParams& p, int64_t begin, int64_t end) {
  if (p.bf16)
    forward_rows<uint16_t>(p, begin, end);
  else
    forward_rows<float>(p, begin, end);
}

EXATRAIN_CLONES
void cross_entropy_backward_rows(const CrossEntropyParams& p, int64_t begin, int64_t end) {
  if (p.bf16)
    backward_rows<uint16_t>(p, begin, end);
  else
    backward_rows<float>(p, begin, end);
}

const char* cross_entropy_cpu_isa() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "default";
}

}  // namespace exatrain::kernels
