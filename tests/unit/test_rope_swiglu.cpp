// The fused RoPE and SwiGLU operators (kernels/rope_swiglu*, ops::rope, ops::swiglu) against their
// judges: the ATen reference in float64 for fp32 inputs, the ATen reference itself for bf16 inputs
// (the kernels round where its bf16 tensors round), on shapes whose rows are not multiples of the
// vector width. The CUDA kernels' bodies run under the SIMT emulation; on a GPU the CUDA kernels
// themselves (skipped without one). And the whole model: auto (these kernels) against reference.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/ops.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope_swiglu.h"
#include "trainer/model/exaone4.h"
#include "trainer/model/rope.h"

namespace exatrain {
namespace {

double rel(const at::Tensor& got, const at::Tensor& want) {
  return ((got.to(at::kDouble) - want.to(at::kDouble)).abs().max() / want.to(at::kDouble).abs().max().clamp_min(1e-30))
      .item<double>();
}

// Tables as the model builds them: llama3-scaled frequencies, plain positions or per-document ones.
RopeTables make_tables(int64_t batch, int64_t seq, int64_t head_dim, bool documents) {
  ModelConfig c;
  c.hidden_size = head_dim * 2;
  c.num_heads = 2;
  c.rope_theta = 10000;
  c.rope_scaling.type = RopeScaling::Llama3;
  c.rope_scaling.factor = 8;
  c.rope_scaling.low_freq_factor = 1;
  c.rope_scaling.high_freq_factor = 4;
  c.rope_scaling.original_max_position = 16;
  const at::Tensor inv = rope_inverse_frequencies(c);
  if (!documents) return rope_tables(inv, seq);
  // Documents of 7 tokens in row 0 and of 11 in the others: positions restart in each.
  at::Tensor seg = at::empty({batch, seq}, at::kInt);
  for (int64_t b = 0; b < batch; ++b) seg[b] = at::arange(seq, at::kInt) / (b == 0 ? 7 : 11);
  return rope_tables(inv, document_positions(seg));
}

RopeTables to_double(const RopeTables& t) { return RopeTables{t.cos.to(at::kDouble), t.sin.to(at::kDouble)}; }

struct RopeCase {
  int64_t batch, heads, seq, head_dim;
  bool documents, transposed;  // per-token tables; x a [B, T, H, D] tensor seen as [B, H, T, D]
};

// x for a case: contiguous, or the model's layout (the projection's [B, T, H, D] transposed).
at::Tensor rope_input(const RopeCase& c, at::ScalarType dtype) {
  if (!c.transposed) return at::randn({c.batch, c.heads, c.seq, c.head_dim}).to(dtype);
  return at::randn({c.batch, c.seq, c.heads, c.head_dim}).to(dtype).transpose(1, 2);
}

const RopeCase kRopeCases[] = {
    {2, 3, 37, 22, false, false},   // half 11: no full vector of 8 or 16
    {2, 3, 37, 22, true, true},     // per-document tables, strided x
    {1, 4, 19, 128, false, true},   // the 32B head_dim
    {3, 2, 23, 6, true, false},     // tiny rows
    {1, 1, 1, 2, false, false}};    // one token, one pair

// fp32: forward and dx against float64, and both bit-equal to the fp32 reference (the kernel
// makes the same roundings: each product, then the sum; no FMA contraction).
TEST(RopeOp, CpuKernelAgainstFloat64) {
  at::manual_seed(3);
  double worst_y = 0, worst_dx = 0;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (const RopeCase& c : kRopeCases) {
      const RopeTables t = make_tables(c.batch, c.seq, c.head_dim, c.documents);
      const at::Tensor x = rope_input(c, at::kFloat), g = at::randn({c.batch, c.heads, c.seq, c.head_dim});
      at::Tensor xd = x.to(at::kDouble).requires_grad_(true);
      at::Tensor yd = ops::rope(xd, to_double(t), ops::Impl::Reference);
      yd.backward(g.to(at::kDouble));
      at::Tensor xf = x.detach().requires_grad_(true);
      at::Tensor yf = ops::rope(xf, t, ops::Impl::Cpu);
      ASSERT_EQ(yf.scalar_type(), at::kFloat);
      ASSERT_TRUE(yf.grad_fn() && std::string(yf.grad_fn()->name()).find("RopeFused") != std::string::npos)
          << "the cpu kernel did not run";
      yf.backward(g);
      const std::string what = c10::str("B", c.batch, " H", c.heads, " T", c.seq, " D", c.head_dim, " documents ",
                                        c.documents, " transposed ", c.transposed);
      // two products and a sum in fp32: measured up to 9.1e-8 (y) and 6.9e-8 (dx) of the largest value
      EXPECT_LT(rel(yf, yd), 5e-7) << what;
      EXPECT_LT(rel(xf.grad(), xd.grad()), 5e-7) << what;
      at::Tensor xr = x.detach().requires_grad_(true);
      at::Tensor yr = ops::rope(xr, t, ops::Impl::Reference);
      yr.backward(g);
      EXPECT_TRUE(at::equal(yf, yr)) << what;
      EXPECT_TRUE(at::equal(xf.grad(), xr.grad())) << what;
      worst_y = std::max(worst_y, rel(yf, yd));
      worst_dx = std::max(worst_dx, rel(xf.grad(), xd.grad()));
    }
  }
  at::set_num_threads(1);
  std::printf("fused rope fp32 against float64: y %.2e, dx %.2e\n", worst_y, worst_dx);
}

// bf16: the kernel rounds x * cos, rotate_half(x) * sin and their sum (dx: g * cos, g * sin and
// their sum) to bf16 as the reference's bf16 tensors are, so it equals the reference bit for bit.
TEST(RopeOp, CpuKernelBf16EqualsReference) {
  at::manual_seed(4);
  for (const RopeCase& c : kRopeCases) {
    const RopeTables t = make_tables(c.batch, c.seq, c.head_dim, c.documents);
    const at::Tensor x = rope_input(c, at::kBFloat16);
    const at::Tensor g = at::randn({c.batch, c.heads, c.seq, c.head_dim}).to(at::kBFloat16);
    at::Tensor xr = x.detach().requires_grad_(true), xc = x.detach().requires_grad_(true);
    at::Tensor yr = ops::rope(xr, t, ops::Impl::Reference), yc = ops::rope(xc, t, ops::Impl::Cpu);
    yr.backward(g);
    yc.backward(g);
    ASSERT_EQ(yc.scalar_type(), at::kBFloat16);
    ASSERT_EQ(xc.grad().scalar_type(), at::kBFloat16);
    const std::string what = c10::str("B", c.batch, " H", c.heads, " T", c.seq, " D", c.head_dim, " documents ",
                                      c.documents);
    EXPECT_TRUE(at::equal(yc, yr)) << what << ": max diff " << (yc - yr).abs().max().item<float>();
    EXPECT_TRUE(at::equal(xc.grad(), xr.grad())) << what << ": max diff "
                                                 << (xc.grad() - xr.grad()).abs().max().item<float>();
  }
}

// Values across silu's whole range: ordinary ones, large ones of both signs (e^-g would overflow
// fp32 below -88), zero and negative zero.
at::Tensor gate_values(at::IntArrayRef shape) {
  at::Tensor g = at::randn(shape) * 4;
  at::Tensor flat = g.view({-1});
  const float specials[] = {0.f, -0.f, 90.f, -90.f, 1e4f, -1e4f, 87.5f, -87.5f, 20.f, -20.f};
  for (int64_t i = 0; i < std::min<int64_t>(10, flat.numel()); ++i) flat[i * 3 % flat.numel()] = specials[i];
  return g;
}

TEST(SwigluOp, CpuKernelAgainstFloat64) {
  at::manual_seed(5);
  double worst_y = 0, worst_dg = 0, worst_du = 0;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (const auto& shape : std::vector<std::vector<int64_t>>{{7}, {3, 37}, {2, 5, 333}, {1, 70001}}) {
      const at::Tensor gate = gate_values(shape), up = at::randn(shape), dy = at::randn(shape);
      at::Tensor gd = gate.to(at::kDouble).requires_grad_(true), ud = up.to(at::kDouble).requires_grad_(true);
      at::Tensor yd = ops::swiglu(gd, ud, ops::Impl::Reference);
      yd.backward(dy.to(at::kDouble));
      at::Tensor gf = gate.detach().requires_grad_(true), uf = up.detach().requires_grad_(true);
      at::Tensor yf = ops::swiglu(gf, uf, ops::Impl::Cpu);
      ASSERT_TRUE(yf.grad_fn() && std::string(yf.grad_fn()->name()).find("SwigluFused") != std::string::npos);
      yf.backward(dy);
      ASSERT_FALSE(yf.isnan().any().item<bool>() || gf.grad().isnan().any().item<bool>());
      // Relative to each element (silu's tails are tiny; the comparison must reach them), with an
      // absolute floor of 1e-20 (the kernel's e^-|g| is 0 beyond |g| = 87, so silu(-87.5) is -0 where
      // float64 says -8.6e-37): exp to about 1 ulp, a division, a product. dgate = dy u sig
      // (1 + g (1 - sig)) passes through 0 (g = -1.28), so its error is judged against the size of
      // its terms, dy u sig (1 + |g| (1 - sig)), as fp32 rounding of that sum would be.
      auto elementwise = [](const at::Tensor& got, const at::Tensor& want, const at::Tensor& scale) {
        return ((got.to(at::kDouble) - want).abs() / (scale + 1e-20)).max().item<double>();
      };
      const at::Tensor sig = at::sigmoid(gd.detach());
      const at::Tensor dg_terms = (dy.to(at::kDouble) * ud.detach()).abs() * sig * (1 + gd.detach().abs() * (1 - sig));
      const double ey = elementwise(yf, yd, yd.detach().abs()), edg = elementwise(gf.grad(), gd.grad(), dg_terms),
                   edu = elementwise(uf.grad(), ud.grad(), ud.grad().abs());
      const std::string what = c10::str(at::IntArrayRef(shape));
      // measured: y 2.5e-7, dgate 7.9e-7 (1 - sig in fp32 near sig = 1, times g: ATen's formula
      // in fp32 has the same), dup 2.5e-7
      EXPECT_LT(ey, 1e-6) << what;
      EXPECT_LT(edg, 2e-6) << what;
      EXPECT_LT(edu, 1e-6) << what;
      worst_y = std::max(worst_y, ey);
      worst_dg = std::max(worst_dg, edg);
      worst_du = std::max(worst_du, edu);
    }
  }
  at::set_num_threads(1);
  std::printf("fused swiglu fp32 against float64 (elementwise relative): y %.2e, dgate %.2e, dup %.2e\n", worst_y,
              worst_dg, worst_du);
}

// bf16: silu(gate) rounded to bf16 before the product, as the reference's bf16 silu tensor; the
// kernel's exp differs from ATen's by an ulp or so in fp32, which moves a bf16 rounding only when
// silu lands within that of a rounding boundary.
TEST(SwigluOp, CpuKernelBf16MatchesReference) {
  at::manual_seed(6);
  const at::Tensor gate = gate_values({4, 1001}).to(at::kBFloat16), up = at::randn({4, 1001}).to(at::kBFloat16);
  const at::Tensor dy = at::randn({4, 1001}).to(at::kBFloat16);
  at::Tensor gr = gate.detach().requires_grad_(true), ur = up.detach().requires_grad_(true);
  at::Tensor gc = gate.detach().requires_grad_(true), uc = up.detach().requires_grad_(true);
  at::Tensor yr = ops::swiglu(gr, ur, ops::Impl::Reference), yc = ops::swiglu(gc, uc, ops::Impl::Cpu);
  yr.backward(dy);
  yc.backward(dy);
  ASSERT_EQ(yc.scalar_type(), at::kBFloat16);
  // Elements above 1e-20 (below, the kernel's e^-|g| is flushed to 0 beyond |g| = 87: silu(-87.5)
  // is -0 where ATen rounds -8.6e-37). Where they differ it would be by one bf16 ulp of the element
  // (2^-7 relative at most), from the kernel's exp and ATen's differing by an ulp in fp32 next to
  // a bf16 rounding boundary; measured: equal everywhere (y, dgate, dup).
  for (const auto& [name, got, want] : {std::tuple{"y", yc, yr}, std::tuple{"dgate", gc.grad(), gr.grad()},
                                        std::tuple{"dup", uc.grad(), ur.grad()}}) {
    const at::Tensor g64 = got.to(at::kDouble), w64 = want.to(at::kDouble);
    const at::Tensor counted = w64.abs() > 1e-20;
    const double differing = ((g64 != w64).logical_and(counted)).sum().item<double>() / counted.sum().item<double>();
    const double worst = ((g64 - w64).abs() / (w64.abs() + 1e-20)).max().item<double>();
    EXPECT_LE(worst, 7.9e-3) << name;
    EXPECT_LT(differing, 1e-3) << name;
    std::printf("fused swiglu bf16 against the reference: %s differs in %.5f of the elements, worst %.2e\n", name,
                differing, worst);
  }
}

// The CUDA kernels' bodies (rope_swiglu.cuh's SIMT_KERNELs) under the CPU emulation, every thread
// of every block a real thread, against the fused CPU kernel (the same per-element functions, so
// equal bit for bit) and, for fp32, against float64.
TEST(RopeSwigluEmulated, CudaBodiesMatchCpuKernelAndFloat64) {
  at::manual_seed(7);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    // RoPE: 2 x 3 x 37 x 11 pairs = 2,442: three blocks, the last partial.
    for (const RopeCase& c : {kRopeCases[0], kRopeCases[1]}) {
      const RopeTables t = make_tables(c.batch, c.seq, c.head_dim, c.documents);
      const at::Tensor x = rope_input(c, dtype);
      const at::Tensor cos = t.cos.to(dtype).contiguous(), sin = t.sin.to(dtype).contiguous();
      for (bool backward : {false, true}) {
        at::Tensor y = at::empty({c.batch, c.heads, c.seq, c.head_dim}, dtype);
        kernels::RopeParams p{};
        p.x = x.const_data_ptr();
        p.y = y.mutable_data_ptr();
        p.cos = cos.const_data_ptr();
        p.sin = sin.const_data_ptr();
        p.batch = c.batch;
        p.heads = c.heads;
        p.seq = c.seq;
        p.head_dim = c.head_dim;
        for (int d = 0; d < 3; ++d) {
          p.x_stride[d] = x.stride(d);
          p.y_stride[d] = y.stride(d);
        }
        p.table_stride_b = c.documents ? c.seq * c.head_dim : 0;
        p.bf16 = dtype == at::kBFloat16;
        kernels::rope_emulated(p, backward);
        // The judge: the operator's cpu kernel (forward: y; backward: dx for output gradient x).
        at::Tensor want;
        if (!backward) {
          want = ops::rope(x, t, ops::Impl::Cpu);
        } else {
          at::Tensor leaf = at::zeros({c.batch, c.heads, c.seq, c.head_dim}, dtype).requires_grad_(true);
          ops::rope(leaf, t, ops::Impl::Cpu).backward(x);
          want = leaf.grad();
        }
        EXPECT_TRUE(at::equal(y, want)) << "rope backward " << backward << " bf16 " << (dtype == at::kBFloat16);
        if (dtype == at::kFloat) {
          at::Tensor xd = (backward ? at::zeros(x.sizes(), at::kDouble) : x.to(at::kDouble)).requires_grad_(true);
          at::Tensor yd = ops::rope(xd, to_double(t), ops::Impl::Reference);
          if (backward) yd.backward(x.to(at::kDouble));
          EXPECT_LT(rel(y, backward ? xd.grad() : yd.detach()), 5e-7);  // as the cpu kernel (measured 9.1e-8)
        }
      }
    }
    // SwiGLU: 1,500 elements, two blocks of 1,024 items, the second partial.
    const at::Tensor gate = gate_values({3, 500}).to(dtype), up = at::randn({3, 500}).to(dtype);
    const at::Tensor dy = at::randn({3, 500}).to(dtype);
    at::Tensor out = at::empty_like(gate), dgate = at::empty_like(gate), dup = at::empty_like(up);
    kernels::SwigluParams p{gate.const_data_ptr(), up.const_data_ptr(), out.mutable_data_ptr(), dy.const_data_ptr(),
                            dgate.mutable_data_ptr(), dup.mutable_data_ptr(), gate.numel(), dtype == at::kBFloat16};
    kernels::swiglu_emulated(p, false);
    kernels::swiglu_emulated(p, true);
    at::Tensor gl = gate.detach().requires_grad_(true), ul = up.detach().requires_grad_(true);
    at::Tensor yc = ops::swiglu(gl, ul, ops::Impl::Cpu);
    yc.backward(dy);
    EXPECT_TRUE(at::equal(out, yc));
    EXPECT_TRUE(at::equal(dgate, gl.grad()));
    EXPECT_TRUE(at::equal(dup, ul.grad()));
  }
}

// The CUDA kernels on a GPU, through the operator (its self-check included), against float64.
TEST(RopeSwigluCuda, KernelsOnGpuMatchFloat64) {
  if (!kernels::cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  at::manual_seed(8);
  const at::Device gpu(at::kCUDA, 0);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const double bound = dtype == at::kBFloat16 ? 1.6e-2 : 5e-7;
    const RopeCase c = kRopeCases[1];
    const RopeTables t = make_tables(c.batch, c.seq, c.head_dim, c.documents);
    const at::Tensor x = rope_input(c, dtype), g = at::randn({c.batch, c.heads, c.seq, c.head_dim}).to(dtype);
    at::Tensor xg = x.to(gpu).detach().requires_grad_(true);
    at::Tensor yg = ops::rope(xg, RopeTables{t.cos.to(gpu), t.sin.to(gpu)}, ops::Impl::Cuda);
    yg.backward(g.to(gpu));
    at::Tensor xd = x.to(at::kDouble).requires_grad_(true);
    at::Tensor yd = ops::rope(xd, to_double(t), ops::Impl::Reference);
    yd.backward(g.to(at::kDouble));
    EXPECT_LT(rel(yg.cpu(), yd), bound);
    EXPECT_LT(rel(xg.grad().cpu(), xd.grad()), bound);
    const at::Tensor gate = gate_values({3, 500}).to(dtype), up = at::randn({3, 500}).to(dtype);
    const at::Tensor dy = at::randn({3, 500}).to(dtype);
    at::Tensor gg = gate.to(gpu).detach().requires_grad_(true), ug = up.to(gpu).detach().requires_grad_(true);
    at::Tensor sg = ops::swiglu(gg, ug, ops::Impl::Cuda);
    sg.backward(dy.to(gpu));
    at::Tensor gd = gate.to(at::kDouble).requires_grad_(true), ud = up.to(at::kDouble).requires_grad_(true);
    at::Tensor sd = ops::swiglu(gd, ud, ops::Impl::Reference);
    sd.backward(dy.to(at::kDouble));
    EXPECT_LT(rel(sg.cpu(), sd), dtype == at::kBFloat16 ? 1.6e-2 : 1e-6);
    EXPECT_LT(rel(gg.grad().cpu(), gd.grad()), dtype == at::kBFloat16 ? 1.6e-2 : 1.5e-6);
    EXPECT_LT(rel(ug.grad().cpu(), ud.grad()), dtype == at::kBFloat16 ? 1.6e-2 : 1e-6);
  }
}

// The whole model through the new operators (train.kernels auto) against the reference: llama3
// RoPE on the sliding layers, NoPE on the global ones, document masks (per-token tables), fp32.
TEST(RopeSwigluModel, AutoKernelsMatchReference) {
  ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.intermediate_size = 45;  // not a multiple of the vector width
  c.num_layers = 4;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.sliding_window = 5;
  c.sliding_window_pattern = 4;
  c.max_position_embeddings = 64;
  c.pad_token_id = 0;
  c.rope_scaling.type = RopeScaling::Llama3;
  c.rope_scaling.factor = 8;
  c.rope_scaling.low_freq_factor = 1;
  c.rope_scaling.high_freq_factor = 4;
  c.rope_scaling.original_max_position = 16;
  ASSERT_EQ(ops::resolve_rope_impl(KernelChoice::Auto, at::kCPU), ops::Impl::Cpu);
  ASSERT_EQ(ops::resolve_swiglu_impl(KernelChoice::Auto, at::kCPU, at::kFloat), ops::Impl::Cpu);
  Exaone4Model model(c, at::kFloat);
  init_parameters(model, 9);
  model.set_requires_grad(true);
  at::manual_seed(9);
  const at::Tensor ids = at::randint(1, 50, {2, 19}, at::kLong);
  const at::Tensor seg = (at::arange(19, at::kLong) / 6).to(at::kInt).expand({2, 19}).contiguous();  // documents of 6
  for (bool documents : {false, true}) {
    std::vector<at::Tensor> logits, grads;
    for (KernelChoice choice : {KernelChoice::Reference, KernelChoice::Auto}) {
      model.set_kernels(choice);
      for (const at::Tensor& p : model.params()) p.mutable_grad() = at::Tensor();
      at::Tensor out = model.stage_forward(ids, false, false, documents ? seg : at::Tensor());
      out.square().mean().backward();
      logits.push_back(out.detach());
      std::vector<at::Tensor> each;
      for (const at::Tensor& p : model.params()) each.push_back(p.grad().flatten());
      grads.push_back(at::cat(each));
    }
    // every op of the layers in fp32 by other kernels (attention, norms, RoPE, SwiGLU): measured
    // logits 4.4e-7, gradients 4.7e-7 of the largest value
    EXPECT_LT(rel(logits[1], logits[0]), 2e-6) << "documents " << documents;
    EXPECT_LT(rel(grads[1], grads[0]), 2e-6) << "documents " << documents;
    std::printf("model, auto against reference kernels (documents %d): logits %.2e, gradients %.2e\n", documents,
                rel(logits[1], logits[0]), rel(grads[1], grads[0]));
  }
}

}  // namespace
}  // namespace exatrain
