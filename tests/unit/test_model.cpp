// Model numerics against hand-computed values: llama3 RoPE frequencies, sliding-window mask
// edges, RMSNorm, the GQA head mapping; and recomputation giving the same gradients.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <cmath>

#include "kernels/ops.h"
#include "trainer/model/exaone4.h"
#include "trainer/plan/cost_model.h"

namespace exatrain {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 4;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.sliding_window = 5;
  c.sliding_window_pattern = 4;
  c.max_position_embeddings = 64;
  c.pad_token_id = 0;
  return c;
}

TEST(Rope, Llama3FrequenciesByHand) {
  ModelConfig c = tiny_config();  // head_dim 8: base frequencies 1, 0.1, 0.01, 0.001
  c.rope_theta = 10000;
  c.rope_scaling.type = RopeScaling::Llama3;
  c.rope_scaling.factor = 8;
  c.rope_scaling.low_freq_factor = 1;
  c.rope_scaling.high_freq_factor = 4;
  c.rope_scaling.original_max_position = 1024;  // wavelengths < 256 kept, > 1024 divided by 8
  at::Tensor f = rope_inverse_frequencies(c);
  ASSERT_EQ(f.numel(), 4);
  // wavelength 2*pi (kept), 62.8 (kept), 628.3 (between: smoothed), 6283 (divided by 8).
  EXPECT_NEAR(f[0].item<float>(), 1.0f, 1e-7f);
  EXPECT_NEAR(f[1].item<float>(), 0.1f, 1e-7f);
  // smooth = (1024 / 628.3185 - 1) / 3 = 0.2099155; (1 - smooth) * 0.01 / 8 + smooth * 0.01
  EXPECT_NEAR(f[2].item<float>(), 0.00308676f, 1e-8f);
  EXPECT_NEAR(f[3].item<float>(), 0.000125f, 1e-9f);
}

TEST(Rope, TablesAndRotation) {
  ModelConfig c = tiny_config();
  c.head_dim = 2;  // one frequency, 1.0: position p rotates by p radians
  c.hidden_size = 8;
  RopeTables t = rope_tables(rope_inverse_frequencies(c), 3);
  at::Tensor x = at::tensor({1.0f, 0.0f}).view({1, 1, 1, 2}).expand({1, 1, 3, 2}).contiguous();
  at::Tensor y = apply_rope(x, t);  // half-rotation layout: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)
  for (int p = 0; p < 3; ++p) {
    EXPECT_NEAR(y[0][0][p][0].item<float>(), std::cos(p), 1e-6);
    EXPECT_NEAR(y[0][0][p][1].item<float>(), std::sin(p), 1e-6);
  }
}

TEST(Attention, SlidingWindowMaskEdges) {
  at::Tensor m = ops::visibility_mask(6, 3, at::kCPU);  // q - 3 < k <= q
  EXPECT_FALSE(m[4][1].item<bool>());
  EXPECT_TRUE(m[4][2].item<bool>());
  EXPECT_TRUE(m[4][4].item<bool>());
  EXPECT_FALSE(m[4][5].item<bool>());
  EXPECT_TRUE(m[0][0].item<bool>());
  EXPECT_TRUE(at::equal(m.sum(1), at::tensor({1L, 2L, 3L, 3L, 3L, 3L})));
  at::Tensor causal = ops::visibility_mask(4, 0, at::kCPU);
  EXPECT_TRUE(at::equal(causal.sum(1), at::tensor({1L, 2L, 3L, 4L})));
}

// Document masks: positions restart at each document, the per-token tables are the plain
// table's rows at those positions (bit for bit), and the mask keeps each query in its document.
TEST(Rope, DocumentPositionsAndPerTokenTables) {
  const at::Tensor seg = at::tensor({0, 0, 1, 1, 1, 2, 0, 0, 0, 0, 0, 1}, at::kInt).view({2, 6});
  const at::Tensor pos = document_positions(seg);
  EXPECT_TRUE(at::equal(pos, at::tensor({0L, 1L, 0L, 1L, 2L, 0L, 0L, 1L, 2L, 3L, 4L, 0L}).view({2, 6})));
  ModelConfig c;
  c.hidden_size = 16;
  c.num_heads = 2;
  const at::Tensor inv = rope_inverse_frequencies(c);
  const RopeTables plain = rope_tables(inv, 6), per_token = rope_tables(inv, pos);
  ASSERT_EQ(per_token.cos.sizes(), (at::IntArrayRef{2, 1, 6, 8}));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 6; ++t) {
      EXPECT_TRUE(at::equal(per_token.cos[b][0][t], plain.cos[pos[b][t].item<int64_t>()]));
      EXPECT_TRUE(at::equal(per_token.sin[b][0][t], plain.sin[pos[b][t].item<int64_t>()]));
    }
  const at::Tensor m = ops::visibility_mask(6, 2, at::kCPU, seg);  // window 2 within documents
  ASSERT_EQ(m.sizes(), (at::IntArrayRef{2, 1, 6, 6}));
  EXPECT_TRUE(at::equal(m[0][0].sum(1), at::tensor({1L, 2L, 1L, 2L, 2L, 1L})));
  EXPECT_FALSE(m[0][0][2][1].item<bool>());  // the previous document
  EXPECT_TRUE(at::equal(m[1][0].sum(1), at::tensor({1L, 2L, 2L, 2L, 2L, 1L})));
}

TEST(Norm, RmsNormByHand) {
  at::Tensor y = rms_norm(at::tensor({3.0f, 4.0f}), at::tensor({1.0f, 2.0f}), 0.0);
  EXPECT_NEAR(y[0].item<float>(), 3 / std::sqrt(12.5f), 1e-6);
  EXPECT_NEAR(y[1].item<float>(), 2 * 4 / std::sqrt(12.5f), 1e-6);
  // bf16 input: computed in fp32, cast back, then scaled by the fp32 weight.
  at::Tensor yb = rms_norm(at::tensor({3.0f, 4.0f}).to(at::kBFloat16), at::ones({2}), 0.0);
  EXPECT_EQ(yb.scalar_type(), at::kFloat);
  EXPECT_NEAR(yb[0].item<float>(), 0.8485f, 4e-3);
}

// The fused CPU RMSNorm (ops::rms_norm, Impl::Cpu) against the formula in float64: output, dx
// and dweight, rows of widths that are and are not multiples of the kernel's 8 lanes, the
// per-head shape of the q/k norms, one and several threads.
TEST(Norm, FusedCpuKernelAgainstFloat64) {
  at::manual_seed(7);
  const std::vector<std::vector<int64_t>> shapes{{3, 5, 7}, {2, 4, 16, 64}, {4, 9, 512}, {1, 1}};
  double worst_y = 0, worst_dx = 0, worst_dw = 0;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (const auto& shape : shapes) {
      const int64_t cols = shape.back();
      at::Tensor x = at::randn(shape, at::kDouble) * 3, w = at::rand({cols}, at::kDouble) + 0.5;
      at::Tensor dy = at::randn(shape, at::kDouble);
      // float64 judge
      at::Tensor xd = x.clone().requires_grad_(true), wd = w.clone().requires_grad_(true);
      at::Tensor yd = wd * (xd * at::rsqrt(xd.pow(2).mean(-1, true) + 1e-5));
      yd.backward(dy);
      at::Tensor xf = x.to(at::kFloat).requires_grad_(true), wf = w.to(at::kFloat).requires_grad_(true);
      at::Tensor yf = ops::rms_norm(xf, wf, 1e-5, ops::Impl::Cpu);
      ASSERT_EQ(yf.scalar_type(), at::kFloat);
      yf.backward(dy.to(at::kFloat));
      auto rel = [](const at::Tensor& got, const at::Tensor& want) {
        return ((got.to(at::kDouble) - want).abs().max() / want.abs().max()).item<double>();
      };
      // fp32 rounding of a few operations per element (measured <= 1.8e-7 on these shapes)
      EXPECT_LT(rel(yf, yd), 1e-6) << c10::str(shape);
      // dx = s (dn - n mean(dn n)) cancels (for one column entirely): its error is judged against
      // the size of the first term, s |dy w|, as fp32 rounding of that sum would be
      const double term = (dy * w * at::rsqrt(x.pow(2).mean(-1, true) + 1e-5)).abs().max().item<double>();
      EXPECT_LT((xf.grad().to(at::kDouble) - xd.grad()).abs().max().item<double>() / term, 1e-6) << c10::str(shape);
      // dweight sums over all rows: fp32 accumulation over up to 1,152 rows (measured <= 3.5e-7)
      EXPECT_LT(rel(wf.grad(), wd.grad()), 2e-6) << c10::str(shape);
      worst_y = std::max(worst_y, rel(yf, yd));
      worst_dx = std::max(worst_dx, (xf.grad().to(at::kDouble) - xd.grad()).abs().max().item<double>() / term);
      worst_dw = std::max(worst_dw, rel(wf.grad(), wd.grad()));
    }
  }
  std::printf("fused rmsnorm against float64: y %.2e, dx %.2e, dweight %.2e\n", worst_y, worst_dx, worst_dw);
  at::set_num_threads(1);
}

// bf16 input: the kernel rounds the normalised row (and, in backward, the gradient reaching it)
// as the reference's casts do, so it matches the ATen reference to fp32 rounding, not just bf16.
TEST(Norm, FusedCpuKernelBf16MatchesReference) {
  at::manual_seed(8);
  at::Tensor x = (at::randn({6, 33, 128}) * 2).to(at::kBFloat16), w = at::rand({128}) + 0.5;
  at::Tensor dy = at::randn({6, 33, 128});
  at::Tensor xr = x.clone().requires_grad_(true), wr = w.clone().requires_grad_(true);
  at::Tensor yr = ops::rms_norm(xr, wr, 1e-5, ops::Impl::Reference);
  yr.backward(dy);
  at::Tensor xc = x.clone().requires_grad_(true), wc = w.clone().requires_grad_(true);
  at::Tensor yc = ops::rms_norm(xc, wc, 1e-5, ops::Impl::Cpu);
  yc.backward(dy);
  ASSERT_EQ(yc.scalar_type(), yr.scalar_type());
  ASSERT_EQ(xc.grad().scalar_type(), at::kBFloat16);
  const double scale = yr.abs().max().item<double>();
  // measured: equal everywhere; allowed: one bf16 ulp (2^-8) where the two fp32 sums of squares
  // (the kernel's 8 lanes, ATen's order) round a normalised element the other way
  EXPECT_LT((yc - yr).abs().max().item<double>() / scale, 4e-3);
  EXPECT_GT((yc == yr).to(at::kFloat).mean().item<double>(), 0.99);
  EXPECT_LT(((xc.grad() - xr.grad()).to(at::kFloat).abs().max() / xr.grad().to(at::kFloat).abs().max()).item<double>(),
            4e-3);
  // dweight: an element rounded the other way (above) moves its column's sum by |dy| x one ulp;
  // measured 4.7e-5 with one such element in 10^4 (other seeds), 3.6e-7 without
  EXPECT_LT(((wc.grad() - wr.grad()).abs().max() / wr.grad().abs().max()).item<double>(), 1e-3);
  std::printf("fused rmsnorm bf16 against the reference: y %.2e (%.4f equal), dx %.2e, dweight %.2e\n",
              (yc - yr).abs().max().item<double>() / scale, (yc == yr).to(at::kFloat).mean().item<double>(),
              ((xc.grad() - xr.grad()).to(at::kFloat).abs().max() / xr.grad().to(at::kFloat).abs().max()).item<double>(),
              ((wc.grad() - wr.grad()).abs().max() / wr.grad().abs().max()).item<double>());
}

TEST(Attention, GqaHeadMapping) {
  for (int h = 0; h < 8; ++h) EXPECT_EQ(kv_head_of(h, 8, 2), h / 4);
  EXPECT_EQ(kv_head_of(5, 8, 8), 5);
  // A GQA model equals a multi-head model whose K/V heads are copies: query head h sees KV head h / 2.
  ModelConfig gqa = tiny_config();
  ModelConfig mha = gqa;
  mha.num_kv_heads = 4;
  Exaone4Model a(gqa, at::kFloat), b(mha, at::kFloat);
  init_parameters(a, 3);
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < a.specs().size(); ++i) {
    const std::string& name = a.specs()[i].name;
    at::Tensor src = a.params()[i], dst = b.param(name);
    if (name.ends_with("k_proj.weight") || name.ends_with("v_proj.weight"))
      dst.copy_(src.view({2, 8, 32}).repeat_interleave(2, 0).reshape({32, 32}));
    else
      dst.copy_(src);
  }
  at::Tensor ids = at::randint(1, 50, {2, 12}, at::kLong);
  EXPECT_LT((a.forward(ids) - b.forward(ids)).abs().max().item<float>(), 1e-5f);
}

TEST(Model, PadRowGetsNoGradient) {
  Exaone4Model m(tiny_config(), at::kFloat);
  init_parameters(m, 1);
  m.set_requires_grad(true);
  at::Tensor ids = at::tensor({5L, 0L, 7L, 0L, 9L}).view({1, 5});
  causal_lm_loss(m.forward(ids), ids).backward();
  at::Tensor g = m.param("model.embed_tokens.weight").grad();
  // Untied: the pad row (0) gets nothing; the rows of ids used get something.
  EXPECT_EQ(g[0].abs().sum().item<float>(), 0.0f);
  EXPECT_GT(g[5].abs().sum().item<float>(), 0.0f);
}

TEST(Model, RecomputeGivesSameGradients) {
  Exaone4Model m(tiny_config(), at::kFloat);
  init_parameters(m, 2);
  m.set_requires_grad(true);
  at::Tensor ids = at::randint(1, 50, {2, 16}, at::kLong);
  auto grads = [&](bool recompute) {
    for (const auto& p : m.params()) p.mutable_grad() = at::Tensor();
    causal_lm_loss(m.forward(ids, recompute), ids).backward();
    std::vector<at::Tensor> out;
    for (const auto& p : m.params()) out.push_back(p.grad().clone());
    return out;
  };
  auto plain = grads(false), recomputed = grads(true);
  for (size_t i = 0; i < plain.size(); ++i)
    EXPECT_TRUE(at::allclose(plain[i], recomputed[i], 1e-5, 1e-7)) << m.specs()[i].name;
}

TEST(Model, Bf16AutocastCloseToFp32) {
  Exaone4Model m(tiny_config(), at::kFloat);
  init_parameters(m, 4);
  at::Tensor ids = at::randint(1, 50, {2, 16}, at::kLong);
  at::NoGradGuard no_grad;
  const float fp32 = causal_lm_loss(m.forward(ids), ids).item<float>();
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  at::Tensor logits = m.forward(ids);
  at::autocast::set_autocast_enabled(at::kCPU, false);
  EXPECT_EQ(logits.scalar_type(), at::kBFloat16);
  EXPECT_NEAR(causal_lm_loss(logits, ids).item<float>(), fp32, 2e-2);
}

TEST(Model, WeightedLossIsTheMaskedMean) {
  // weights = mask / count: the loss is the mean cross-entropy over the masked positions only.
  at::manual_seed(3);
  at::Tensor logits = at::randn({2, 5, 11});
  at::Tensor targets = at::randint(0, 11, {2, 5}, at::kLong);
  at::Tensor mask = at::tensor({1, 1, 0, 0, 1, 0, 0, 1, 1, 0}, at::kFloat).view({2, 5});
  const double got = token_cross_entropy(logits, targets, mask / mask.sum()).item<double>();
  double want = 0;
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 5; ++t)
      if (mask[b][t].item<float>() > 0) {
        at::Tensor row = logits[b][t];
        want += (at::logsumexp(row, 0) - row[targets[b][t].item<int64_t>()]).item<double>();
      }
  EXPECT_NEAR(got, want / 5.0, 1e-6);
  // All ones: the plain mean.
  at::Tensor ones = at::ones({2, 5}) / 10.0;
  EXPECT_NEAR(token_cross_entropy(logits, targets, ones).item<double>(),
              token_cross_entropy(logits, targets).item<double>(), 1e-6);
}

TEST(Model, ExplicitPipelineLayers) {
  const std::vector<int64_t> split{1, 3, 2};
  const PipelineStage s0 = pipeline_stage(split, 0), s1 = pipeline_stage(split, 1), s2 = pipeline_stage(split, 2);
  EXPECT_EQ(s0.first_layer, 0);
  EXPECT_EQ(s0.end_layer, 1);
  EXPECT_TRUE(s0.first);
  EXPECT_FALSE(s0.last);
  EXPECT_EQ(s1.first_layer, 1);
  EXPECT_EQ(s1.end_layer, 4);
  EXPECT_FALSE(s1.first || s1.last);
  EXPECT_EQ(s2.first_layer, 4);
  EXPECT_EQ(s2.end_layer, 6);
  EXPECT_TRUE(s2.last);
}

TEST(Model, MetaDeviceAllocatesNothing) {
  ModelConfig c = tiny_config();
  c.vocab_size = 102400;
  c.hidden_size = 5120;
  c.num_heads = 40;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.intermediate_size = 27392;
  c.num_layers = 64;
  Exaone4Model m(c, at::TensorOptions().device(at::kMeta));
  int64_t n = 0;
  for (const auto& p : m.params()) n += p.numel();
  EXPECT_EQ(n, 32003216384);  // untied: embedding + lm_head
}

// trainer/plan/cost_model: each stage's parameters equal what the model actually allocates on
// that pipeline stage (meta tensors), tied and untied, even and explicit splits; and the bytes
// follow from them (4 weights + 4 gradient bucket per parameter, 8 per owned optimizer element:
// the fp32 weights are the master weights; ZeRO-1: 16; bf16 weights: 2 per weight, 12 per owned
// element, 18 under ZeRO-1).
TEST(CostModel, StageParametersMatchTheModelsAllocation) {
  for (const bool tied : {false, true}) {
    for (const std::vector<int64_t>& split : {std::vector<int64_t>{}, std::vector<int64_t>{1, 3}, std::vector<int64_t>{3, 1}}) {
      ModelConfig model = tiny_config();
      model.tie_embeddings = tied;
      CostLayout layout;
      layout.pp = 2;
      layout.pipeline_layers = split;
      const LayoutCost cost = estimate_cost(model, layout);
      ASSERT_EQ(cost.stages.size(), 2u);
      for (int s = 0; s < 2; ++s) {
        const PipelineStage stage = split.empty() ? pipeline_stage(4, 2, s) : pipeline_stage(split, s);
        Exaone4Model m(model, at::TensorOptions().device(at::kMeta), TensorParallelGroups{}, stage);
        int64_t n = 0;
        for (const auto& p : m.params()) n += p.numel();
        const StageMemory& r = cost.stages[static_cast<size_t>(s)];
        EXPECT_EQ(r.elements, n) << "tied " << tied << ", split " << split.size() << ", stage " << s;
        EXPECT_EQ(r.weights, 4.0 * static_cast<double>(n));
        EXPECT_EQ(r.gradients, 0.0);  // they accumulate in the reduction bucket
        EXPECT_EQ(r.reduce_buffer, 4.0 * static_cast<double>(n));
        EXPECT_EQ(r.optimizer, 8.0 * static_cast<double>(n));  // the moments: the weights are the master copy
        EXPECT_EQ(r.in_flight, 1);  // one micro-batch per step: nothing else in flight
      }
    }
  }
  CostLayout layout;
  layout.dp = 4;
  layout.zero = 1;
  layout.global_batch = 4;
  const StageMemory z = estimate_cost(tiny_config(), layout).largest();
  EXPECT_EQ(z.owned, (z.elements + 3) / 4);
  EXPECT_EQ(z.optimizer, 16.0 * static_cast<double>(z.owned));
  layout.compute_dtype_weights = true;  // train.weights: bf16
  const StageMemory h = estimate_cost(tiny_config(), layout).largest();
  EXPECT_EQ(h.weights, 2.0 * static_cast<double>(h.elements));
  EXPECT_EQ(h.optimizer, 18.0 * static_cast<double>(h.owned));
  layout.zero = 0;  // bf16 weights without ZeRO-1: the fp32 master copy is apart from them
  const StageMemory b = estimate_cost(tiny_config(), layout).largest();
  EXPECT_EQ(b.optimizer, 12.0 * static_cast<double>(b.owned));
}

// 1F1B: stage s of p keeps min(p - s, M) micro-batches in flight; activations scale with them.
TEST(CostModel, OneFOneBInFlight) {
  CostLayout layout;
  layout.pp = 4;
  layout.micro_batch = 1;
  layout.global_batch = 8;
  const LayoutCost cost = estimate_cost(tiny_config(), layout);
  for (int s = 0; s < 4; ++s) EXPECT_EQ(cost.stages[static_cast<size_t>(s)].in_flight, 4 - s);
  layout.global_batch = 2;
  EXPECT_EQ(estimate_cost(tiny_config(), layout).stages[0].in_flight, 2);
}

// Model FLOPs: 6 per matmul parameter and token plus PaLM's attention term; recomputation adds a
// third of the layers' share to what the hardware runs, not to the model FLOPs.
TEST(CostModel, FlopsPerStep) {
  const ModelConfig m = tiny_config();
  CostLayout layout;
  layout.global_batch = layout.micro_batch = 2;
  layout.seq_len = 64;
  const LayoutCost plain = estimate_cost(m, layout);
  EXPECT_DOUBLE_EQ(plain.model_flops_per_step, train_flops_per_token(m, 64) * 128);
  EXPECT_DOUBLE_EQ(plain.hardware_flops_per_step, plain.model_flops_per_step);
  layout.recompute = Recompute::Full;
  const LayoutCost rc = estimate_cost(m, layout);
  EXPECT_DOUBLE_EQ(rc.model_flops_per_step, plain.model_flops_per_step);
  const double lm_head = 6.0 * static_cast<double>(m.vocab_size * m.hidden_size) * 128;
  EXPECT_NEAR(rc.hardware_flops_per_step, plain.model_flops_per_step + (plain.model_flops_per_step - lm_head) / 3, 1);
  // A GPT-style MLP drops the gate: 6 * L * H * I per token fewer.
  ModelVariant gpt;
  gpt.gated_mlp = false;
  EXPECT_DOUBLE_EQ(train_flops_per_token(m, 64) - train_flops_per_token(m, 64, gpt),
                   6.0 * static_cast<double>(m.num_layers * m.hidden_size * m.intermediate_size));
}

// exatrain's own layouts describe its fused kernels (docs/kernels.md): one kernel per RMSNorm
// (q/k norms included), RoPE, SwiGLU and the loss; the memory-bound time of a step is the
// formula of docs/planning.md's elementwise table for EXAONE-4 (bf16: 2 bytes per element).
TEST(CostModel, ElementwiseTimeOfExatrainsFusedKernels) {
  const ModelConfig m = tiny_config();
  RunConfig run;
  run.model = m;
  run.train.seq_len = 64;
  run.train.micro_batch = 2;
  run.train.global_batch = 2;
  run.train.precision = Precision::BF16;
  CostLayout layout = CostLayout::of(run, 1, 1, 1);
  ASSERT_EQ(layout.elementwise, CostLayout::Elementwise::Fused);
  ASSERT_EQ(layout.loss, CostLayout::Loss::Fused);
  ASSERT_EQ(layout.attention, CostLayout::Attention::Flash);
  Hardware hw;
  hw.peak_flops = 1e15;
  hw.memory_bytes_per_s = 1e12;
  hw.intra_node_bytes_per_s = hw.inter_node_bytes_per_s = 1e11;
  const double B = 2, T = 64, H = 32, q = 4 * 8, kv = 2 * 8, I = 48, V = 50, L = 4;
  // Two norms (2e) and two residual adds (3e) over [b t h]; RoPE and the q/k norms (2e each) over
  // [b t (q + kv)]; the fused SwiGLU (3e) over [b t i]; forward + a backward of twice its bytes.
  const double layer = B * T * H * (2 * 4 + 2 * 6) + B * T * (q + kv) * (4 + 4) + B * T * I * 6;
  const double loss = B * T * V * 6;
  const StepTime plain = predict_step_time(m, layout, estimate_cost(m, layout), hw);
  EXPECT_NEAR(plain.elementwise, (3 * L * layer + loss) / 1e12, 1e-18);
  layout.recompute = Recompute::Full;  // the forward again
  const StepTime rc = predict_step_time(m, layout, estimate_cost(m, layout), hw);
  EXPECT_NEAR(rc.elementwise, (4 * L * layer + loss) / 1e12, 1e-18);
  // PyTorch's eager op sequence moves more than the fused kernels, and it is part of the step.
  layout.elementwise = CostLayout::Elementwise::Eager;
  const StepTime eager = predict_step_time(m, layout, estimate_cost(m, layout), hw);
  EXPECT_GT(eager.elementwise, 3 * rc.elementwise);
  EXPECT_NEAR(eager.total() - rc.total(), eager.elementwise - rc.elementwise, 1e-15);
}

// A DP group spanning nodes moves its ring traffic over the NICs of all its ranks on a node:
// per rank, min(ranks per node x network, NVLink).
TEST(CostModel, DataParallelRingUsesTheNodesNics) {
  const ModelConfig m = tiny_config();
  Hardware hw;
  hw.peak_flops = 1e15;
  hw.intra_node_bytes_per_s = 400e9;
  hw.inter_node_bytes_per_s = 40e9;
  hw.gpus_per_node = 8;
  CostLayout layout;
  layout.seq_len = 64;
  layout.micro_batch = 1;
  auto dp_time = [&](int64_t tp, int64_t dp) {
    layout.tp = tp, layout.dp = dp, layout.global_batch = dp;
    const LayoutCost cost = estimate_cost(m, layout);
    const double n = static_cast<double>(cost.largest_static().elements), d = static_cast<double>(dp);
    return std::pair{predict_step_time(m, layout, cost, hw).dp_comm, 8.0 * n * (d - 1) / d};
  };
  const auto [t1, bytes1] = dp_time(1, 32);  // 8 ranks of the group per node: 320 GB/s
  EXPECT_DOUBLE_EQ(t1, bytes1 / 320e9);
  const auto [t2, bytes2] = dp_time(2, 16);  // 4 per node: 160 GB/s
  EXPECT_DOUBLE_EQ(t2, bytes2 / 160e9);
  hw.inter_node_bytes_per_s = 100e9;  // 8 x 100 GB/s > NVLink: the ring's NVLink hops limit it
  const auto [t3, bytes3] = dp_time(1, 32);
  EXPECT_DOUBLE_EQ(t3, bytes3 / 400e9);
}

}  // namespace
}  // namespace exatrain

// The NCCL path needs a GPU: here it only has to compile, link and skip cleanly.
#include "trainer/parallel/comm.h"
#include "trainer/parallel/nccl_comm.h"
#include <mpi.h>

namespace exatrain {
namespace {

TEST(Nccl, AllReduceOnCudaTensors) {
  if (!nccl_usable()) GTEST_SKIP() << "no CUDA device on this machine";
  MpiRuntime mpi(nullptr, nullptr);
  CommContext context;
  Communicator world("world", reinterpret_cast<intptr_t>(MPI_COMM_WORLD), &context);
  at::Tensor t = at::arange(8, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA));
  world.all_reduce(t);  // one rank: unchanged
  EXPECT_TRUE(at::equal(t.cpu(), at::arange(8, at::kFloat)));
  at::Tensor g = world.all_gather(t, 0);
  EXPECT_EQ(g.numel(), 8 * world.size());
}

}  // namespace
}  // namespace exatrain
