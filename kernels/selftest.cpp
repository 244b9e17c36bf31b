#include "kernels/selftest.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <tuple>

#include "kernels/cross_entropy.h"
#include "kernels/flash_attention.h"
#include "kernels/flash_attention_cuda.h"
#include "kernels/ops.h"
#include "kernels/rmsnorm.h"

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

// The RMSNorm kernel's row functions (shared with the CUDA kernel) against ATen in float64.
SelftestRow check_rmsnorm(int64_t rows, int64_t cols) {
  at::manual_seed(5);
  const at::Tensor x = at::randn({rows, cols}), w = at::randn({cols});
  at::Tensor y = at::empty_like(x);
  SelftestRow row;
  row.op = "rmsnorm fwd";
  row.impl = "cpu (CUDA row functions)";
  row.shape = fmt::format("{} x {}", rows, cols);
  row.dtype = "fp32";
  row.bound = 1e-6;  // fp32 sums of squares over <= 4096 terms, one rounding each
  auto t0 = std::chrono::steady_clock::now();
  kernels::rmsnorm_forward_cpu(x.const_data_ptr<float>(), w.const_data_ptr<float>(), y.mutable_data_ptr<float>(), rows,
                               cols, 1e-5f);
  row.impl_ms = 1e3 * seconds_since(t0);
  const at::Tensor xd = x.to(at::kDouble);
  t0 = std::chrono::steady_clock::now();
  const at::Tensor want = w.to(at::kDouble) * xd * at::rsqrt(xd.pow(2).mean(-1, true) + 1e-5);
  row.reference_ms = 1e3 * seconds_since(t0);
  row.max_error = relative_error(y, want);
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
  rows.push_back(check_rmsnorm(64, 5120));
  {
    at::AutoGradMode grad(true);
    for (const auto& [r, c, dtype] : {std::tuple{int64_t{4096}, int64_t{5120}, at::kFloat},    // 32B hidden
                                      std::tuple{int64_t{4096}, int64_t{5120}, at::kBFloat16},
                                      std::tuple{int64_t{65536}, int64_t{128}, at::kFloat}})   // per-head q/k norm
      rows.push_back(check_rms_norm_op(r, c, dtype));
  }
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
