// The SIMT emulation (kernels/simt.h) and the tensor-core flash attention kernel body run under
// it. The mma check builds its fragments from PTX's documented formulas (not from the
// emulation's inverse mapping) and compares with a plain matrix product; the attention check
// compares the kernel with attention written out in double precision on the same bf16 inputs.
// Built twice: in unit_core, and with ThreadSanitizer as unit_simt_tsan (shared-memory races
// between the emulated threads fail that run).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cross_entropy.h"
#include "kernels/flash_attention_cuda.h"
#include "kernels/simt.h"

namespace exatrain::kernels {
namespace {

TEST(Simt, Bf16RoundsToNearestEven) {
  EXPECT_EQ(simt::bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(simt::bf16_to_float(simt::bf16_bits(1.0f + 1.0f / 256)), 1.0f);  // tie to even (down)
  EXPECT_EQ(simt::bf16_to_float(simt::bf16_bits(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);  // tie to even (up)
  EXPECT_TRUE(std::isnan(simt::bf16_to_float(simt::bf16_bits(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(simt::bf16_to_float(simt::bf16_bits(-INFINITY)), -INFINITY);
}

TEST(Simt, ShuffleXorAndBlockBarrier) {
  std::vector<float> out(64);
  std::vector<int> seen(64);
  simt::launch({1, 1}, 64, 64 * sizeof(int), [&] {
    const int t = simt::thread_x();
    int* shared = simt::dynamic_shared<int>();
    shared[t] = t * 10;
    simt::sync_block();
    seen[static_cast<size_t>(t)] = shared[63 - t];  // written by another warp before the barrier
    out[static_cast<size_t>(t)] = simt::shfl_xor(static_cast<float>(t), 5);
  });
  for (int t = 0; t < 64; ++t) {
    EXPECT_EQ(out[static_cast<size_t>(t)], static_cast<float>(t ^ 5)) << t;
    EXPECT_EQ(seen[static_cast<size_t>(t)], (63 - t) * 10) << t;
  }
}

// One warp: D = A B + C with A 16x16, B 16x8 (bf16), C 16x8 (f32), fragments per PTX.
TEST(Simt, MmaM16n8k16MatchesMatrixProduct) {
  std::mt19937 gen(3);
  std::normal_distribution<float> normal;
  float A[16][16], B[16][8], C[16][8];
  for (auto& row : A)
    for (float& x : row) x = simt::bf16_to_float(simt::bf16_bits(normal(gen)));
  for (auto& row : B)
    for (float& x : row) x = simt::bf16_to_float(simt::bf16_bits(normal(gen)));
  for (auto& row : C)
    for (float& x : row) x = normal(gen);
  float D[16][8] = {};
  simt::launch({1, 1}, 32, 0, [&] {
    const int lane = simt::lane(), group = lane >> 2, tig = lane & 3;
    uint32_t a[4], b[2];
    float c[4], d[4];
    for (int r = 0; r < 4; ++r) {  // a_i: row = group (+8 for i in 2,3,6,7); col = tig*2 + (i&1) (+8 for i >= 4)
      const int i = 2 * r, row = group + ((i == 2 || i == 6) ? 8 : 0), col = tig * 2 + (i >= 4 ? 8 : 0);
      a[r] = simt::pack_bf16x2(A[row][col], A[row][col + 1]);
    }
    for (int r = 0; r < 2; ++r) {  // b_i: row = tig*2 + (i&1) (+8 for i >= 2); col = group
      const int k = tig * 2 + (r ? 8 : 0);
      b[r] = simt::pack_bf16x2(B[k][group], B[k + 1][group]);
    }
    for (int i = 0; i < 4; ++i) c[i] = C[group + (i >= 2 ? 8 : 0)][tig * 2 + (i & 1)];
    simt::mma_m16n8k16_bf16(d, a, b, c);
    for (int i = 0; i < 4; ++i) D[group + (i >= 2 ? 8 : 0)][tig * 2 + (i & 1)] = d[i];
  });
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      double want = C[i][j];
      for (int k = 0; k < 16; ++k) want += static_cast<double>(A[i][k]) * B[k][j];
      EXPECT_NEAR(D[i][j], want, 1e-5 * (1 + std::abs(want))) << i << "," << j;
    }
}

struct Case {
  int batch, heads, kv_heads, seq, head_dim, window;
  int doc = 0;  // > 0: document masks, documents of `doc` tokens (token t is in document t / doc)
  // Whether key j is in query i's document, and the segment ids the kernels get (empty: none).
  bool same_document(int i, int j) const { return doc <= 0 || i / doc == j / doc; }
  std::vector<int32_t> segments() const {
    std::vector<int32_t> seg;
    for (int b = 0; doc > 0 && b < batch; ++b)
      for (int t = 0; t < seq; ++t) seg.push_back(t / doc);
    return seg;
  }
};

// Attention in double over the same bf16 values: out [B, H, T, D] and lse [B, H, T].
void reference(const Case& c, const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
               std::vector<double>& out, std::vector<double>& lse) {
  const int T = c.seq, D = c.head_dim, group = c.heads / c.kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  out.assign(static_cast<size_t>(c.batch) * c.heads * T * D, 0.0);
  lse.assign(static_cast<size_t>(c.batch) * c.heads * T, 0.0);
  for (int b = 0; b < c.batch; ++b)
    for (int h = 0; h < c.heads; ++h) {
      const size_t qh = (static_cast<size_t>(b) * c.heads + h) * T, kh = (static_cast<size_t>(b) * c.kv_heads + h / group) * T;
      for (int i = 0; i < T; ++i) {
        std::vector<double> s(static_cast<size_t>(T), -INFINITY);
        double mx = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          if ((c.window > 0 && j <= i - c.window) || !c.same_document(i, j)) continue;
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += static_cast<double>(q[(qh + i) * D + d]) * k[(kh + j) * D + d];
          s[static_cast<size_t>(j)] = dot * scale;
          mx = std::max(mx, s[static_cast<size_t>(j)]);
        }
        double sum = 0;
        for (double& x : s) sum += x == -INFINITY ? (x = 0) : (x = std::exp(x - mx));
        for (int j = 0; j < T; ++j)
          for (int d = 0; d < D; ++d) out[(qh + i) * D + d] += s[static_cast<size_t>(j)] / sum * v[(kh + j) * D + d];
        lse[qh + i] = mx + std::log(sum);
      }
    }
}

TEST(FlashAttentionTensorCores, EmulatedForwardMatchesReference) {
  for (const Case& c : {Case{1, 2, 1, 100, 64, 0},    // GQA 2:1, partial second tile
                        Case{1, 1, 1, 130, 32, 37},   // window crossing tiles, not dividing anything
                        Case{1, 1, 1, 70, 128, 0},    // head_dim 128
                        Case{1, 2, 1, 1, 64, 4},      // one token
                        Case{2, 2, 1, 150, 32, 0, 23},  // document masks: several documents per tile
                        Case{1, 1, 1, 150, 64, 37, 70}}) {  // documents across tiles, a window, a tile skipped
    std::mt19937 gen(7);
    std::normal_distribution<float> normal;
    const size_t nq = static_cast<size_t>(c.batch) * c.heads * c.seq * c.head_dim;
    const size_t nk = static_cast<size_t>(c.batch) * c.kv_heads * c.seq * c.head_dim;
    std::vector<uint16_t> qb(nq), kb(nk), vb(nk), ob(nq);
    std::vector<float> q(nq), k(nk), v(nk), lse(static_cast<size_t>(c.batch) * c.heads * c.seq);
    auto fill = [&](std::vector<uint16_t>& bits, std::vector<float>& values) {
      for (size_t i = 0; i < bits.size(); ++i) {
        bits[i] = simt::bf16_bits(normal(gen));
        values[i] = simt::bf16_to_float(bits[i]);
      }
    };
    fill(qb, q);
    fill(kb, k);
    fill(vb, v);
    const std::vector<int32_t> seg = c.segments();
    FlashFwdParams p{qb.data(), kb.data(), vb.data(), ob.data(), lse.data(), c.batch, c.heads, c.kv_heads, c.seq,
                     c.window, static_cast<float>(1.0 / std::sqrt(c.head_dim)), seg.empty() ? nullptr : seg.data()};
    flash_attention_forward_emulated(p, c.head_dim);
    std::vector<double> want, want_lse;
    reference(c, q, k, v, want, want_lse);
    double err = 0, lse_err = 0, scale = 1;
    for (size_t i = 0; i < nq; ++i) {
      err = std::max(err, std::abs(simt::bf16_to_float(ob[i]) - want[i]));
      scale = std::max(scale, std::abs(want[i]));
    }
    for (size_t i = 0; i < lse.size(); ++i) lse_err = std::max(lse_err, std::abs(lse[i] - want_lse[i]));
    // The output is rounded to bf16 (2^-9 relative) and so are the probabilities fed to the
    // P V product: measured up to 2.6e-3 of the largest value (2.7e-3 with document masks),
    // bound 6e-3. The log-sum-exp is fp32 throughout: measured up to 9.1e-7, bound 4e-6.
    EXPECT_LE(err / scale, 6e-3) << "T" << c.seq << " D" << c.head_dim << " W" << c.window << " doc " << c.doc;
    EXPECT_LE(lse_err, 4e-6) << "T" << c.seq << " D" << c.head_dim << " W" << c.window << " doc " << c.doc;
  }
}

// Gradients in double by the textbook formulas (P = softmax(scale q k), dV = Pᵀ dO,
// dS = P ∘ (dO Vᵀ − rowsum(dO ∘ O)), dQ = scale dS K, dK = scale dSᵀ Q), per query head.
void reference_backward(const Case& c, const std::vector<float>& q, const std::vector<float>& k,
                        const std::vector<float>& v, const std::vector<float>& dout, std::vector<double>& dq,
                        std::vector<double>& dk, std::vector<double>& dv) {
  const int T = c.seq, D = c.head_dim, group = c.heads / c.kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const size_t n = static_cast<size_t>(c.batch) * c.heads * T * D;
  dq.assign(n, 0.0);
  dk.assign(n, 0.0);  // per query head, as the kernel writes them
  dv.assign(n, 0.0);
  for (int b = 0; b < c.batch; ++b)
    for (int h = 0; h < c.heads; ++h) {
      const size_t qh = (static_cast<size_t>(b) * c.heads + h) * T, kh = (static_cast<size_t>(b) * c.kv_heads + h / group) * T;
      for (int i = 0; i < T; ++i) {
        std::vector<double> p(static_cast<size_t>(T), 0.0), dp(static_cast<size_t>(T), 0.0);
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j <= i; ++j)
          if ((c.window <= 0 || j > i - c.window) && c.same_document(i, j)) {
            double dot = 0;
            for (int d = 0; d < D; ++d) dot += static_cast<double>(q[(qh + i) * D + d]) * k[(kh + j) * D + d];
            p[static_cast<size_t>(j)] = dot * scale;
            mx = std::max(mx, dot * scale);
          }
        for (int j = 0; j <= i; ++j)
          if ((c.window <= 0 || j > i - c.window) && c.same_document(i, j))
            sum += (p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - mx));
        double delta = 0;
        for (int j = 0; j < T; ++j) {
          p[static_cast<size_t>(j)] /= sum;
          for (int d = 0; d < D; ++d) {
            dp[static_cast<size_t>(j)] += static_cast<double>(dout[(qh + i) * D + d]) * v[(kh + j) * D + d];
            dv[(qh + j) * D + d] += p[static_cast<size_t>(j)] * dout[(qh + i) * D + d];
          }
          delta += p[static_cast<size_t>(j)] * dp[static_cast<size_t>(j)];
        }
        for (int j = 0; j < T; ++j) {
          const double ds = p[static_cast<size_t>(j)] * (dp[static_cast<size_t>(j)] - delta) * scale;
          for (int d = 0; d < D; ++d) {
            dq[(qh + i) * D + d] += ds * k[(kh + j) * D + d];
            dk[(qh + j) * D + d] += ds * q[(qh + i) * D + d];
          }
        }
      }
    }
}

TEST(FlashAttentionTensorCores, EmulatedBackwardMatchesReference) {
  for (const Case& c : {Case{1, 2, 1, 80, 64, 0},     // GQA 2:1, partial tile, full causal
                        Case{1, 1, 1, 150, 32, 37},   // window crossing tiles; three key tiles
                        Case{1, 1, 1, 40, 128, 0},    // head_dim 128 (72.5 KiB of shared memory)
                        Case{2, 2, 1, 150, 32, 0, 23},  // document masks: several documents per tile
                        Case{1, 1, 1, 150, 64, 37, 70}}) {  // documents across tiles, a window
    std::mt19937 gen(9);
    std::normal_distribution<float> normal;
    const size_t nq = static_cast<size_t>(c.batch) * c.heads * c.seq * c.head_dim;
    const size_t nk = static_cast<size_t>(c.batch) * c.kv_heads * c.seq * c.head_dim;
    const size_t rows = static_cast<size_t>(c.batch) * c.heads * c.seq;
    std::vector<uint16_t> qb(nq), kb(nk), vb(nk), db(nq), ob(nq);
    std::vector<float> q(nq), k(nk), v(nk), dout(nq), lse(rows), delta(rows);
    auto fill = [&](std::vector<uint16_t>& bits, std::vector<float>& values) {
      for (size_t i = 0; i < bits.size(); ++i) {
        bits[i] = simt::bf16_bits(normal(gen));
        values[i] = simt::bf16_to_float(bits[i]);
      }
    };
    fill(qb, q);
    fill(kb, k);
    fill(vb, v);
    fill(db, dout);
    const float scale = static_cast<float>(1.0 / std::sqrt(c.head_dim));
    // The forward kernel's log-sum-exp and output feed the backward, as in training.
    const std::vector<int32_t> seg = c.segments();
    const int32_t* segments = seg.empty() ? nullptr : seg.data();
    flash_attention_forward_emulated(FlashFwdParams{qb.data(), kb.data(), vb.data(), ob.data(), lse.data(), c.batch,
                                                    c.heads, c.kv_heads, c.seq, c.window, scale, segments},
                                     c.head_dim);
    for (size_t r = 0; r < rows; ++r) {
      double acc = 0;
      for (int d = 0; d < c.head_dim; ++d)
        acc += static_cast<double>(dout[r * c.head_dim + d]) * simt::bf16_to_float(ob[r * c.head_dim + d]);
      delta[r] = static_cast<float>(acc);
    }
    std::vector<float> dq(nq, 0.f), dk(nq), dv(nq);
    flash_attention_backward_emulated(FlashBwdParams{qb.data(), kb.data(), vb.data(), db.data(), lse.data(),
                                                     delta.data(), dq.data(), dk.data(), dv.data(), c.batch, c.heads,
                                                     c.kv_heads, c.seq, c.window, scale, segments},
                                      c.head_dim);
    std::vector<double> wq, wk, wv;
    reference_backward(c, q, k, v, dout, wq, wk, wv);
    auto rel = [](const std::vector<float>& got, const std::vector<double>& want) {
      double err = 0, top = 1;
      for (size_t i = 0; i < got.size(); ++i) {
        err = std::max(err, std::abs(got[i] - want[i]));
        top = std::max(top, std::abs(want[i]));
      }
      return err / top;
    };
    // bf16 operands in every product (the inputs, P and dS rounded to bf16, 2^-9 each) and the
    // bf16 forward output inside δ: measured up to 2.6e-3 of the largest value here (6.1e-3 for
    // dk with documents of 23 tokens) and 4.6e-3 on the case `selftest --kernels` runs; bound
    // 1e-2 (5 x 2^-9).
    const std::string what = "T" + std::to_string(c.seq) + " D" + std::to_string(c.head_dim) + " W" +
                             std::to_string(c.window) + " doc " + std::to_string(c.doc);
    EXPECT_LE(rel(dq, wq), 1e-2) << what << ": dq";
    EXPECT_LE(rel(dk, wk), 1e-2) << what << ": dk";
    EXPECT_LE(rel(dv, wv), 1e-2) << what << ": dv";
  }
}


// The CUDA cross-entropy kernels (kernels/cross_entropy_kernel.cuh) under the emulation, one
// block of 256 threads per row, against the loss and gradient written out in double on the same
// values: rows shorter than the block (threads with nothing to do), odd sizes, a vocabulary
// slice (targets on other ranks), an ignored row, bf16 logits and gradients, logits near 3e4.
TEST(CrossEntropyKernel, EmulatedMatchesDouble) {
  struct XentCase {
    int64_t rows, cols, vocab_start;
    float scale, offset;
    bool bf16;
  };
  for (const XentCase& c : {XentCase{3, 100, 0, 3, 0, false}, XentCase{4, 1031, 0, 4, 0, false},
                            XentCase{4, 777, 500, 2, 0, false}, XentCase{3, 2049, 0, 1000, 3e4f, false},
                            XentCase{4, 1031, 0, 4, 0, true}}) {
    std::mt19937 gen(static_cast<unsigned>(c.cols));
    std::normal_distribution<float> normal;
    const size_t n = static_cast<size_t>(c.rows * c.cols);
    std::vector<float> z(n);
    std::vector<uint16_t> zb(n);
    for (size_t i = 0; i < n; ++i) {
      z[i] = normal(gen) * c.scale + c.offset;
      if (c.bf16) {
        zb[i] = simt::bf16_bits(z[i]);
        z[i] = simt::bf16_to_float(zb[i]);
      }
    }
    // row 0: the last column of the slice; row 1: ignored; row 2: another slice's id (with a
    // vocab_start) or column 0; others random
    std::vector<int64_t> targets(static_cast<size_t>(c.rows));
    for (int64_t r = 0; r < c.rows; ++r) targets[static_cast<size_t>(r)] = c.vocab_start + (r * 37) % c.cols;
    targets[0] = c.vocab_start + c.cols - 1;
    targets[1] = kIgnoreTarget;
    targets[2] = c.vocab_start > 0 ? 3 : 0;
    std::vector<float> mx(static_cast<size_t>(c.rows)), sum(mx.size()), tgt(mx.size()), log_sum(mx.size()), g(mx.size());
    CrossEntropyParams p;
    p.logits = c.bf16 ? static_cast<const void*>(zb.data()) : z.data();
    p.bf16 = c.bf16;
    p.targets = targets.data();
    p.rows = c.rows;
    p.cols = c.cols;
    p.vocab_start = c.vocab_start;
    p.row_max = mx.data();
    p.row_sum = sum.data();
    p.target_logit = tgt.data();
    cross_entropy_forward_emulated(p);
    for (size_t r = 0; r < mx.size(); ++r) {
      log_sum[r] = std::log(sum[r]);
      g[r] = 0.5f + static_cast<float>(r);
    }
    std::vector<float> dz(n);
    std::vector<uint16_t> dzb(n);
    p.max = mx.data();
    p.log_sum = log_sum.data();
    p.grad = g.data();
    p.dlogits = c.bf16 ? static_cast<void*>(dzb.data()) : dz.data();
    cross_entropy_backward_emulated(p);
    double loss_err = 0, grad_err = 0, grad_top = 0;
    for (int64_t r = 0; r < c.rows; ++r) {
      const float* zr = z.data() + r * c.cols;
      double m = -INFINITY, s = 0;
      for (int64_t i = 0; i < c.cols; ++i) m = std::max(m, static_cast<double>(zr[i]));
      for (int64_t i = 0; i < c.cols; ++i) s += std::exp(zr[i] - m);
      const int64_t t = targets[static_cast<size_t>(r)] - c.vocab_start;
      const bool mine = targets[static_cast<size_t>(r)] != kIgnoreTarget && t >= 0 && t < c.cols;
      // the kernel's partials give the loss as the binding forms it: log S - (z_t - M)
      const double want_loss = std::log(s) - (mine ? zr[t] - m : 0.0);
      const double got_loss = log_sum[static_cast<size_t>(r)] - (tgt[static_cast<size_t>(r)] - (mine ? mx[static_cast<size_t>(r)] : 0.f));
      if (mine) loss_err = std::max(loss_err, std::abs(got_loss - want_loss) / std::max(1.0, std::abs(want_loss)));
      EXPECT_EQ(mx[static_cast<size_t>(r)], static_cast<float>(m));
      EXPECT_NEAR(std::log(sum[static_cast<size_t>(r)]), std::log(s), 1e-6) << "row " << r;
      if (!mine) {
        EXPECT_EQ(tgt[static_cast<size_t>(r)], 0.f);
      }
      const double gr = targets[static_cast<size_t>(r)] == kIgnoreTarget ? 0.0 : g[static_cast<size_t>(r)];
      for (int64_t i = 0; i < c.cols; ++i) {
        const double want = (std::exp(zr[i] - m) / s - (mine && i == t ? 1.0 : 0.0)) * gr;
        const size_t k = static_cast<size_t>(r * c.cols + i);
        const double got = c.bf16 ? simt::bf16_to_float(dzb[k]) : dz[k];
        grad_err = std::max(grad_err, std::abs(got - want));
        grad_top = std::max(grad_top, std::abs(want));
      }
    }
    // exps and sums in double, results rounded to fp32: measured up to 4.9e-8 (loss, relative)
    // and 3.0e-8 (gradient, of its largest entry), bounds 3e-7 (the fused CPU kernel's,
    // tests/unit/test_cross_entropy.cpp); bf16 gradients rounded once, at most half an ulp,
    // 2^-8 of a value in [1, 2): measured 4.3e-4, bound 3.9e-3.
    const std::string what = std::to_string(c.rows) + " x " + std::to_string(c.cols) + (c.bf16 ? " bf16" : " fp32");
    EXPECT_LE(loss_err, 3e-7) << what;
    EXPECT_LE(grad_err / std::max(1.0, grad_top), c.bf16 ? 3.9e-3 : 3e-7) << what;
    std::printf("cross-entropy emulated %s: loss %.2e, gradient %.2e\n", what.c_str(), loss_err,
                grad_err / std::max(1.0, grad_top));
  }
}

}  // namespace
}  // namespace exatrain::kernels
