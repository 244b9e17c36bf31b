// Flash attention backward on the tensor cores, the partner of flash_attention_fwd.cuh (same
// visibility, layouts and SIMT header). A block is 4 warps and owns 64 keys of one
// (batch, head); warp w owns keys 16w..16w+15. For each 64-query tile that can see those keys
// (never the tiles outside the window or below the diagonal) the block stages Q and dO in
// shared memory and each warp computes, for its 16 keys x 64 queries:
//   Sᵀ = K Qᵀ, Pᵀ = exp(scale Sᵀ − lse)           (recomputed from the forward's log-sum-exp)
//   dV += Pᵀ dO                                     (Pᵀ's accumulator fragments as the A operand)
//   dPᵀ = V dOᵀ, dSᵀ = scale Pᵀ ∘ (dPᵀ − δ)         (δ = rowsum(dO ∘ O), from the caller)
//   dK += dSᵀ Q
// then dSᵀ goes through shared memory so each warp can add dQ = dS K for 16 of the queries
// with fp32 atomics (blocks of other key tiles add to the same rows). dK and dV are written
// per query head ([batch, heads, seq, D] fp32); the caller sums the heads of a GQA group.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/flash_attention_fwd.cuh"  // flash_segment_begin / _end
#include "kernels/simt.h"

namespace exatrain::kernels {

struct FlashBwdParams {
  const uint16_t* q;  // bf16 bits, [B, H, T, D]
  const uint16_t* k;  // [B, KV, T, D]
  const uint16_t* v;
  const uint16_t* dout;  // [B, H, T, D]
  const float* lse;      // [B, H, T], natural log
  const float* delta;    // [B, H, T]
  float* dq;             // [B, H, T, D], zeroed by the caller, accumulated atomically
  float* dk_heads;       // [B, H, T, D]
  float* dv_heads;       // [B, H, T, D]
  int batch, heads, kv_heads, seq, window;
  float scale;
  const int32_t* segments = nullptr;  // document masks, as FlashFwdParams::segments
};

inline constexpr int kBwdKeys = 64, kBwdQueries = 64, kBwdThreads = 4 * simt::kWarpSize;

// K, V, Q, dO tiles [64][D] bf16; dSᵀ [64][64] bf16; lse (log2 units) and δ for 64 queries.
SIMT_HD int flash_bwd_shared_bytes(int head_dim) { return 4 * 64 * head_dim * 2 + 64 * 64 * 2 + 2 * 64 * 4; }

template <int D>
SIMT_KERNEL void flash_attention_bwd_kernel(FlashBwdParams p) {
  static_assert(D % 16 == 0 && D <= 128, "head_dim must be a multiple of 16, at most 128");
  constexpr int kSteps = D / 16, kOutTiles = D / 8, kQueryTiles = kBwdQueries / 8;
  constexpr float kLog2e = 1.4426950408889634f;
  const int tid = simt::thread_x(), warp = tid / simt::kWarpSize, l = simt::lane();
  const int group = l >> 2, tig = l & 3;
  const int k0 = simt::block_x() * kBwdKeys, bh = simt::block_y();
  const int b = bh / p.heads, h = bh % p.heads, kvh = b * p.kv_heads + h / (p.heads / p.kv_heads);
  const int64_t head_row = static_cast<int64_t>(bh) * p.seq, kv_row = static_cast<int64_t>(kvh) * p.seq;
  uint16_t* ks = simt::dynamic_shared<uint16_t>();  // [64][D]
  uint16_t* vs = ks + kBwdKeys * D;                 // [64][D]
  uint16_t* qs = vs + kBwdKeys * D;                 // [64][D]
  uint16_t* dos = qs + kBwdQueries * D;             // [64][D]
  uint16_t* dst = dos + kBwdQueries * D;            // [64 keys][64 queries]: dSᵀ
  float* lse2 = reinterpret_cast<float*>(dst + kBwdKeys * kBwdQueries);  // [64]
  float* dl = lse2 + kBwdQueries;                                        // [64]

  for (int i = tid; i < kBwdKeys * D / 2; i += kBwdThreads) {
    const int key = i / (D / 2), col = (i % (D / 2)) * 2;
    const bool in = k0 + key < p.seq;
    const int64_t src = (kv_row + k0 + key) * D + col;
    ks[key * D + col] = in ? p.k[src] : 0;
    ks[key * D + col + 1] = in ? p.k[src + 1] : 0;
    vs[key * D + col] = in ? p.v[src] : 0;
    vs[key * D + col + 1] = in ? p.v[src + 1] : 0;
  }
  // A fragment (rows = this warp's 16 keys, k-step s over the head dimension) of a [64][D] tile.
  auto row_fragment = [&](const uint16_t* tile, int s, uint32_t a[4]) {
    for (int r = 0; r < 4; ++r) {
      const int row = warp * 16 + group + ((r & 1) ? 8 : 0), col = s * 16 + tig * 2 + ((r & 2) ? 8 : 0);
      a[r] = simt::pack_bf16x2(tile[row * D + col], tile[row * D + col + 1]);
    }
  };
  float dk[kOutTiles][4], dv[kOutTiles][4];
  for (int t = 0; t < kOutTiles; ++t)
    for (int i = 0; i < 4; ++i) dk[t][i] = dv[t][i] = 0.f;
  const int key_lo = k0 + warp * 16 + group;  // this lane's keys: key_lo and key_lo + 8

  const int k_last = k0 + kBwdKeys - 1 < p.seq - 1 ? k0 + kBwdKeys - 1 : p.seq - 1;
  const int32_t* seg = p.segments ? p.segments + static_cast<int64_t>(b) * p.seq : nullptr;
  int q_end = p.window > 0 && k_last + p.window < p.seq ? k_last + p.window : p.seq;  // exclusive
  if (seg && k0 < p.seq) {  // no query after the last document of this key tile
    const int doc_end = flash_segment_end(seg, p.seq, k_last);
    q_end = doc_end < q_end ? doc_end : q_end;
  }
  for (int q0 = k0; q0 < q_end; q0 += kBwdQueries) {
    simt::sync_block();  // the previous tile (and dSᵀ) is no longer read
    for (int i = tid; i < kBwdQueries * D / 2; i += kBwdThreads) {
      const int row = i / (D / 2), col = (i % (D / 2)) * 2;
      const bool in = q0 + row < p.seq;
      const int64_t src = (head_row + q0 + row) * D + col;
      qs[row * D + col] = in ? p.q[src] : 0;
      qs[row * D + col + 1] = in ? p.q[src + 1] : 0;
      dos[row * D + col] = in ? p.dout[src] : 0;
      dos[row * D + col + 1] = in ? p.dout[src + 1] : 0;
    }
    for (int i = tid; i < kBwdQueries; i += kBwdThreads) {
      const bool in = q0 + i < p.seq;
      lse2[i] = in ? p.lse[head_row + q0 + i] * kLog2e : 0.f;
      dl[i] = in ? p.delta[head_row + q0 + i] : 0.f;
    }
    simt::sync_block();

    // Sᵀ (keys x queries) and dPᵀ: B[k = dim][n = query] = tile[query][dim].
    float pt[kQueryTiles][4], dpt[kQueryTiles][4];
    for (int n = 0; n < kQueryTiles; ++n) {
      for (int i = 0; i < 4; ++i) pt[n][i] = dpt[n][i] = 0.f;
      for (int s = 0; s < kSteps; ++s) {
        const uint16_t* qr = qs + (n * 8 + group) * D + s * 16 + tig * 2;
        const uint16_t* dr = dos + (n * 8 + group) * D + s * 16 + tig * 2;
        const uint32_t bq[2] = {simt::pack_bf16x2(qr[0], qr[1]), simt::pack_bf16x2(qr[8], qr[9])};
        const uint32_t bd[2] = {simt::pack_bf16x2(dr[0], dr[1]), simt::pack_bf16x2(dr[8], dr[9])};
        uint32_t a[4];
        row_fragment(ks, s, a);
        simt::mma_m16n8k16_bf16(pt[n], a, bq, pt[n]);
        row_fragment(vs, s, a);
        simt::mma_m16n8k16_bf16(dpt[n], a, bd, dpt[n]);
      }
    }
    // Pᵀ and dSᵀ per element: c_i is (key, query) = (key_lo (+8 for i >= 2), q0 + n*8 + tig*2 + (i&1)).
    for (int n = 0; n < kQueryTiles; ++n)
      for (int i = 0; i < 4; ++i) {
        const int key = key_lo + (i >= 2 ? 8 : 0), ql = n * 8 + tig * 2 + (i & 1), query = q0 + ql;
        const bool visible = key <= query && query < p.seq && key < p.seq && (p.window <= 0 || key > query - p.window) &&
                             (!seg || seg[key] == seg[query]);
        pt[n][i] = visible ? simt::exp2_approx(pt[n][i] * p.scale * kLog2e - lse2[ql]) : 0.f;
        dpt[n][i] = p.scale * pt[n][i] * (dpt[n][i] - dl[ql]);  // now dSᵀ
      }
    // dV += Pᵀ dO and dK += dSᵀ Q: the accumulator fragments of query tiles 2j, 2j+1 are the A
    // fragment of k-step j; B[k = query][n = dim] = tile[query][dim].
    for (int j = 0; j < kBwdQueries / 16; ++j) {
      const uint32_t ap[4] = {simt::pack_bf16x2(pt[2 * j][0], pt[2 * j][1]), simt::pack_bf16x2(pt[2 * j][2], pt[2 * j][3]),
                              simt::pack_bf16x2(pt[2 * j + 1][0], pt[2 * j + 1][1]),
                              simt::pack_bf16x2(pt[2 * j + 1][2], pt[2 * j + 1][3])};
      const uint32_t as[4] = {simt::pack_bf16x2(dpt[2 * j][0], dpt[2 * j][1]),
                              simt::pack_bf16x2(dpt[2 * j][2], dpt[2 * j][3]),
                              simt::pack_bf16x2(dpt[2 * j + 1][0], dpt[2 * j + 1][1]),
                              simt::pack_bf16x2(dpt[2 * j + 1][2], dpt[2 * j + 1][3])};
      for (int t = 0; t < kOutTiles; ++t) {
        const uint16_t* dc = dos + (j * 16 + tig * 2) * D + t * 8 + group;
        const uint16_t* qc = qs + (j * 16 + tig * 2) * D + t * 8 + group;
        const uint32_t bd[2] = {simt::pack_bf16x2(dc[0], dc[D]), simt::pack_bf16x2(dc[8 * D], dc[9 * D])};
        const uint32_t bq[2] = {simt::pack_bf16x2(qc[0], qc[D]), simt::pack_bf16x2(qc[8 * D], qc[9 * D])};
        simt::mma_m16n8k16_bf16(dv[t], ap, bd, dv[t]);
        simt::mma_m16n8k16_bf16(dk[t], as, bq, dk[t]);
      }
    }
    // dSᵀ to shared memory, then dQ = dS K for queries 16w..16w+15 of the tile.
    for (int n = 0; n < kQueryTiles; ++n)
      for (int i = 0; i < 4; ++i) {
        const int kl = warp * 16 + group + (i >= 2 ? 8 : 0), ql = n * 8 + tig * 2 + (i & 1);
        dst[kl * kBwdQueries + ql] = simt::bf16_bits(dpt[n][i]);
      }
    simt::sync_block();
    float dq[kOutTiles][4];
    for (int t = 0; t < kOutTiles; ++t)
      for (int i = 0; i < 4; ++i) dq[t][i] = 0.f;
    for (int s = 0; s < kBwdKeys / 16; ++s) {
      uint32_t a[4];  // A[query][key] = dSᵀ[key][query]
      for (int r = 0; r < 4; ++r) {
        const int ql = warp * 16 + group + ((r & 1) ? 8 : 0), kl = s * 16 + tig * 2 + ((r & 2) ? 8 : 0);
        a[r] = simt::pack_bf16x2(dst[kl * kBwdQueries + ql], dst[(kl + 1) * kBwdQueries + ql]);
      }
      for (int t = 0; t < kOutTiles; ++t) {
        const uint16_t* kc = ks + (s * 16 + tig * 2) * D + t * 8 + group;
        const uint32_t bk[2] = {simt::pack_bf16x2(kc[0], kc[D]), simt::pack_bf16x2(kc[8 * D], kc[9 * D])};
        simt::mma_m16n8k16_bf16(dq[t], a, bk, dq[t]);
      }
    }
    for (int t = 0; t < kOutTiles; ++t)
      for (int i = 0; i < 4; ++i) {
        const int query = q0 + warp * 16 + group + (i >= 2 ? 8 : 0), col = t * 8 + tig * 2 + (i & 1);
        if (query < p.seq) simt::atomic_add(p.dq + (head_row + query) * D + col, dq[t][i]);
      }
  }
  for (int t = 0; t < kOutTiles; ++t)
    for (int i = 0; i < 4; ++i) {
      const int key = key_lo + (i >= 2 ? 8 : 0), col = t * 8 + tig * 2 + (i & 1);
      if (key >= p.seq) continue;
      p.dk_heads[(head_row + key) * D + col] = dk[t][i];
      p.dv_heads[(head_row + key) * D + col] = dv[t][i];
    }
}

}  // namespace exatrain::kernels
