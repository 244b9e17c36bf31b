#include "kernels/selftest.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <tuple>

#include "kernels/adamw.h"
#include "kernels/cross_entropy.h"
#include "kernels/flash_attention.h"
#include "kernels/flash_attention_cuda.h"
#include "kernels/ops.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope_swiglu.h"

namespace exatrain::ops {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double relative_error(const at::Tensor& got, const at::Tensor& want) {
  const double scale = std::max(1.0, want.abs().max().item<double>());
  return (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>() / scale;
}

struct AttentionCase {
  int64_t batch, heads, kv_heads, seq, head_dim, window;
  at::ScalarType dtype;
};

// Forward and backward of `impl`; the error is the worst of the output and the three input
// gradients against the float64 reference.
SelftestRow check_attention(const AttentionCase& c, Impl impl = Impl::Cpu) {
  at::manual_seed(11);
  const at::Tensor q = at::randn({c.batch, c.heads, c.seq, c.head_dim}, at::kDouble);
  const at::Tensor k = at::randn({c.batch, c.kv_heads, c.seq, c.head_dim}, at::kDouble);
  const at::Tensor v = at::randn({c.batch, c.kv_heads, c.seq, c.head_dim}, at::kDouble);
  const at::Tensor g = at::randn({c.batch, c.heads, c.seq, c.head_dim}, at::kDouble);
  AttentionSpec spec;
  spec.window = c.window;
  spec.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  const at::Device device = impl == Impl::Cuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  auto run = [&](Impl which, at::ScalarType dtype, const at::Device& where, double* ms) {
    at::Tensor qi = q.to(where, dtype).detach().requires_grad_(true);
    at::Tensor ki = k.to(where, dtype).detach().requires_grad_(true);
    at::Tensor vi = v.to(where, dtype).detach().requires_grad_(true);
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor out = attention(qi, ki, vi, spec, which);
    out.backward(g.to(where, dtype));
    std::vector<at::Tensor> result{out.detach().cpu(), qi.grad().cpu(), ki.grad().cpu(), vi.grad().cpu()};
    if (ms) *ms = 1e3 * seconds_since(t0);  // after the copies back: the GPU work is done
    return result;
  };
  const auto want = run(Impl::Reference, at::kDouble, at::Device(at::kCPU), nullptr);
  SelftestRow row;
  row.op = "attention fwd+bwd";
  row.impl = impl == Impl::Cuda ? std::string("cuda (tensor cores)")
                                : fmt::format("cpu ({})", kernels::flash_attention_cpu_isa());
  row.shape = fmt::format("B{} H{}/{} T{} D{} W{}", c.batch, c.heads, c.kv_heads, c.seq, c.head_dim, c.window);
  row.dtype = c.dtype == at::kBFloat16 ? "bf16" : "fp32";
  // Bounds from tests/unit/test_attention.cpp: twice the worst error measured there (the CUDA
  // kernels' emulated errors, tests/unit/test_simt.cpp, are below the bf16 bound).
  row.bound = c.dtype == at::kBFloat16 ? 1.5625e-2 : 5e-6;
  const auto got = run(impl, c.dtype, device, &row.impl_ms);
  run(Impl::Reference, c.dtype, device, &row.reference_ms);  // the reference at the same dtype and device, timed
  for (size_t i = 0; i < got.size(); ++i) row.max_error = std::max(row.max_error, relative_error(got[i], want[i]));
  return row;
}

// The tensor-core backward's body under the CPU emulation: one block of 40 keys, fed by the
// emulated forward; gradients against SDPA's autograd in float64 on the same bf16 values.
// Bound from tests/unit/test_simt.cpp (measured up to 4.6e-3, on this case; bound 1e-2).
SelftestRow check_attention_backward_emulated() {
  const int64_t B = 1, H = 1, T = 40, D = 64, W = 0;
  at::manual_seed(17);
  const at::Tensor q = at::randn({B, H, T, D}).to(at::kBFloat16), k = at::randn({B, H, T, D}).to(at::kBFloat16);
  const at::Tensor v = at::randn({B, H, T, D}).to(at::kBFloat16), g = at::randn({B, H, T, D}).to(at::kBFloat16);
  AttentionSpec spec;
  spec.scale = 1.0 / std::sqrt(static_cast<double>(D));
  SelftestRow row;
  row.op = "attention bwd";
  row.impl = "cuda source, emulated";
  row.shape = fmt::format("B{} H{}/{} T{} D{} W{}", B, H, H, T, D, W);
  row.dtype = "bf16";
  row.bound = 1e-2;
  at::Tensor o = at::empty_like(q), lse = at::empty({B, H, T}, at::kFloat);
  auto bits = [](const at::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.const_data_ptr()); };
  const auto t0 = std::chrono::steady_clock::now();
  kernels::flash_attention_forward_emulated(
      kernels::FlashFwdParams{bits(q), bits(k), bits(v), reinterpret_cast<uint16_t*>(o.mutable_data_ptr()),
                              lse.mutable_data_ptr<float>(), 1, 1, 1, static_cast<int>(T), 0,
                              static_cast<float>(spec.scale)},
      static_cast<int>(D));
  const at::Tensor delta = (g.to(at::kFloat) * o.to(at::kFloat)).sum(-1).contiguous();
  at::Tensor dq = at::zeros({B, H, T, D}), dk = at::empty({B, H, T, D}), dv = at::empty({B, H, T, D});
  kernels::flash_attention_backward_emulated(
      kernels::FlashBwdParams{bits(q), bits(k), bits(v), bits(g), lse.const_data_ptr<float>(),
                              delta.const_data_ptr<float>(), dq.mutable_data_ptr<float>(),
                              dk.mutable_data_ptr<float>(), dv.mutable_data_ptr<float>(), 1, 1, 1,
                              static_cast<int>(T), 0, static_cast<float>(spec.scale)},
      static_cast<int>(D));
  row.impl_ms = 1e3 * seconds_since(t0);
  at::Tensor qd = q.to(at::kDouble).requires_grad_(true), kd = k.to(at::kDouble).requires_grad_(true);
  at::Tensor vd = v.to(at::kDouble).requires_grad_(true);
  const auto r0 = std::chrono::steady_clock::now();
  attention(qd, kd, vd, spec, Impl::Reference).backward(g.to(at::kDouble));
  row.reference_ms = 1e3 * seconds_since(r0);
  row.max_error = std::max({relative_error(dq, qd.grad()), relative_error(dk, kd.grad()), relative_error(dv, vd.grad())});
  return row;
}

// The tensor-core flash attention forward (the CUDA kernel's body): under the CPU emulation,
// and on a GPU when there is one. bf16 in and out; the judge is SDPA in float64 on the same
// bf16 values. Bound from tests/unit/test_simt.cpp (measured 2.6e-3, bound 6e-3).
SelftestRow check_attention_tensor_cores(bool on_gpu) {
  const int64_t B = 1, H = 2, KV = 1, T = 70, D = 64, W = 20;
  at::manual_seed(13);
  const at::Tensor q = at::randn({B, H, T, D}).to(at::kBFloat16), k = at::randn({B, KV, T, D}).to(at::kBFloat16);
  const at::Tensor v = at::randn({B, KV, T, D}).to(at::kBFloat16);
  AttentionSpec spec;
  spec.window = W;
  spec.scale = 1.0 / std::sqrt(static_cast<double>(D));
  const at::Tensor want = attention(q.to(at::kDouble), k.to(at::kDouble), v.to(at::kDouble), spec, Impl::Reference);
  SelftestRow row;
  row.op = "attention fwd";
  row.impl = on_gpu ? "cuda (tensor cores)" : "cuda source, emulated";
  row.shape = fmt::format("B{} H{}/{} T{} D{} W{}", B, H, KV, T, D, W);
  row.dtype = "bf16";
  row.bound = 6e-3;
  const at::Device device = on_gpu ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  const at::Tensor qd = q.to(device), kd = k.to(device), vd = v.to(device);
  at::Tensor o = at::empty_like(qd), lse = at::empty({B, H, T}, qd.options().dtype(at::kFloat));
  kernels::FlashFwdParams p{reinterpret_cast<const uint16_t*>(qd.const_data_ptr()),
                            reinterpret_cast<const uint16_t*>(kd.const_data_ptr()),
                            reinterpret_cast<const uint16_t*>(vd.const_data_ptr()),
                            reinterpret_cast<uint16_t*>(o.mutable_data_ptr()), lse.mutable_data_ptr<float>(),
                            static_cast<int>(B), static_cast<int>(H), static_cast<int>(KV), static_cast<int>(T),
                            static_cast<int>(W), static_cast<float>(spec.scale)};
  const auto t0 = std::chrono::steady_clock::now();
  if (!on_gpu) {
    kernels::flash_attention_forward_emulated(p, static_cast<int>(D));
  } else {
#if defined(EXATRAIN_HAVE_CUDA)
    const int err = kernels::flash_attention_forward_cuda(p, static_cast<int>(D), nullptr);
    if (err != 0) {
      row.max_error = std::numeric_limits<double>::infinity();
      row.impl += fmt::format(" (launch failed: cudaError {})", err);
      return row;
    }
#endif
  }
  o = o.cpu();  // waits for the kernel
  row.impl_ms = 1e3 * seconds_since(t0);
  const auto r0 = std::chrono::steady_clock::now();
  attention(qd, kd, vd, spec, Impl::Reference);
  row.reference_ms = 1e3 * seconds_since(r0);
  row.max_error = relative_error(o, want);
  return row;
}

// The CUDA RMSNorm kernels (kernels/rmsnorm_kernel.cuh), forward and backward, under the CPU
// emulation (or on a GPU when there is one), against the formula in float64 on the same values:
// y, dx (against the size of its first term, s |dy w|: it cancels) and dweight. `x_dtype` bf16
// with an fp32 weight gives an fp32 output (autocast's activations), as torch promotes.
SelftestRow check_rms_norm_cuda_source(int64_t rows, int64_t cols, at::ScalarType x_dtype, bool on_gpu) {
  at::manual_seed(7);
  const at::Device device = on_gpu ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  const at::Tensor x = (at::randn({rows, cols}) * 3).to(x_dtype), w = at::rand({cols}) + 0.5;
  const at::Tensor dy = at::randn({rows, cols});
  SelftestRow row;
  row.op = "rms_norm fwd+bwd";
  row.impl = on_gpu ? "cuda" : "cuda source, emulated";
  row.shape = fmt::format("{} x {}", rows, cols);
  row.dtype = x_dtype == at::kBFloat16 ? "bf16" : "fp32";
  row.bound = x_dtype == at::kBFloat16 ? 1e-2 : 1e-6;  // as the cpu kernel's rows below (same row math)
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  const at::Tensor xd = x.to(device), wd = w.to(device), dyd = dy.to(device);
  at::Tensor y = at::empty({rows, cols}, f32), inv = at::empty({rows}, f32), dx = at::empty_like(xd);
  at::Tensor dw = at::empty({cols}, f32), partials = at::empty({kernels::rmsnorm_partial_count(rows, cols)}, f32);
  kernels::RmsNormParams p;
  p.x = xd.const_data_ptr();
  p.x_bf16 = x_dtype == at::kBFloat16;
  p.weight = wd.const_data_ptr<float>();
  p.rows = rows;
  p.cols = cols;
  p.eps = 1e-5f;
  p.y = y.mutable_data_ptr();
  p.inv = inv.mutable_data_ptr<float>();
  p.dy = dyd.const_data_ptr();
  p.dx = dx.mutable_data_ptr();
  p.dweight = dw.mutable_data_ptr<float>();
  p.partials = partials.mutable_data_ptr<float>();
  const auto t0 = std::chrono::steady_clock::now();
  int err = 0;
  if (!on_gpu) {
    kernels::rmsnorm_forward_emulated(p);
    kernels::rmsnorm_backward_emulated(p);
  } else {
    err = kernels::rmsnorm_forward_cuda(p, nullptr);
    if (err == 0) err = kernels::rmsnorm_backward_cuda(p, nullptr);
  }
  if (err != 0) {
    row.max_error = std::numeric_limits<double>::infinity();
    row.impl += fmt::format(" (launch failed: cudaError {})", err);
    return row;
  }
  const at::Tensor yc = y.cpu(), dxc = dx.cpu(), dwc = dw.cpu();  // waits for the kernels
  row.impl_ms = 1e3 * seconds_since(t0);
  const auto r0 = std::chrono::steady_clock::now();
  at::Tensor xr = x.to(at::kDouble).requires_grad_(true), wr = w.to(at::kDouble).requires_grad_(true);
  const at::Tensor s = at::rsqrt(xr.detach().pow(2).mean(-1, true) + 1e-5);
  at::Tensor yr = wr * (xr * at::rsqrt(xr.pow(2).mean(-1, true) + 1e-5));
  yr.backward(dy.to(at::kDouble));
  row.reference_ms = 1e3 * seconds_since(r0);
  const double term = (dy.to(at::kDouble) * wr.detach() * s).abs().max().item<double>();
  row.max_error = std::max({relative_error(yc, yr.detach()), (dxc.to(at::kDouble) - xr.grad()).abs().max().item<double>() / term,
                            relative_error(dwc, wr.grad())});
  return row;
}

// The model's RMSNorm operator (ops::rms_norm) on the CPU, forward and backward, against the
// formula in float64; the time is forward + backward, best of 5, against the ATen reference's.
SelftestRow check_rms_norm_op(int64_t rows, int64_t cols, at::ScalarType dtype) {
  at::manual_seed(6);
  const at::Tensor x = (at::randn({rows, cols}) * 3).to(dtype), w = at::rand({cols}) + 0.5, dy = at::randn({rows, cols});
  SelftestRow row;
  row.op = "rms_norm fwd+bwd";
  row.impl = "cpu";
  row.shape = fmt::format("{} x {}", rows, cols);
  row.dtype = dtype == at::kBFloat16 ? "bf16" : "fp32";
  // fp32: a few roundings per element (measured <= 2e-7 in unit_model); bf16: three roundings to
  // bf16 of up to 2^-9 each, as transformers' casts make them (the normalised row, the gradient
  // reaching it, dx itself): the bound of the bf16 attention backward
  row.bound = dtype == at::kBFloat16 ? 1e-2 : 1e-6;
  auto run = [&](Impl impl, at::Tensor* grads) {
    double best = std::numeric_limits<double>::infinity();
    for (int rep = 0; rep < 5; ++rep) {
      at::Tensor xi = x.detach().requires_grad_(true), wi = w.detach().requires_grad_(true);
      const auto t0 = std::chrono::steady_clock::now();
      at::Tensor y = rms_norm(xi, wi, 1e-5, impl);
      y.backward(dy);
      best = std::min(best, 1e3 * seconds_since(t0));
      grads[0] = y.detach();
      grads[1] = xi.grad();
      grads[2] = wi.grad();
    }
    return best;
  };
  at::Tensor got[3], ref[3];
  row.impl_ms = run(Impl::Cpu, got);
  row.reference_ms = run(Impl::Reference, ref);
  at::Tensor xd = x.to(at::kDouble).requires_grad_(true), wd = w.to(at::kDouble).requires_grad_(true);
  at::Tensor yd = wd * (xd * at::rsqrt(xd.pow(2).mean(-1, true) + 1e-5));
  yd.backward(dy.to(at::kDouble));
  // dx is judged against the size of its first term, s |dy w| (it cancels; see unit_model)
  const double term = (dy.to(at::kDouble) * wd.detach() *
                       at::rsqrt(xd.detach().pow(2).mean(-1, true) + 1e-5)).abs().max().item<double>();
  row.max_error = std::max({relative_error(got[0], yd.detach()),
                            (got[1].to(at::kDouble) - xd.grad()).abs().max().item<double>() / term,
                            relative_error(got[2], wd.grad())});
  return row;
}

// The AdamW kernel (kernels/adamw.h) for one step (the 3rd: bias corrections below 1) over two
// runs, decayed and not, against ATen's _fused_adamw_ followed by the bf16 copy of the weights
// (what the kernel also writes): `where` = "cpu", "emulated" (the CUDA body under the CPU
// emulation; a small buffer: each emulated block is 256 threads) or "cuda".
SelftestRow check_adamw(const std::string& where, int64_t n) {
  at::manual_seed(8);
  const at::Device device = where == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  const at::Tensor p0 = at::randn({n}, f32), g = at::randn({n}, f32) * 1e-2;
  const at::Tensor m0 = at::randn({n}, f32) * 1e-3, v0 = at::rand({n}, f32) * 1e-4;
  const double lr = 3e-4, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  const int64_t half = n / 2 + 1;  // two runs of uneven length
  SelftestRow row;
  row.op = "adamw step";
  row.impl = where == "emulated" ? "cuda source (emulated)" : where;
  row.shape = fmt::format("{} + bf16 copy", n);
  row.dtype = "fp32";
  // The unit test's measured 1.9e-7 (FMA contraction differs from ATen's), doubled.
  row.bound = 4e-7;
  const int reps = where == "emulated" ? 1 : 5;
  at::Tensor got, want;
  double best = std::numeric_limits<double>::infinity();
  for (int rep = 0; rep < reps; ++rep) {
    at::Tensor p = p0.clone(), m = m0.clone(), v = v0.clone(), copy = at::empty({n}, f32.dtype(at::kBFloat16));
    auto* bits = reinterpret_cast<uint16_t*>(copy.mutable_data_ptr<at::BFloat16>());
    const kernels::AdamWRun runs[2] = {{0, half, wd, bits}, {half, n - half, 0.0, bits + half}};
    const kernels::AdamWStep step = kernels::AdamWStep::of(lr, b1, b2, eps, 3);
    float *pp = p.mutable_data_ptr<float>(), *mp = m.mutable_data_ptr<float>(), *vp = v.mutable_data_ptr<float>();
    const float* gp = g.const_data_ptr<float>();
    const auto t0 = std::chrono::steady_clock::now();
    if (where == "emulated") {
      kernels::adamw_step_emulated(runs, 2, pp, gp, mp, vp, step);
    } else if (where == "cuda") {
#if defined(EXATRAIN_HAVE_CUDA)
      const int err = kernels::adamw_step_cuda(runs, 2, pp, gp, mp, vp, step, nullptr);
      if (err != 0) throw std::runtime_error(fmt::format("adamw: CUDA error {}", err));
      p.sum().cpu();  // waits for the kernel (the default stream)
#endif
    } else {
      at::parallel_for(0, n, int64_t{1} << 16, [&](int64_t b, int64_t e) {
        kernels::adamw_step_cpu(runs, 2, pp, gp, mp, vp, step, b, e);
      });
    }
    best = std::min(best, 1e3 * seconds_since(t0));
    got = p;
  }
  row.impl_ms = best;
  best = std::numeric_limits<double>::infinity();
  for (int rep = 0; rep < reps; ++rep) {
    at::Tensor p = p0.clone(), m = m0.clone(), v = v0.clone();
    std::vector<at::Tensor> s1{at::full({}, 2.0, f32)}, s2{at::full({}, 2.0, f32)};
    const auto t0 = std::chrono::steady_clock::now();
    for (auto* s : {&s1, &s2}) at::_foreach_add_(*s, 1);
    at::_fused_adamw_({p.narrow(0, 0, half)}, {g.narrow(0, 0, half)}, {m.narrow(0, 0, half)}, {v.narrow(0, 0, half)},
                      {}, s1, lr, b1, b2, wd, eps, false, false);
    at::_fused_adamw_({p.narrow(0, half, n - half)}, {g.narrow(0, half, n - half)}, {m.narrow(0, half, n - half)},
                      {v.narrow(0, half, n - half)}, {}, s2, lr, b1, b2, 0.0, eps, false, false);
    const at::Tensor copy = p.to(at::kBFloat16);
    if (device.is_cuda()) copy.sum().cpu();
    best = std::min(best, 1e3 * seconds_since(t0));
    want = p;
  }
  row.reference_ms = best;
  row.max_error = relative_error(got.cpu(), want.cpu());
  return row;
}

// ---- RoPE and SwiGLU (kernels/rope_swiglu*) -------------------------------------------------------

// Tables for positions 0 .. seq-1 (the model's, without its frequency scaling: any angles do).
RopeTables selftest_rope_tables(int64_t seq, int64_t head_dim) {
  const at::Tensor inv = 1.0 / at::pow(500000.0, at::arange(0, head_dim, 2, at::kLong).to(at::kFloat) / head_dim);
  const at::Tensor freqs = at::arange(seq, at::kLong).to(at::kFloat).unsqueeze(1) * inv.unsqueeze(0);
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  return RopeTables{emb.cos(), emb.sin()};
}

// fp32: two products and a sum (unit_model RopeOp.*, measured 9.1e-8); SwiGLU fp32: exp to about
// an ulp, a division, a product (measured 2.5e-7 of the element, dgate 7.9e-7 of its terms);
// bf16: a few roundings to bf16 of up to 2^-9 each, as the reference's bf16 tensors make them.
double fused_bound(at::ScalarType dtype) { return dtype == at::kBFloat16 ? 1e-2 : 1e-6; }

// ops::rope on the CPU (impl cpu) at q's layout, forward + backward, against float64; times best
// of 3, against the ATen reference at the same dtype.
SelftestRow check_rope_op(int64_t B, int64_t H, int64_t T, int64_t D, at::ScalarType dtype) {
  at::manual_seed(21);
  const RopeTables t = selftest_rope_tables(T, D);
  const at::Tensor x = at::randn({B, T, H, D}).to(dtype).transpose(1, 2), g = at::randn({B, H, T, D}).to(dtype);
  SelftestRow row;
  row.op = "rope fwd+bwd";
  row.impl = fmt::format("cpu ({})", kernels::rope_swiglu_cpu_isa());
  row.shape = fmt::format("B{} H{} T{} D{}", B, H, T, D);
  row.dtype = dtype == at::kBFloat16 ? "bf16" : "fp32";
  row.bound = fused_bound(dtype);
  auto run = [&](Impl impl, std::vector<at::Tensor>* out) {
    double best = std::numeric_limits<double>::infinity();
    for (int rep = 0; rep < 3; ++rep) {
      at::Tensor xi = x.detach().requires_grad_(true);
      const auto t0 = std::chrono::steady_clock::now();
      at::Tensor y = rope(xi, t, impl);
      y.backward(g);
      best = std::min(best, 1e3 * seconds_since(t0));
      *out = {y.detach(), xi.grad()};
    }
    return best;
  };
  std::vector<at::Tensor> got, ref;
  row.impl_ms = run(Impl::Cpu, &got);
  row.reference_ms = run(Impl::Reference, &ref);
  at::Tensor xd = x.to(at::kDouble).requires_grad_(true);
  at::Tensor yd = rope(xd, RopeTables{t.cos.to(at::kDouble), t.sin.to(at::kDouble)}, Impl::Reference);
  yd.backward(g.to(at::kDouble));
  row.max_error = std::max(relative_error(got[0], yd.detach()), relative_error(got[1], xd.grad()));
  return row;
}

SelftestRow check_swiglu_op(int64_t rows, int64_t cols, at::ScalarType dtype) {
  at::manual_seed(22);
  const at::Tensor gate = (at::randn({rows, cols}) * 3).to(dtype), up = at::randn({rows, cols}).to(dtype);
  const at::Tensor dy = at::randn({rows, cols}).to(dtype);
  SelftestRow row;
  row.op = "swiglu fwd+bwd";
  row.impl = fmt::format("cpu ({})", kernels::rope_swiglu_cpu_isa());
  row.shape = fmt::format("{} x {}", rows, cols);
  row.dtype = dtype == at::kBFloat16 ? "bf16" : "fp32";
  row.bound = fused_bound(dtype);
  auto run = [&](Impl impl, std::vector<at::Tensor>* out) {
    double best = std::numeric_limits<double>::infinity();
    for (int rep = 0; rep < 3; ++rep) {
      at::Tensor g = gate.detach().requires_grad_(true), u = up.detach().requires_grad_(true);
      const auto t0 = std::chrono::steady_clock::now();
      at::Tensor y = swiglu(g, u, impl);
      y.backward(dy);
      best = std::min(best, 1e3 * seconds_since(t0));
      *out = {y.detach(), g.grad(), u.grad()};
    }
    return best;
  };
  std::vector<at::Tensor> got, ref;
  row.impl_ms = run(Impl::Cpu, &got);
  row.reference_ms = run(Impl::Reference, &ref);
  at::Tensor gd = gate.to(at::kDouble).requires_grad_(true), ud = up.to(at::kDouble).requires_grad_(true);
  at::Tensor yd = swiglu(gd, ud, Impl::Reference);
  yd.backward(dy.to(at::kDouble));
  row.max_error = std::max({relative_error(got[0], yd.detach()), relative_error(got[1], gd.grad()),
                            relative_error(got[2], ud.grad())});
  return row;
}

// The CUDA kernels' bodies (kernels/rope_swiglu.cuh) under the CPU emulation, forward and backward,
// bf16, against float64 on the same values: RoPE with per-token tables (document masks) on a
// strided x, three blocks; SwiGLU over two blocks.
SelftestRow check_rope_swiglu_emulated(bool is_rope) {
  at::manual_seed(23);
  const at::ScalarType dtype = at::kBFloat16;
  SelftestRow row;
  row.op = is_rope ? "rope fwd+bwd" : "swiglu fwd+bwd";
  row.impl = "cuda source, emulated";
  row.dtype = "bf16";
  row.bound = fused_bound(dtype);
  if (is_rope) {
    const int64_t B = 2, H = 3, T = 37, D = 22;
    row.shape = fmt::format("B{} H{} T{} D{} docs", B, H, T, D);  // per-token tables
    const RopeTables plain = selftest_rope_tables(T, D);
    // Row 1 at positions shifted by 5: a table per row, as document masks give.
    const at::Tensor idx = at::stack({at::arange(T, at::kLong), (at::arange(T, at::kLong) + 5) % T});
    const RopeTables t{plain.cos.index({idx}).unsqueeze(1), plain.sin.index({idx}).unsqueeze(1)};  // [B, 1, T, D]
    const at::Tensor x = at::randn({B, T, H, D}).to(dtype).transpose(1, 2), g = at::randn({B, H, T, D}).to(dtype);
    const at::Tensor cos = t.cos.squeeze(1).to(dtype).contiguous(), sin = t.sin.squeeze(1).to(dtype).contiguous();
    at::Tensor y = at::empty({B, H, T, D}, dtype), dx = at::empty({B, H, T, D}, dtype);
    auto params = [&](const at::Tensor& in, at::Tensor& out) {
      kernels::RopeParams p{};
      p.x = in.const_data_ptr();
      p.y = out.mutable_data_ptr();
      p.cos = cos.const_data_ptr();
      p.sin = sin.const_data_ptr();
      p.batch = B;
      p.heads = H;
      p.seq = T;
      p.head_dim = D;
      for (int d = 0; d < 3; ++d) {
        p.x_stride[d] = in.stride(d);
        p.y_stride[d] = out.stride(d);
      }
      p.table_stride_b = T * D;
      p.bf16 = true;
      return p;
    };
    const auto t0 = std::chrono::steady_clock::now();
    kernels::rope_emulated(params(x, y), false);
    kernels::rope_emulated(params(g, dx), true);
    row.impl_ms = 1e3 * seconds_since(t0);
    const auto r0 = std::chrono::steady_clock::now();
    at::Tensor xd = x.to(at::kDouble).requires_grad_(true);
    at::Tensor yd = rope(xd, RopeTables{t.cos.to(at::kDouble), t.sin.to(at::kDouble)}, Impl::Reference);
    yd.backward(g.to(at::kDouble));
    row.reference_ms = 1e3 * seconds_since(r0);
    row.max_error = std::max(relative_error(y, yd.detach()), relative_error(dx, xd.grad()));
    return row;
  }
  const at::Tensor gate = (at::randn({3, 500}) * 3).to(dtype), up = at::randn({3, 500}).to(dtype);
  const at::Tensor dy = at::randn({3, 500}).to(dtype);
  row.shape = "3 x 500";
  at::Tensor out = at::empty_like(gate), dgate = at::empty_like(gate), dup = at::empty_like(up);
  const kernels::SwigluParams p{gate.const_data_ptr(), up.const_data_ptr(), out.mutable_data_ptr(),
                                dy.const_data_ptr(),   dgate.mutable_data_ptr(), dup.mutable_data_ptr(),
                                gate.numel(),          true};
  const auto t0 = std::chrono::steady_clock::now();
  kernels::swiglu_emulated(p, false);
  kernels::swiglu_emulated(p, true);
  row.impl_ms = 1e3 * seconds_since(t0);
  const auto r0 = std::chrono::steady_clock::now();
  at::Tensor gd = gate.to(at::kDouble).requires_grad_(true), ud = up.to(at::kDouble).requires_grad_(true);
  at::Tensor yd = swiglu(gd, ud, Impl::Reference);
  yd.backward(dy.to(at::kDouble));
  row.reference_ms = 1e3 * seconds_since(r0);
  row.max_error = std::max({relative_error(out, yd.detach()), relative_error(dgate, gd.grad()),
                            relative_error(dup, ud.grad())});
  return row;
}

void add_rope_swiglu_rows(std::vector<SelftestRow>& rows) {
  at::AutoGradMode grad(true);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    rows.push_back(check_rope_op(1, 40, 1024, 128, dtype));  // the 32B q heads, 1,024 tokens
    rows.push_back(check_swiglu_op(2048, 3456, dtype));       // the 32B MLP width at TP 8, 2,048 tokens
  }
  rows.push_back(check_rope_swiglu_emulated(/*is_rope=*/true));
  rows.push_back(check_rope_swiglu_emulated(/*is_rope=*/false));
}

// ---- cross-entropy --------------------------------------------------------------------------
// Targets for the cross-entropy checks: random, the last column, and one ignored row.
at::Tensor xent_targets(int64_t rows, int64_t vocab) {
  at::Tensor t = at::randint(vocab, {rows}, at::kLong);
  t[0] = vocab - 1;
  if (rows > 2) t[2] = kernels::kIgnoreTarget;
  return t;
}

// The loss operator (ops::cross_entropy) forward + backward through a weighted sum, against
// at::cross_entropy_loss in float64 on the same values: the worst of the per-row losses and the
// gradient. Times: forward + backward, best of 3, against the ATen reference at the same dtype.
SelftestRow check_cross_entropy(int64_t rows, int64_t vocab, at::ScalarType dtype) {
  at::manual_seed(21);
  const at::Tensor z = (at::randn({rows, vocab}) * 4).to(dtype), t = xent_targets(rows, vocab);
  const at::Tensor w = at::rand({rows}) + 0.25;
  auto run = [&](const at::Tensor& logits, Impl impl, double* ms) {
    std::vector<at::Tensor> out;
    double best = std::numeric_limits<double>::infinity();
    for (int rep = 0; rep < (ms ? 3 : 1); ++rep) {
      at::Tensor x = logits.detach().requires_grad_(true);
      const auto t0 = std::chrono::steady_clock::now();
      at::Tensor loss = cross_entropy(x, t, impl);
      (loss * w.to(loss.scalar_type())).sum().backward();
      best = std::min(best, 1e3 * seconds_since(t0));
      out = {loss.detach(), x.grad()};
    }
    if (ms) *ms = best;
    return out;
  };
  SelftestRow row;
  row.op = "cross-ent fwd+bwd";
  row.impl = fmt::format("cpu ({})", kernels::cross_entropy_cpu_isa());
  row.shape = fmt::format("{} x {}", rows, vocab);
  row.dtype = dtype == at::kBFloat16 ? "bf16" : "fp32";
  // fp32: measured <= 7.8e-8 in unit_model (CrossEntropy.*), bound 3e-7; bf16: the gradient
  // rounded to bf16 once, half an ulp: 2^-8 of a value in [1, 2) (the weights reach 1.25)
  row.bound = dtype == at::kBFloat16 ? 3.91e-3 : 3e-7;
  const auto want = run(z.to(at::kDouble), Impl::Reference, nullptr);
  const auto got = run(z, Impl::Cpu, &row.impl_ms);
  run(z, Impl::Reference, &row.reference_ms);
  row.max_error = std::max(relative_error(got[0], want[0]), relative_error(got[1], want[1]));
  return row;
}

// The CUDA kernels' bodies (kernels/cross_entropy_kernel.cuh) under the CPU emulation, and on a
// GPU when there is one: forward partials and backward, loss and gradient formed as the binding
// forms them, against float64. One block of 256 threads per row.
SelftestRow check_cross_entropy_cuda_source(at::ScalarType dtype, bool on_gpu) {
  const int64_t rows = 4, vocab = 3001;
  at::manual_seed(22);
  const at::Tensor z = (at::randn({rows, vocab}) * 4).to(dtype), t = xent_targets(rows, vocab);
  const at::Tensor g = at::rand({rows}) + 0.25;
  SelftestRow row;
  row.op = "cross-ent fwd+bwd";
  row.impl = on_gpu ? "cuda" : "cuda source, emulated";
  row.shape = fmt::format("{} x {}", rows, vocab);
  row.dtype = dtype == at::kBFloat16 ? "bf16" : "fp32";
  row.bound = dtype == at::kBFloat16 ? 3.91e-3 : 3e-7;  // as the fused CPU kernel's (same row math)
  const at::Device device = on_gpu ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  const at::Tensor zd = z.to(device).contiguous(), td = t.to(device);
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  at::Tensor mx = at::empty({rows}, f32), sum = at::empty({rows}, f32), tl = at::empty({rows}, f32);
  kernels::CrossEntropyParams p;
  p.logits = zd.const_data_ptr();
  p.bf16 = dtype == at::kBFloat16;
  p.targets = td.const_data_ptr<int64_t>();
  p.rows = rows;
  p.cols = vocab;
  p.row_max = mx.mutable_data_ptr<float>();
  p.row_sum = sum.mutable_data_ptr<float>();
  p.target_logit = tl.mutable_data_ptr<float>();
  const auto t0 = std::chrono::steady_clock::now();
  int err = 0;
  if (!on_gpu) kernels::cross_entropy_forward_emulated(p);
  else err = kernels::cross_entropy_forward_cuda(p, nullptr);
  const at::Tensor log_sum = sum.log().contiguous(), gd = g.to(device);
  at::Tensor dz = at::empty_like(zd);
  p.max = mx.const_data_ptr<float>();
  p.log_sum = log_sum.const_data_ptr<float>();
  p.grad = gd.const_data_ptr<float>();
  p.dlogits = dz.mutable_data_ptr();
  if (!on_gpu) kernels::cross_entropy_backward_emulated(p);
  else if (err == 0) err = kernels::cross_entropy_backward_cuda(p, nullptr);
  if (err != 0) {
    row.max_error = std::numeric_limits<double>::infinity();
    row.impl += fmt::format(" (launch failed: cudaError {})", err);
    return row;
  }
  const at::Tensor loss = at::where(td == kernels::kIgnoreTarget, at::zeros_like(log_sum), log_sum - (tl - mx)).cpu();
  dz = dz.cpu();  // waits for the kernels
  row.impl_ms = 1e3 * seconds_since(t0);
  at::Tensor x = z.to(at::kDouble).requires_grad_(true);
  const auto r0 = std::chrono::steady_clock::now();
  const at::Tensor want = cross_entropy(x, t, Impl::Reference);
  (want * g.to(at::kDouble)).sum().backward();
  row.reference_ms = 1e3 * seconds_since(r0);
  row.max_error = std::max(relative_error(loss, want.detach()), relative_error(dz, x.grad()));
  return row;
}

}  // namespace

std::vector<SelftestRow> run_kernel_selftest() {
  at::NoGradGuard no_grad_outside;  // the attention checks enable grad where they need it
  std::vector<SelftestRow> rows;
  {
    at::AutoGradMode grad(true);
    for (const AttentionCase& c : {AttentionCase{1, 8, 2, 257, 128, 64, at::kFloat},    // 32B head layout
                                   AttentionCase{2, 4, 4, 300, 64, 0, at::kFloat},      // full causal
                                   AttentionCase{1, 6, 2, 200, 24, 23, at::kFloat},     // D off the vector width
                                   AttentionCase{1, 8, 2, 257, 128, 64, at::kBFloat16}})
      rows.push_back(check_attention(c));
  }
  rows.push_back(check_attention_tensor_cores(/*on_gpu=*/false));
  {
    at::AutoGradMode grad(true);
    rows.push_back(check_attention_backward_emulated());
  }
  if (kernels::cuda_device_available()) {
    rows.push_back(check_attention_tensor_cores(/*on_gpu=*/true));
    at::AutoGradMode grad(true);
    for (const AttentionCase& c : {AttentionCase{1, 8, 2, 257, 128, 64, at::kBFloat16},
                                   AttentionCase{2, 4, 4, 300, 64, 0, at::kBFloat16}})
      rows.push_back(check_attention(c, Impl::Cuda));
  }
  {
    at::AutoGradMode grad(true);
    // the CUDA kernels: the per-head q/k norm (a warp per row) and the 32B hidden size (a block per row)
    for (const auto& [r, c] : {std::pair{int64_t{37}, int64_t{128}}, std::pair{int64_t{3}, int64_t{5120}}})
      for (const auto dtype : {at::kFloat, at::kBFloat16}) {
        rows.push_back(check_rms_norm_cuda_source(r, c, dtype, /*on_gpu=*/false));
        if (kernels::cuda_device_available()) rows.push_back(check_rms_norm_cuda_source(r, c, dtype, /*on_gpu=*/true));
      }
  }
  {
    at::AutoGradMode grad(true);
    for (const auto& [r, c, dtype] : {std::tuple{int64_t{4096}, int64_t{5120}, at::kFloat},    // 32B hidden
                                      std::tuple{int64_t{4096}, int64_t{5120}, at::kBFloat16},
                                      std::tuple{int64_t{65536}, int64_t{128}, at::kFloat}})   // per-head q/k norm
      rows.push_back(check_rms_norm_op(r, c, dtype));
  }
  rows.push_back(check_adamw("cpu", int64_t{1} << 24));
  rows.push_back(check_adamw("emulated", 4099));
  if (kernels::cuda_device_available()) rows.push_back(check_adamw("cuda", int64_t{1} << 24));
  add_rope_swiglu_rows(rows);
  {
    at::AutoGradMode grad(true);
    // 512 tokens of the 32B vocabulary (fp32 and bf16 logits), and an odd vocabulary
    for (const auto& [r, v, dtype] : {std::tuple{int64_t{512}, int64_t{102400}, at::kFloat},
                                      std::tuple{int64_t{512}, int64_t{102400}, at::kBFloat16},
                                      std::tuple{int64_t{37}, int64_t{50021}, at::kFloat}})
      rows.push_back(check_cross_entropy(r, v, dtype));
    for (const auto dtype : {at::kFloat, at::kBFloat16}) {
      rows.push_back(check_cross_entropy_cuda_source(dtype, /*on_gpu=*/false));
      if (kernels::cuda_device_available()) rows.push_back(check_cross_entropy_cuda_source(dtype, /*on_gpu=*/true));
    }
  }
  return rows;
}

}  // namespace exatrain::ops
