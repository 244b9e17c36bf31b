// Flash-style attention with a C-style interface (raw fp32 pointers, sizes): causal, optionally
// sliding-window, grouped-query. Never builds a [seq, seq] tensor: queries are processed in
// tiles of kFlashQueryTile rows against key tiles of kFlashKeyTile keys with an online softmax
// (running max and sum per row), and the log-sum-exp of each row is kept so the backward can
// recompute the probabilities tile by tile. Key tiles wholly outside the causal triangle or the
// window are never visited: work and memory are O(seq x window) on sliding layers.
//
// Visibility: key k is visible from query q iff k <= q and, with window W > 0, k > q - W
// (transformers' sliding_window semantics), and with document segments, k is in q's document
// (key tiles before the first document of a query tile, and query tiles after the last
// document of a key tile, are skipped). Query head h reads KV head h / (heads / kv_heads).
//
// Layouts (contiguous, fp32): q, o, dq, do: [batch, heads, seq, head_dim];
// k, v, dk, dv: [batch, kv_heads, seq, head_dim]; lse, delta: [batch, heads, seq].
//
// The work is split into independent items so the caller can spread them over its own thread
// pool (the binding uses ATen's, the same threads as the rest of the step):
//   forward:  one item per (batch, head, query tile); items write disjoint rows of o and lse.
//   backward: one item per (batch, head); item (b, h) writes dq of that head and ITS OWN
//             contribution to dk/dv into dk_heads/dv_heads [batch, heads, seq, head_dim]; the
//             caller sums the heads of each group (no two items write the same memory).
// Each call runs the copy built for the best instruction set the CPU has (AVX-512, AVX2+FMA,
// else portable C++): one source, three compilations.
#pragma once

#include <cstdint>

namespace exatrain::kernels {

inline constexpr int64_t kFlashQueryTile = 64;
inline constexpr int64_t kFlashKeyTile = 64;

struct AttentionShape {
  int64_t batch = 1, heads = 1, kv_heads = 1, seq = 1, head_dim = 1;
  int64_t window = 0;  // 0: full causal
  float scale = 1.f;   // applied to q . k
  // Document masks (null: none): [batch, seq] document id of each token, non-decreasing along a
  // row; key k is visible from query q only if segments[b, k] == segments[b, q] as well.
  const int32_t* segments = nullptr;
};

int64_t flash_forward_items(const AttentionShape& s);
void flash_attention_forward_cpu(const AttentionShape& s, const float* q, const float* k, const float* v, float* o,
                                 float* lse, int64_t item_begin, int64_t item_end);

int64_t flash_backward_items(const AttentionShape& s);
// delta[b, h, t] = sum_d do[b, h, t, d] * o[b, h, t, d] must be filled by the caller first.
void flash_attention_backward_cpu(const AttentionShape& s, const float* q, const float* k, const float* v,
                                  const float* lse, const float* delta, const float* dout, float* dq,
                                  float* dk_heads, float* dv_heads, int64_t item_begin, int64_t item_end);

// Which copy the dispatcher runs: "avx512", "avx2" or "generic" (the best this CPU supports, or
// the one named by EXATRAIN_CPU_ISA at start-up).
const char* flash_attention_cpu_isa();
// Runs the named copy from now on; false (and no change) if unknown or this CPU lacks it.
bool flash_attention_cpu_use_isa(const char* name);

// Key range [begin, end) that query rows [q_begin, q_end) may see (causal and window only).
inline void flash_visible_keys(const AttentionShape& s, int64_t q_begin, int64_t q_end, int64_t* begin, int64_t* end) {
  *begin = s.window > 0 && q_begin - s.window + 1 > 0 ? q_begin - s.window + 1 : 0;
  *end = q_end;
}

// Document masks: the first token of the document holding token t of row `seg` [seq] (binary
// search: the ids are non-decreasing), and one past the last.
inline int64_t flash_document_begin(const int32_t* seg, int64_t t) {
  int64_t lo = 0, hi = t;  // the first index in [0, t] whose id is seg[t]
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (seg[mid] < seg[t]) lo = mid + 1; else hi = mid;
  }
  return lo;
}
inline int64_t flash_document_end(const int32_t* seg, int64_t seq, int64_t t) {
  int64_t lo = t + 1, hi = seq;  // the first index in (t, seq) whose id is above seg[t]
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (seg[mid] <= seg[t]) lo = mid + 1; else hi = mid;
  }
  return lo;
}

}  // namespace exatrain::kernels
