// The fused CPU cross-entropy (kernels/cross_entropy.h). Forward: a row is read once, in chunks
// of kChunk logits that stay in L1: the chunk's max (rescaling the running sum when it rises),
// then the chunk's sum of exp; online softmax per chunk rather than per element, so both loops
// are plain vector loops with one exp per logit. Backward: one pass writing the gradient.
// Built once per instruction set with GCC's target_clones (the loader picks the best copy this
// CPU runs), as kernels/rmsnorm_cpu.cpp.
#include <algorithm>

#include "kernels/cross_entropy.h"

namespace exatrain::kernels {

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define EXATRAIN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EXATRAIN_CLONES
#endif

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

XENT_INLINE float chunk_sum_exp(const float* x, int64_t n, float m) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += xent_exp(x[i + l] - m);
  for (; i < n; ++i) acc[0] += xent_exp(x[i] - m);
  float s = 0.f;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// One row: (max, sum of exp(z - max)) of the slice.
template <class T>
XENT_INLINE void forward_row(const T* z, int64_t cols, float* chunk, float& m, float& s) {
  m = -__builtin_huge_valf();
  s = 0.f;
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
      s *= xent_exp(m - cm);  // 0 while m is -inf
      m = cm;
    }
    s += chunk_sum_exp(x, n, m);
  }
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

template <class T>
XENT_INLINE void backward_rows(const CrossEntropyParams& p, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* z = static_cast<const T*>(p.logits) + r * p.cols;
    T* dz = static_cast<T*>(p.dlogits) + r * p.cols;
    const int64_t target = p.targets[r];
    const float max = p.max[r], log_sum = p.log_sum[r];
    const float g = target == kIgnoreTarget ? 0.f : p.grad[r];
    for (int64_t i = 0; i < p.cols; ++i) xent_store(dz, i, xent_grad(xent_load(z, i), max, log_sum, false, g));
    const int64_t t = xent_local_target(target, p.vocab_start, p.cols);
    if (t >= 0) xent_store(dz, t, xent_grad(xent_load(z, t), max, log_sum, true, g));
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
