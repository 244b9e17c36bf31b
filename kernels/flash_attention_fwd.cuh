// Flash attention forward on the tensor cores: causal, sliding window, GQA, document masks; bf16 q, k, v, fp32
// accumulation, bf16 output and the fp32 log-sum-exp per row. Written against kernels/simt.h,
// so this one body is compiled by nvcc for sm_80 / sm_90a (flash_attention.cu) and by the host
// compiler into the CPU emulation (flash_attention_emulated.cpp), where the tests run it.
//
// A block is 4 warps and owns 64 query rows of one (batch, head); warp w owns rows 16w..16w+15.
// For each 64-key tile the query rows can see (tiles outside the window or above the diagonal
// are never visited), the block stages K and V in shared memory, each warp computes its
// 16 x 64 scores with m16n8k16 mma (Q fragments stay in registers), folds them into a running
// max and sum (online softmax; a row's values live in the 4 lanes of a quad, combined with two
// xor-shuffles), turns the probabilities into bf16 A fragments in registers, and accumulates
// P V with mma. Layouts: q, o [batch, heads, seq, D]; k, v [batch, kv_heads, seq, D];
// lse [batch, heads, seq]; all contiguous. D is a multiple of 16, at most 128.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/simt.h"

namespace exatrain::kernels {

struct FlashFwdParams {
  const uint16_t* q;  // bf16 bits
  const uint16_t* k;
  const uint16_t* v;
  uint16_t* o;
  float* lse;
  int batch, heads, kv_heads, seq, window;  // window 0: full causal
  float scale;
  // Document masks (null: none): [batch, seq] int32 document ids, non-decreasing along a row; key
  // k is visible from query q only in q's document as well.
  const int32_t* segments = nullptr;
};

// First token of the document holding token t of the row `seg` (ids non-decreasing), and one
// past its last: binary searches, so key tiles of other documents are skipped.
SIMT_HD int flash_segment_begin(const int32_t* seg, int t) {
  int lo = 0, hi = t;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (seg[mid] < seg[t]) lo = mid + 1; else hi = mid;
  }
  return lo;
}
SIMT_HD int flash_segment_end(const int32_t* seg, int seq, int t) {
  int lo = t + 1, hi = seq;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (seg[mid] <= seg[t]) lo = mid + 1; else hi = mid;
  }
  return lo;
}

inline constexpr int kFwdRows = 64, kFwdKeys = 64, kFwdWarps = 4, kFwdThreads = kFwdWarps * simt::kWarpSize;

// Shared memory: the K and V tiles, [64][D] bf16 each.
SIMT_HD int flash_fwd_shared_bytes(int head_dim) { return 2 * kFwdKeys * head_dim * 2; }

template <int D>
SIMT_KERNEL void flash_attention_fwd_kernel(FlashFwdParams p) {
  static_assert(D % 16 == 0 && D <= 128, "head_dim must be a multiple of 16, at most 128");
  constexpr int kSteps = D / 16;    // k-steps over the head dimension
  constexpr int kOutTiles = D / 8;  // n-tiles of the output
  const int tid = simt::thread_x(), warp = tid / simt::kWarpSize, l = simt::lane();
  const int group = l >> 2, tig = l & 3;
  const int q_tile = simt::block_x(), bh = simt::block_y();
  const int b = bh / p.heads, h = bh % p.heads, kvh = b * p.kv_heads + h / (p.heads / p.kv_heads);
  const int q0 = q_tile * kFwdRows;
  const uint16_t* q = p.q + (static_cast<int64_t>(bh) * p.seq) * D;
  const uint16_t* k = p.k + (static_cast<int64_t>(kvh) * p.seq) * D;
  const uint16_t* v = p.v + (static_cast<int64_t>(kvh) * p.seq) * D;
  uint16_t* ks = simt::dynamic_shared<uint16_t>();  // [64][D]
  uint16_t* vs = ks + kFwdKeys * D;                 // [64][D]

  // This lane's two rows (group and group + 8 of the warp's 16) and their Q fragments.
  const int row_lo = q0 + warp * 16 + group, row_hi = row_lo + 8;
  uint32_t qf[kSteps][4];
  for (int s = 0; s < kSteps; ++s)
    for (int r = 0; r < 4; ++r) {
      const int row = (r & 1) ? row_hi : row_lo, col = s * 16 + tig * 2 + ((r & 2) ? 8 : 0);
      qf[s][r] = row < p.seq ? simt::pack_bf16x2(q[static_cast<int64_t>(row) * D + col], q[static_cast<int64_t>(row) * D + col + 1]) : 0u;
    }
  float acc[kOutTiles][4];
  for (int t = 0; t < kOutTiles; ++t)
    for (int i = 0; i < 4; ++i) acc[t][i] = 0.f;
  const float neg_inf = -INFINITY;
  float m[2] = {neg_inf, neg_inf}, sum[2] = {0.f, 0.f};  // running max (log2 units) and sum
  const float scale_log2 = p.scale * 1.4426950408889634f;

  const int q_last = q0 + kFwdRows - 1 < p.seq - 1 ? q0 + kFwdRows - 1 : p.seq - 1;
  const int32_t* seg = p.segments ? p.segments + static_cast<int64_t>(b) * p.seq : nullptr;
  int k_begin = p.window > 0 && q0 - p.window + 1 > 0 ? q0 - p.window + 1 : 0;
  if (seg && q0 < p.seq) {  // no key before the first document of this query tile
    const int doc = flash_segment_begin(seg, q0);
    k_begin = doc > k_begin ? doc : k_begin;
  }
  for (int k0 = k_begin / kFwdKeys * kFwdKeys; k0 <= q_last; k0 += kFwdKeys) {
    simt::sync_block();  // the previous tile is no longer read
    for (int i = tid; i < kFwdKeys * D / 2; i += kFwdThreads) {  // two bf16 per thread and step
      const int key = i / (D / 2), col = (i % (D / 2)) * 2;
      const bool in = k0 + key < p.seq;
      const int64_t src = static_cast<int64_t>(k0 + key) * D + col;
      ks[key * D + col] = in ? k[src] : 0;
      ks[key * D + col + 1] = in ? k[src + 1] : 0;
      vs[key * D + col] = in ? v[src] : 0;
      vs[key * D + col + 1] = in ? v[src + 1] : 0;
    }
    simt::sync_block();

    float sc[kFwdKeys / 8][4];  // S = Q K^T for this warp's 16 rows x 64 keys
    for (int n = 0; n < kFwdKeys / 8; ++n) {
      for (int i = 0; i < 4; ++i) sc[n][i] = 0.f;
      for (int s = 0; s < kSteps; ++s) {
        // B[k][n] = K[key n][dim k]: two consecutive dims of one key are one word.
        const uint16_t* kr = ks + (n * 8 + group) * D + s * 16 + tig * 2;
        const uint32_t bf[2] = {simt::pack_bf16x2(kr[0], kr[1]), simt::pack_bf16x2(kr[8], kr[9])};
        simt::mma_m16n8k16_bf16(sc[n], qf[s], bf, sc[n]);
      }
    }
    // Scale to log2 units, mask, and fold into the running max and sum per row.
    float tile_max[2] = {neg_inf, neg_inf};
    for (int n = 0; n < kFwdKeys / 8; ++n)
      for (int i = 0; i < 4; ++i) {
        const int row = i < 2 ? row_lo : row_hi, key = k0 + n * 8 + tig * 2 + (i & 1);
        const bool visible = key <= row && key < p.seq && (p.window <= 0 || key > row - p.window) &&
                             (!seg || (row < p.seq && seg[key] == seg[row]));
        sc[n][i] = visible ? sc[n][i] * scale_log2 : neg_inf;
        tile_max[i >> 1] = tile_max[i >> 1] > sc[n][i] ? tile_max[i >> 1] : sc[n][i];
      }
    float correction[2];
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], simt::shfl_xor(tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], simt::shfl_xor(tile_max[r], 2));
      const float m_new = m[r] > tile_max[r] ? m[r] : tile_max[r];
      correction[r] = m_new == neg_inf ? 1.f : simt::exp2_approx(m[r] - m_new);
      m[r] = m_new;
    }
    float tile_sum[2] = {0.f, 0.f};
    for (int n = 0; n < kFwdKeys / 8; ++n)
      for (int i = 0; i < 4; ++i) {
        const int r = i >> 1;
        sc[n][i] = m[r] == neg_inf ? 0.f : simt::exp2_approx(sc[n][i] - m[r]);
        tile_sum[r] += sc[n][i];
      }
    for (int r = 0; r < 2; ++r) sum[r] = sum[r] * correction[r] + tile_sum[r];  // quad-partial sums
    for (int t = 0; t < kOutTiles; ++t)
      for (int i = 0; i < 4; ++i) acc[t][i] *= correction[i >> 1];

    // O += P V: P's C fragments of n-tiles 2j, 2j + 1 are exactly the A fragment of k-step j.
    for (int j = 0; j < kFwdKeys / 16; ++j) {
      const uint32_t pf[4] = {simt::pack_bf16x2(sc[2 * j][0], sc[2 * j][1]), simt::pack_bf16x2(sc[2 * j][2], sc[2 * j][3]),
                              simt::pack_bf16x2(sc[2 * j + 1][0], sc[2 * j + 1][1]),
                              simt::pack_bf16x2(sc[2 * j + 1][2], sc[2 * j + 1][3])};
      for (int t = 0; t < kOutTiles; ++t) {
        // B[k][n] = V[key k][dim n]: keys tig * 2, tig * 2 + 1 (+ 8) of this k-step, dim t * 8 + group.
        const uint16_t* vc = vs + (j * 16 + tig * 2) * D + t * 8 + group;
        const uint32_t bf[2] = {simt::pack_bf16x2(vc[0], vc[D]), simt::pack_bf16x2(vc[8 * D], vc[9 * D])};
        simt::mma_m16n8k16_bf16(acc[t], pf, bf, acc[t]);
      }
    }
  }

  // The quad's partial sums make the row's sum; every row sees at least its own key.
  for (int r = 0; r < 2; ++r) {
    sum[r] += simt::shfl_xor(sum[r], 1);
    sum[r] += simt::shfl_xor(sum[r], 2);
  }
  for (int r = 0; r < 2; ++r) {
    const int row = r ? row_hi : row_lo;
    if (row >= p.seq) continue;
    const float inv = 1.f / sum[r];
    uint16_t* orow = p.o + (static_cast<int64_t>(bh) * p.seq + row) * D;
    for (int t = 0; t < kOutTiles; ++t) {
      const int col = t * 8 + tig * 2;
      orow[col] = simt::bf16_bits(acc[t][r * 2] * inv);
      orow[col + 1] = simt::bf16_bits(acc[t][r * 2 + 1] * inv);
    }
    if (tig == 0) p.lse[static_cast<int64_t>(bh) * p.seq + row] = (m[r] + simt::log_approx(sum[r]) * 1.4426950408889634f) * 0.6931471805599453f;
  }
}

}  // namespace exatrain::kernels
