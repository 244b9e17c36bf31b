// The CPU flash attention (kernels/flash_attention_cpu.inc, through the operator layer) against
// the reference: ATen's SDPA with the visibility mask, run in float64 as the judge. Forward and
// every input gradient, for each instruction-set copy this CPU runs; windows that do not divide
// the sequence, GQA, head_dim off the vector width, bf16 inputs; and memory that stays linear in
// the sequence.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <tuple>
#include <vector>

#include "kernels/flash_attention.h"
#include "kernels/ops.h"
#include "trainer/train/memory_tracker.h"

namespace exatrain {
namespace {

struct Case {
  int64_t batch, heads, kv_heads, seq, head_dim, window;
};

std::string describe(const Case& c) {
  return "B" + std::to_string(c.batch) + " H" + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " T" +
         std::to_string(c.seq) + " D" + std::to_string(c.head_dim) + " W" + std::to_string(c.window);
}

struct Result {
  at::Tensor out, dq, dk, dv;
};

// float64 q, k, v and the output's gradient, from the current seed.
struct Inputs {
  at::Tensor q, k, v, g;
};
Inputs random_inputs(const Case& c) {
  Inputs in;
  in.q = at::randn({c.batch, c.heads, c.seq, c.head_dim}, at::kDouble);
  in.k = at::randn({c.batch, c.kv_heads, c.seq, c.head_dim}, at::kDouble);
  in.v = at::randn({c.batch, c.kv_heads, c.seq, c.head_dim}, at::kDouble);
  in.g = at::randn({c.batch, c.heads, c.seq, c.head_dim}, at::kDouble);
  return in;
}

Result run(const Case& c, ops::Impl impl, at::ScalarType dtype, uint64_t seed = 7) {
  at::manual_seed(seed);
  const Inputs in = random_inputs(c);
  at::Tensor q = in.q.to(dtype).requires_grad_(true), k = in.k.to(dtype).requires_grad_(true);
  at::Tensor v = in.v.to(dtype).requires_grad_(true);
  ops::AttentionSpec spec;
  spec.window = c.window;
  spec.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  at::Tensor out = ops::attention(q, k, v, spec, impl);
  out.backward(in.g.to(dtype));
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

// Max error relative to the largest reference value, or absolute where that is below 1 (with a
// window of 1 or a single token the true dq and dk are exactly 0: softmax over one key is 1).
double rel_err(const at::Tensor& got, const at::Tensor& want) {
  return (got.to(at::kDouble) - want).abs().max().item<double>() / std::max(1.0, want.abs().max().item<double>());
}

// Per output.
void expect_close(const Result& got, const Result& want, double bound, const std::string& what) {
  EXPECT_LE(rel_err(got.out, want.out), bound) << what << ": output";
  EXPECT_LE(rel_err(got.dq, want.dq), bound) << what << ": dq";
  EXPECT_LE(rel_err(got.dk, want.dk), bound) << what << ": dk";
  EXPECT_LE(rel_err(got.dv, want.dv), bound) << what << ": dv";
}

const Case kCases[] = {
    {2, 4, 2, 150, 24, 13},  // window not dividing the sequence or a tile; D off the vector width
    {1, 2, 1, 200, 64, 0},   // full causal, GQA 2:1, partial last tile
    {1, 3, 3, 64, 16, 64},   // window = sequence: plain causal
    {1, 4, 1, 130, 128, 70}, // head_dim 128, window longer than a tile
    {1, 2, 2, 1, 32, 4},     // one token
    {1, 2, 1, 300, 64, 1},   // window 1: each query sees only itself
};

class FlashAttentionCpu : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    previous_ = kernels::flash_attention_cpu_isa();
    if (!kernels::flash_attention_cpu_use_isa(GetParam())) GTEST_SKIP() << "this CPU lacks " << GetParam();
  }
  void TearDown() override { kernels::flash_attention_cpu_use_isa(previous_.c_str()); }
  std::string previous_;
};

// fp32 with fp32 accumulation against the float64 judge: measured up to 2.4e-6 (dk, window 1),
// most outputs below 1e-6 (the exp polynomial is < 1e-8; the rest is fp32 rounding).
TEST_P(FlashAttentionCpu, Fp32MatchesReference) {
  for (const Case& c : kCases) {
    const Result want = run(c, ops::Impl::Reference, at::kDouble);
    const Result got = run(c, ops::Impl::Cpu, at::kFloat);
    ASSERT_EQ(got.out.scalar_type(), at::kFloat);
    expect_close(got, want, 5e-6, std::string(GetParam()) + " " + describe(c));
  }
}

// bf16 inputs (rounded from the judge's float64 values, 2^-9 relative each) and bf16 outputs:
// measured 3.6e-3 to 8.3e-3 of the largest value; the bound is twice the worst, 2^-6.
TEST_P(FlashAttentionCpu, Bf16WithinRounding) {
  const Case c{1, 4, 2, 140, 32, 20};
  const Result want = run(c, ops::Impl::Reference, at::kDouble);
  const Result got = run(c, ops::Impl::Cpu, at::kBFloat16);
  ASSERT_EQ(got.out.scalar_type(), at::kBFloat16);
  ASSERT_EQ(got.dk.scalar_type(), at::kBFloat16);
  expect_close(got, want, 0.015625, std::string(GetParam()) + " bf16 " + describe(c));
}

// Document masks: rows of packed documents (lengths per row; a row of one document; documents of
// one token; boundaries on, just before and just after the 64-token tiles). The judge runs each
// document alone (plain causal or windowed float64 SDPA) and stitches the outputs and gradients
// together, so the segment path of every implementation is checked against no segments at all.
struct DocCase {
  Case c;
  std::vector<std::vector<int64_t>> docs;  // per row, document lengths summing to c.seq
};

at::Tensor segments_of(const DocCase& d) {
  at::Tensor seg = at::empty({d.c.batch, d.c.seq}, at::kInt);
  for (int64_t b = 0; b < d.c.batch; ++b) {
    int64_t t = 0, id = 0;
    for (int64_t n : d.docs[static_cast<size_t>(b)]) {
      seg[b].narrow(0, t, n).fill_(id++);
      t += n;
    }
  }
  return seg;
}

Result run_documents(const DocCase& d, ops::Impl impl, at::ScalarType dtype, bool per_document) {
  const Case& c = d.c;
  at::manual_seed(11);
  const Inputs in = random_inputs(c);
  at::Tensor q = in.q.to(dtype).requires_grad_(true), k = in.k.to(dtype).requires_grad_(true);
  at::Tensor v = in.v.to(dtype).requires_grad_(true);
  ops::AttentionSpec spec;
  spec.window = c.window;
  spec.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  at::Tensor out;
  if (!per_document) {
    spec.segments = segments_of(d);
    out = ops::attention(q, k, v, spec, impl);
  } else {
    std::vector<at::Tensor> rows;
    for (int64_t b = 0; b < c.batch; ++b) {
      std::vector<at::Tensor> parts;
      int64_t t = 0;
      for (int64_t n : d.docs[static_cast<size_t>(b)]) {
        auto cut = [&](const at::Tensor& x) { return x.narrow(0, b, 1).narrow(2, t, n); };
        parts.push_back(ops::attention(cut(q), cut(k), cut(v), spec, impl));
        t += n;
      }
      rows.push_back(at::cat(parts, 2));
    }
    out = at::cat(rows, 0);
  }
  out.backward(in.g.to(dtype));
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

const DocCase kDocCases[] = {
    {{2, 4, 2, 200, 24, 13}, {{70, 3, 1, 126}, {200}}},          // windowed, GQA, one-token document
    {{1, 2, 1, 256, 64, 0}, {{64, 64, 1, 63, 64}}},              // full causal, boundaries on tiles
    {{2, 3, 3, 150, 32, 70}, {{65, 85}, {1, 1, 1, 147}}},        // window longer than a tile
    {{1, 2, 2, 300, 16, 0}, {{10, 20, 30, 40, 50, 60, 90}}},     // many documents per tile
};

// The segment path against each document run alone, forward and the three gradients: our fp32
// kernel measured 1.2e-7 to 4.9e-7 of the largest value over the cases and ISA copies (bound
// 2e-6, four times that); the reference with a [batch, 1, seq, seq] mask, in float64, measured
// up to 6.2e-16 (rounding only; bound 1e-14).
TEST_P(FlashAttentionCpu, DocumentMasksMatchDocumentsAlone) {
  for (const DocCase& d : kDocCases) {
    const Result want = run_documents(d, ops::Impl::Reference, at::kDouble, true);
    expect_close(run_documents(d, ops::Impl::Reference, at::kDouble, false), want, 1e-14,
                 "reference " + describe(d.c));
    expect_close(run_documents(d, ops::Impl::Cpu, at::kFloat, false), want, 2e-6,
                 std::string(GetParam()) + " " + describe(d.c));
  }
}

TEST(FlashAttention, RejectsDecreasingSegments) {
  const at::Tensor q = at::zeros({1, 1, 4, 16});
  ops::AttentionSpec spec;
  spec.segments = at::tensor({0, 1, 0, 1}, at::kInt).view({1, 4});
  EXPECT_THROW(ops::attention(q, q, q, spec, ops::Impl::Cpu), std::exception);
}

INSTANTIATE_TEST_SUITE_P(Isa, FlashAttentionCpu, ::testing::Values("avx512", "avx2", "generic"));

// Sliding-window attention over 32K tokens: forward and backward hold O(seq x (window + tile))
// floats, never [seq, seq] (which would be 4 GiB here). Storage is counted by the tracker's
// allocator; the kernel's per-thread tiles are outside it and are O(tile^2) anyway.
TEST(FlashAttentionMemory, LinearInSequence) {
  MemoryTracker::install();
  const Case c{1, 2, 1, 32768, 64, 256};
  at::manual_seed(3);
  at::Tensor q = at::randn({c.batch, c.heads, c.seq, c.head_dim}).requires_grad_(true);
  at::Tensor k = at::randn({c.batch, c.kv_heads, c.seq, c.head_dim}).requires_grad_(true);
  at::Tensor v = at::randn({c.batch, c.kv_heads, c.seq, c.head_dim}).requires_grad_(true);
  const int64_t inputs = MemoryTracker::allocated();
  MemoryTracker::reset_peak();
  ops::AttentionSpec spec;
  spec.window = c.window;
  spec.scale = 0.125;
  at::Tensor out = ops::attention(q, k, v, spec, ops::Impl::Cpu);
  out.sum().backward();
  const int64_t extra = MemoryTracker::peak() - inputs;
  // What the op keeps or makes, in [seq, head_dim]-sized fp32 planes per query head: fp32 copies
  // of q, k, v, the output and its gradient, dq, and per-head dk and dv, plus a few
  // [seq]-sized rows; allow 16 planes. The [seq, seq] scores would be 2048 such planes.
  const int64_t plane = c.batch * c.heads * c.seq * c.head_dim * 4;
  EXPECT_LT(extra, 16 * plane) << "peak extra storage " << extra << " bytes";
  EXPECT_TRUE(at::isfinite(q.grad()).all().item<bool>());
}

TEST(FlashAttention, RejectsBadShapes) {
  const at::Tensor q = at::zeros({1, 3, 8, 16}), k = at::zeros({1, 2, 8, 16});
  EXPECT_THROW(ops::attention(q, k, k, {}, ops::Impl::Cpu), std::exception);  // 3 heads over 2 KV heads
  EXPECT_THROW(ops::attention(q, at::zeros({1, 1, 8, 8}), at::zeros({1, 1, 8, 8}), {}, ops::Impl::Cpu),
               std::exception);  // head_dim differs
}

}  // namespace
}  // namespace exatrain
