// Bindings of the fused operators: ATen tensors in, the C-style kernels (kernels/*.h) inside an
// autograd function, the ATen reference beside them.
#include "kernels/ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/flash_attention.h"
#include "kernels/flash_attention_cuda.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope_swiglu.h"
#include "kernels/cross_entropy.h"
#include "trainer/core/error.h"

#include <map>
#include <vector>

#if defined(EXATRAIN_HAVE_CUDA)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>

#include "trainer/core/logging.h"
#endif

namespace exatrain::ops {

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::Reference: return "reference";
    case Impl::Cpu: return "cpu";
    case Impl::Cuda: break;
  }
  return "cuda";
}

Impl resolve_impl(KernelChoice choice, const at::Device& device) {
  if (choice == KernelChoice::Reference) return Impl::Reference;
  // On the CPU our kernel serves every layer: windowed attention, where SDPA needs a [seq, seq]
  // mask, and plain causal attention too, where SDPA's is_causal flash kernel took 1.37 s of CPU
  // time against our 0.94 s (4,096 tokens, one thread; `exatrain bench attention`,
  // docs/performance.md).
  if (device.is_cpu()) return Impl::Cpu;
#if defined(EXATRAIN_HAVE_CUDA)
  if (device.is_cuda()) return Impl::Cuda;  // attention() itself falls back where the kernel cannot run
#endif
  return Impl::Reference;
}

at::Tensor visibility_mask(int64_t seq, int64_t window, const at::Device& device, const at::Tensor& segments) {
  at::Tensor q = at::arange(seq, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(1);
  at::Tensor k = q.transpose(0, 1);
  at::Tensor visible = k <= q;
  if (window > 0) visible = visible.logical_and(k > q - window);
  if (!segments.defined()) return visible;
  const at::Tensor seg = segments.to(device);
  return visible.logical_and(seg.unsqueeze(2) == seg.unsqueeze(1)).unsqueeze(1);  // [batch, 1, seq, seq]
}

namespace {

#if defined(EXATRAIN_HAVE_CUDA)
// The first-use checks of the CUDA kernels: the largest difference of got[i] from want[i] (the
// reference, in float64), relative to want[i]'s largest value (at least 1), over all i.
double worst_relative_error(const std::vector<at::Tensor>& got, const std::vector<at::Tensor>& want) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, (got[i].to(at::kDouble) - want[i]).abs().max().item<double>() /
                                std::max(1.0, want[i].abs().max().item<double>()));
  return worst;
}
#endif

// SDPA with the visibility written out as a [seq, seq] boolean mask (sliding) or is_causal.
at::Tensor attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionSpec& spec) {
  const int64_t T = q.size(2);
  // A window at least the sequence is plain causal attention.
  if ((spec.window <= 0 || spec.window >= T) && !spec.segments.defined())
    return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, spec.scale, /*enable_gqa=*/true);
  const at::Tensor mask = spec.mask.defined() ? spec.mask : visibility_mask(T, spec.window, q.device(), spec.segments);
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, false, spec.scale, /*enable_gqa=*/true);
}

kernels::AttentionShape shape_of(const at::Tensor& q, const at::Tensor& k, const AttentionSpec& spec) {
  kernels::AttentionShape s;
  s.batch = q.size(0);
  s.heads = q.size(1);
  s.kv_heads = k.size(1);
  s.seq = q.size(2);
  s.head_dim = q.size(3);
  s.window = spec.window >= s.seq ? 0 : spec.window;
  s.scale = static_cast<float>(spec.scale);
  return s;
}

at::Tensor fp32_contiguous(const at::Tensor& t) { return t.to(at::kFloat).contiguous(); }

// The kernel's view of document segments: contiguous int32 [batch, seq] (empty: none; an
// autograd function takes no undefined tensors). The kernel relies on each row being
// non-decreasing (it finds a document's first token by binary search), so that is checked here.
at::Tensor segments_int32(const at::Tensor& segments, const kernels::AttentionShape& s,
                          const at::Device& device = at::kCPU) {
  if (!segments.defined() || segments.numel() == 0) return at::empty({0}, at::TensorOptions().dtype(at::kInt).device(device));
  EXATRAIN_CHECK(segments.dim() == 2 && segments.size(0) == s.batch && segments.size(1) == s.seq,
                 "attention: segments must be [batch {}, seq {}], got {}", s.batch, s.seq, c10::str(segments.sizes()));
  const at::Tensor seg = segments.to(device, at::kInt).contiguous();
  if (s.seq > 1)
    EXATRAIN_CHECK((seg.narrow(1, 1, s.seq - 1) >= seg.narrow(1, 0, s.seq - 1)).all().item<bool>(),
                   "attention: document segments must be non-decreasing along each row");
  return seg;
}

// Spreads a kernel's independent work items over ATen's intra-op threads.
template <class Body>
void run_items(int64_t items, const Body& body) {
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) { body(begin, end); });
}

struct FlashAttentionCpu : public torch::autograd::Function<FlashAttentionCpu> {
  // Saved for backward: q, k, v as they came (their dtype; widened again in the backward) and
  // the output in q's dtype, plus the fp32 log-sum-exp: the same bytes SDPA keeps, never fp32
  // copies of bf16 activations.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, int64_t window, double scale, const at::Tensor& segments) {
    kernels::AttentionShape s = shape_of(q, k, AttentionSpec{window, scale});
    const at::Tensor seg = segments_int32(segments, s);
    if (seg.numel() > 0) s.segments = seg.const_data_ptr<int32_t>();
    const at::Tensor q32 = fp32_contiguous(q), k32 = fp32_contiguous(k), v32 = fp32_contiguous(v);
    at::Tensor o = at::empty_like(q32);
    at::Tensor lse = at::empty({s.batch, s.heads, s.seq}, q32.options());
    const float *qp = q32.const_data_ptr<float>(), *kp = k32.const_data_ptr<float>(), *vp = v32.const_data_ptr<float>();
    float *op = o.mutable_data_ptr<float>(), *lp = lse.mutable_data_ptr<float>();
    run_items(kernels::flash_forward_items(s), [&](int64_t begin, int64_t end) {
      kernels::flash_attention_forward_cpu(s, qp, kp, vp, op, lp, begin, end);
    });
    at::Tensor out = o.to(q.scalar_type());
    ctx->save_for_backward({q, k, v, out, lse, seg});
    ctx->saved_data["window"] = window;
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q_in = saved[0], &k_in = saved[1], &v_in = saved[2];
    const at::Tensor q = fp32_contiguous(q_in), k = fp32_contiguous(k_in), v = fp32_contiguous(v_in);
    const at::Tensor o = fp32_contiguous(saved[3]), &lse = saved[4], &seg = saved[5];
    kernels::AttentionShape s =
        shape_of(q, k, AttentionSpec{ctx->saved_data["window"].toInt(), ctx->saved_data["scale"].toDouble()});
    if (seg.numel() > 0) s.segments = seg.const_data_ptr<int32_t>();
    const at::Tensor dout = fp32_contiguous(grad_out[0]);
    const at::Tensor delta = (dout * o).sum(-1).contiguous();  // [B, H, T]
    at::Tensor dq = at::empty_like(q);
    // Each query head's share of dK and dV, summed over the heads of its group below.
    at::Tensor dk_heads = at::empty_like(q), dv_heads = at::empty_like(q);
    const float *qp = q.const_data_ptr<float>(), *kp = k.const_data_ptr<float>(), *vp = v.const_data_ptr<float>();
    const float *lp = lse.const_data_ptr<float>(), *dp = delta.const_data_ptr<float>();
    const float* gp = dout.const_data_ptr<float>();
    float *dqp = dq.mutable_data_ptr<float>(), *dkp = dk_heads.mutable_data_ptr<float>();
    float* dvp = dv_heads.mutable_data_ptr<float>();
    run_items(kernels::flash_backward_items(s), [&](int64_t begin, int64_t end) {
      kernels::flash_attention_backward_cpu(s, qp, kp, vp, lp, dp, gp, dqp, dkp, dvp, begin, end);
    });
    const int64_t group = s.heads / s.kv_heads;
    auto per_kv = [&](const at::Tensor& t) {
      return group == 1 ? t : t.view({s.batch, s.kv_heads, group, s.seq, s.head_dim}).sum(2);
    };
    return {dq.to(q_in.scalar_type()), per_kv(dk_heads).to(k_in.scalar_type()), per_kv(dv_heads).to(v_in.scalar_type()),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

#if defined(EXATRAIN_HAVE_CUDA)
const uint16_t* bf16_bits(const at::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.const_data_ptr()); }

void check_launch(int err, const char* what) {
  EXATRAIN_CHECK(err == 0, "attention: the CUDA {} kernel failed to launch (cudaError {})", what, err);
}

// The tensor-core kernels (kernels/flash_attention_{fwd,bwd}.cuh) on bf16 CUDA tensors, on
// the current stream: the same algorithm and layouts as the CPU kernel, bf16 operands with
// fp32 accumulation.
struct FlashAttentionCuda : public torch::autograd::Function<FlashAttentionCuda> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q_in, const at::Tensor& k_in,
                            const at::Tensor& v_in, int64_t window, double scale, const at::Tensor& segments) {
    const c10::cuda::CUDAGuard guard(q_in.device());
    const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    const kernels::AttentionShape s = shape_of(q, k, AttentionSpec{window, scale});
    const at::Tensor seg = segments_int32(segments, s, q.device());
    at::Tensor o = at::empty_like(q), lse = at::empty({s.batch, s.heads, s.seq}, q.options().dtype(at::kFloat));
    const kernels::FlashFwdParams p{bf16_bits(q), bf16_bits(k), bf16_bits(v),
                                    reinterpret_cast<uint16_t*>(o.mutable_data_ptr()), lse.mutable_data_ptr<float>(),
                                    static_cast<int>(s.batch), static_cast<int>(s.heads), static_cast<int>(s.kv_heads),
                                    static_cast<int>(s.seq), static_cast<int>(s.window), s.scale,
                                    seg.numel() > 0 ? seg.const_data_ptr<int32_t>() : nullptr};
    check_launch(kernels::flash_attention_forward_cuda(p, static_cast<int>(s.head_dim),
                                                       c10::cuda::getCurrentCUDAStream().stream()),
                 "forward");
    ctx->save_for_backward({q, k, v, o, lse, seg});
    ctx->saved_data["window"] = window;
    ctx->saved_data["scale"] = scale;
    return o;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &o = saved[3], &lse = saved[4], &seg = saved[5];
    const c10::cuda::CUDAGuard guard(q.device());
    const kernels::AttentionShape s =
        shape_of(q, k, AttentionSpec{ctx->saved_data["window"].toInt(), ctx->saved_data["scale"].toDouble()});
    const at::Tensor dout = grad_out[0].to(at::kBFloat16).contiguous();
    const at::Tensor delta = (dout.to(at::kFloat) * o.to(at::kFloat)).sum(-1).contiguous();  // [B, H, T]
    at::Tensor dq = at::zeros(q.sizes(), q.options().dtype(at::kFloat));
    at::Tensor dk_heads = at::empty_like(dq), dv_heads = at::empty_like(dq);
    const kernels::FlashBwdParams p{bf16_bits(q), bf16_bits(k), bf16_bits(v), bf16_bits(dout),
                                    lse.const_data_ptr<float>(), delta.const_data_ptr<float>(),
                                    dq.mutable_data_ptr<float>(), dk_heads.mutable_data_ptr<float>(),
                                    dv_heads.mutable_data_ptr<float>(), static_cast<int>(s.batch),
                                    static_cast<int>(s.heads), static_cast<int>(s.kv_heads), static_cast<int>(s.seq),
                                    static_cast<int>(s.window), s.scale,
                                    seg.numel() > 0 ? seg.const_data_ptr<int32_t>() : nullptr};
    check_launch(kernels::flash_attention_backward_cuda(p, static_cast<int>(s.head_dim),
                                                        c10::cuda::getCurrentCUDAStream().stream()),
                 "backward");
    const int64_t group = s.heads / s.kv_heads;
    auto per_kv = [&](const at::Tensor& t) {
      return group == 1 ? t : t.view({s.batch, s.kv_heads, group, s.seq, s.head_dim}).sum(2);
    };
    return {dq.to(at::kBFloat16), per_kv(dk_heads).to(at::kBFloat16), per_kv(dv_heads).to(at::kBFloat16), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};
#endif

#if defined(EXATRAIN_HAVE_CUDA)
// Before the tensor-core kernels serve a shape class (head_dim, sliding or not) on a device,
// they run once on a small case of that class against the reference in float64, forward and
// backward; a kernel off by more than the bf16 bound (tests/unit/test_simt.cpp, selftest) is
// not used: a warning names it and the reference runs instead, for the rest of the process.
bool cuda_attention_trusted(const at::Tensor& q, const AttentionSpec& spec) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int64_t, bool, bool>, bool> verdicts;
  const bool sliding = spec.window > 0 && spec.window < q.size(2), documents = spec.segments.defined();
  const auto key = std::make_tuple(static_cast<int>(q.device().index()), q.size(3), sliding, documents);
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = verdicts.find(key); it != verdicts.end()) return it->second;
  const int64_t D = q.size(3), T = 96;
  AttentionSpec probe;
  probe.window = sliding ? 37 : 0;
  probe.scale = 1.0 / std::sqrt(static_cast<double>(D));
  // Documents of 29 tokens: several per tile, boundaries across tiles.
  if (documents) probe.segments = (at::arange(T, at::kLong) / 29).to(at::kInt).view({1, T});
  const at::Tensor probe_segments = documents ? probe.segments.to(q.device()) : at::empty({0}, at::kInt);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(29);
  auto make = [&](int64_t heads) { return at::randn({1, heads, T, D}, gen, at::kDouble); };
  const at::Tensor q64 = make(2), k64 = make(1), v64 = make(1), g64 = make(2);
  auto grads = [&](const at::Tensor& qi, const at::Tensor& ki, const at::Tensor& vi, const at::Tensor& g, Impl impl) {
    at::AutoGradMode enable(true);
    at::Tensor a = qi.detach().requires_grad_(true), b = ki.detach().requires_grad_(true), c = vi.detach().requires_grad_(true);
    // The kernel itself, not attention(): that would come back here for the verdict.
    at::Tensor out = impl == Impl::Cuda ? FlashAttentionCuda::apply(a, b, c, probe.window, probe.scale, probe_segments)
                                        : attention(a, b, c, probe, impl);
    out.backward(g);
    return std::vector<at::Tensor>{out.detach().cpu(), a.grad().cpu(), b.grad().cpu(), c.grad().cpu()};
  };
  auto bf16 = [&](const at::Tensor& t) { return t.to(q.device(), at::kBFloat16); };
  const auto want = grads(bf16(q64).to(at::kCPU, at::kDouble), bf16(k64).to(at::kCPU, at::kDouble),
                          bf16(v64).to(at::kCPU, at::kDouble), bf16(g64).to(at::kCPU, at::kDouble), Impl::Reference);
  double worst = 0;
  try {
    const auto got = grads(bf16(q64), bf16(k64), bf16(v64), bf16(g64), Impl::Cuda);
    worst = worst_relative_error(got, want);
  } catch (const std::exception& e) {
    worst = std::numeric_limits<double>::infinity();
    log_warn("attention: the CUDA kernel failed its check ({})", e.what());
  }
  const bool ok = worst <= 1.5625e-2;
  if (!ok)
    log_warn("attention: the CUDA flash attention kernel (head_dim {}, {}{}) is off by {:.2e} against the reference "
             "(bound 1.56e-2) on {}; using the reference (ATen SDPA) instead. Run `exatrain selftest --kernels`.",
             D, sliding ? "sliding window" : "causal", documents ? ", document masks" : "", worst, q.device().str());
  verdicts[key] = ok;
  return ok;
}
#endif

void check_shapes(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  EXATRAIN_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
                 "attention: q, k, v must be [batch, heads, seq, head_dim], got {}, {}, {} dimensions", q.dim(),
                 k.dim(), v.dim());
  auto str = [](const at::Tensor& t) { return c10::str(t.sizes()); };
  EXATRAIN_CHECK(k.sizes() == v.sizes(), "attention: k {} and v {} differ in shape", str(k), str(v));
  EXATRAIN_CHECK(q.size(0) == k.size(0) && q.size(2) == k.size(2) && q.size(3) == k.size(3),
                 "attention: q {} and k {} disagree in batch, seq or head_dim", str(q), str(k));
  EXATRAIN_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0,
                 "attention: {} query heads are not a multiple of {} KV heads", q.size(1), k.size(1));
}

}  // namespace

namespace {

at::Tensor rms_norm_reference(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor h = x.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return weight * h.to(x.scalar_type());
}

// Rows of the kernel spread over ATen's threads in a fixed split (one part per thread), so the
// weight gradient's per-part sums are added in one order.
struct RmsNormCpu : public torch::autograd::Function<RmsNormCpu> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            double eps) {
    const int64_t cols = x.size(-1), rows = cols > 0 ? x.numel() / cols : 0;
    const at::Tensor x32 = fp32_contiguous(x), w32 = fp32_contiguous(weight);
    at::Tensor y = at::empty_like(x32);
    at::Tensor inv = at::empty({rows}, x32.options());
    const bool round = x.scalar_type() == at::kBFloat16;
    const float *xp = x32.const_data_ptr<float>(), *wp = w32.const_data_ptr<float>();
    float *yp = y.mutable_data_ptr<float>(), *ip = inv.mutable_data_ptr<float>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t b, int64_t e) {
      kernels::rmsnorm_forward_rows(xp, wp, yp, ip, cols, static_cast<float>(eps), round, b, e);
    });
    ctx->save_for_backward({x, weight, inv});
    return y.to(at::result_type(weight, x));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x_in = saved[0], &w_in = saved[1], &inv = saved[2];
    const at::Tensor x = fp32_contiguous(x_in), w = fp32_contiguous(w_in), dy = fp32_contiguous(grad_out[0]);
    const int64_t cols = x.size(-1), rows = cols > 0 ? x.numel() / cols : 0;
    const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
    at::Tensor dx = at::empty_like(x);
    at::Tensor dw_parts = at::zeros({parts, cols}, x.options().dtype(at::kDouble));
    at::Tensor scratch = at::empty({parts, cols}, x.options());
    const bool round = x_in.scalar_type() == at::kBFloat16;
    const float *xp = x.const_data_ptr<float>(), *wp = w.const_data_ptr<float>(), *ip = inv.const_data_ptr<float>();
    const float* gp = dy.const_data_ptr<float>();
    float* dxp = dx.mutable_data_ptr<float>();
    double* dwp = dw_parts.mutable_data_ptr<double>();
    float* sp = scratch.mutable_data_ptr<float>();
    at::parallel_for(0, parts, 1, [&](int64_t b, int64_t e) {
      for (int64_t part = b; part < e; ++part)
        kernels::rmsnorm_backward_rows(xp, wp, ip, gp, dxp, dwp + part * cols, sp + part * cols, cols, round,
                                       rows * part / parts, rows * (part + 1) / parts);
    });
    return {dx.to(x_in.scalar_type()), dw_parts.sum(0).to(w_in.scalar_type()), at::Tensor()};
  }
};

#if defined(EXATRAIN_HAVE_CUDA)
// The CUDA kernels (kernels/rmsnorm_kernel.cuh) on CUDA tensors: x as it is (fp32 or bf16, no fp32
// copy), the weight as fp32 ([cols], small); the node keeps x, the weight and one fp32 1/rms per
// row, as the CPU kernel's. The output is in torch's promoted dtype of weight and x.
kernels::RmsNormParams rms_norm_cuda_params(const at::Tensor& x, const at::Tensor& w32, at::ScalarType out) {
  kernels::RmsNormParams p;
  p.x = x.const_data_ptr();
  p.x_bf16 = x.scalar_type() == at::kBFloat16;
  p.y_bf16 = out == at::kBFloat16;
  p.weight = w32.const_data_ptr<float>();
  p.cols = x.size(-1);
  p.rows = p.cols > 0 ? x.numel() / p.cols : 0;
  return p;
}

void rms_norm_check_launch(int err, const char* what) {
  EXATRAIN_CHECK(err == 0, "rms_norm: the CUDA {} kernel failed to launch (cudaError {})", what, err);
}

struct RmsNormCuda : public torch::autograd::Function<RmsNormCuda> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& weight,
                            double eps) {
    const at::Tensor x = x_in.contiguous(), w32 = weight.to(at::kFloat).contiguous();
    const at::ScalarType out = at::result_type(weight, x);
    kernels::RmsNormParams p = rms_norm_cuda_params(x, w32, out);
    at::Tensor y = at::empty(x.sizes(), x.options().dtype(out));
    at::Tensor inv = at::empty({p.rows}, x.options().dtype(at::kFloat));
    p.eps = static_cast<float>(eps);
    p.y = y.mutable_data_ptr();
    p.inv = inv.mutable_data_ptr<float>();
    const c10::cuda::CUDAGuard guard(x.device());
    rms_norm_check_launch(kernels::rmsnorm_forward_cuda(p, c10::cuda::getCurrentCUDAStream().stream()), "forward");
    ctx->save_for_backward({x, weight, inv});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1];
    at::Tensor inv = saved[2];
    const at::Tensor w32 = weight.to(at::kFloat).contiguous();
    const at::ScalarType out = at::result_type(weight, x);
    kernels::RmsNormParams p = rms_norm_cuda_params(x, w32, out);
    const at::Tensor dy = grad_out[0].to(out).contiguous();
    at::Tensor dx = at::empty_like(x);
    const at::TensorOptions f32 = x.options().dtype(at::kFloat);
    at::Tensor dweight = at::empty({p.cols}, f32);
    at::Tensor partials = at::empty({kernels::rmsnorm_partial_count(p.rows, p.cols)}, f32);
    p.inv = inv.mutable_data_ptr<float>();
    p.dy = dy.const_data_ptr();
    p.dx = dx.mutable_data_ptr();
    p.dweight = dweight.mutable_data_ptr<float>();
    p.partials = partials.mutable_data_ptr<float>();
    const c10::cuda::CUDAGuard guard(x.device());
    rms_norm_check_launch(kernels::rmsnorm_backward_cuda(p, c10::cuda::getCurrentCUDAStream().stream()), "backward");
    return {dx, dweight.to(weight.scalar_type()), at::Tensor()};
  }
};

// What the kernels take: fp32 or bf16 x and weight on one CUDA device, rows of 1 to
// kRmsNormMaxCols columns. Anything else runs the reference.
bool rms_norm_cuda_applies(const at::Tensor& x, const at::Tensor& weight) {
  auto fused = [](const at::Tensor& t) { return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16; };
  return x.is_cuda() && weight.device() == x.device() && fused(x) && fused(weight) && x.size(-1) > 0 &&
         x.size(-1) <= kernels::kRmsNormMaxCols;
}

// Before the CUDA RMSNorm serves a (device, x dtype, weight dtype), it runs once, forward and
// backward, on a per-head shape (111 rows of 64: the warp-per-row kernel) and an odd wide one (7
// rows of 1,031: the block-per-row kernel, 3 warps) against the reference in float64 on the same
// values; off by more than the bound (fp32 1e-5 of the largest value, as RoPE/SwiGLU; bf16 1.56e-2)
// or failing to launch, it is not used for the rest of the process: a warning says so and the
// reference runs instead.
bool cuda_rms_norm_trusted(const at::Tensor& x, const at::Tensor& weight) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, int>, bool> verdicts;
  const auto key = std::make_tuple(static_cast<int>(x.device().index()), static_cast<int>(x.scalar_type()),
                                   static_cast<int>(weight.scalar_type()));
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = verdicts.find(key); it != verdicts.end()) return it->second;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(37);
  const at::ScalarType xt = x.scalar_type(), wt = weight.scalar_type(), out = at::promote_types(xt, wt);
  double worst = 0;
  try {
    for (const auto& shape : {std::vector<int64_t>{37, 3, 64}, std::vector<int64_t>{7, 1031}}) {
      // values each dtype holds exactly, so both sides see the same inputs
      const at::Tensor xs = (at::randn(shape, gen, at::kDouble) * 3).to(xt).to(at::kDouble);
      const at::Tensor ws = (at::rand({shape.back()}, gen, at::kDouble) + 0.5).to(wt).to(at::kDouble);
      const at::Tensor gs = at::randn(shape, gen, at::kDouble).to(out).to(at::kDouble);
      auto run = [&](bool kernel) {
        at::AutoGradMode enable(true);
        const at::Device device = kernel ? x.device() : at::Device(at::kCPU);
        at::Tensor xi = (kernel ? xs.to(device, xt) : xs).detach().requires_grad_(true);
        at::Tensor wi = (kernel ? ws.to(device, wt) : ws).detach().requires_grad_(true);
        at::Tensor y = kernel ? RmsNormCuda::apply(xi, wi, 1e-5)
                              : wi * (xi * at::rsqrt(xi.pow(2).mean(-1, true) + 1e-5));  // float64
        y.backward(kernel ? gs.to(device, out) : gs);
        return std::vector<at::Tensor>{y.detach().cpu().to(at::kDouble), xi.grad().cpu().to(at::kDouble),
                                       wi.grad().cpu().to(at::kDouble)};
      };
      const auto want = run(false), got = run(true);
      worst = std::max(worst, worst_relative_error(got, want));
    }
  } catch (const std::exception& e) {
    worst = std::numeric_limits<double>::infinity();
    log_warn("rms_norm: the CUDA kernel failed its check ({})", e.what());
  }
  const double bound = xt == at::kBFloat16 || wt == at::kBFloat16 ? 1.5625e-2 : 1e-5;
  const bool ok = worst <= bound;
  if (!ok)
    log_warn("rms_norm: the CUDA kernel (x {}, weight {}) is off by {:.2e} against the reference (bound {:.2e}) on {}; "
             "using the reference (ATen) instead. Run `exatrain selftest --kernels`.",
             c10::toString(xt), c10::toString(wt), worst, bound, x.device().str());
  verdicts[key] = ok;
  return ok;
}
#endif

}  // namespace

// auto: the fused kernel on the CPU (faster: `exatrain selftest --kernels` times both), the CUDA
// kernel on a GPU (after its check there), the reference otherwise.
Impl resolve_norm_impl(KernelChoice choice, const at::Device& device) {
  if (choice == KernelChoice::Reference) return Impl::Reference;
  if (device.is_cpu()) return Impl::Cpu;
#if defined(EXATRAIN_HAVE_CUDA)
  if (device.is_cuda()) return Impl::Cuda;  // rms_norm itself falls back where the kernel does not apply
#endif
  return Impl::Reference;
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps, Impl impl) {
  EXATRAIN_CHECK(x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(-1),
                 "rms_norm: weight {} does not match the last dimension of x {}", c10::str(weight.sizes()),
                 c10::str(x.sizes()));
  if (impl == Impl::Reference) return rms_norm_reference(x, weight, eps);
  if (impl == Impl::Cpu) {
    EXATRAIN_CHECK(x.device().is_cpu(), "rms_norm: the cpu implementation got tensors on {}", x.device().str());
    return RmsNormCpu::apply(x, weight, eps);
  }
#if defined(EXATRAIN_HAVE_CUDA)
  if (rms_norm_cuda_applies(x, weight) && cuda_rms_norm_trusted(x, weight)) return RmsNormCuda::apply(x, weight, eps);
  return rms_norm_reference(x, weight, eps);
#else
  fail("rms_norm: this build has no CUDA kernels; use train.kernels: reference");
#endif
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionSpec& spec,
                     Impl impl) {
  check_shapes(q, k, v);
  switch (impl) {
    case Impl::Reference: return attention_reference(q, k, v, spec);
    case Impl::Cpu:
      EXATRAIN_CHECK(q.device().is_cpu(), "attention: the cpu implementation got tensors on {}", q.device().str());
      return FlashAttentionCpu::apply(q, k, v, spec.window, spec.scale,
                                      spec.segments.defined() ? spec.segments : at::empty({0}, at::kInt));
    case Impl::Cuda:
#if defined(EXATRAIN_HAVE_CUDA)
      // The tensor-core kernels take bf16 and head_dim 32/64/128; anything else (fp32 runs, other
      // head sizes) runs the reference on the GPU.
      if (q.is_cuda() && q.scalar_type() == at::kBFloat16 && k.scalar_type() == at::kBFloat16 &&
          v.scalar_type() == at::kBFloat16 && kernels::flash_fwd_supports_head_dim(static_cast<int>(q.size(3))) &&
          cuda_attention_trusted(q, spec))
        return FlashAttentionCuda::apply(q, k, v, spec.window, spec.scale,
                                         spec.segments.defined() ? spec.segments : at::empty({0}, at::kInt));
      return attention_reference(q, k, v, spec);
#else
      break;
#endif
  }
  fail("attention: this build has no CUDA kernels; use train.kernels: reference");
}

// ---- RoPE and SwiGLU (kernels/rope_swiglu.h) ----------------------------------------------------

namespace {

// transformers' apply_rotary_pos_emb (half-rotation layout), the judge of the kernels.
at::Tensor rope_reference(const at::Tensor& x, const RopeTables& t) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  at::Tensor cos = t.cos.to(x.scalar_type()), sin = t.sin.to(x.scalar_type());
  return x * cos + rotated * sin;
}

// transformers' Exaone4MLP activation: act_fn(gate_proj(x)) * up_proj(x), act_fn = SiLU.
at::Tensor swiglu_reference(const at::Tensor& gate, const at::Tensor& up) { return at::silu(gate) * up; }

bool fused_dtype(const at::Tensor& t) { return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16; }

// A table as the kernels read it: contiguous [table_batch, seq, head_dim] in x's dtype (the cast
// transformers makes too). Undefined for a shape the kernels do not take (the reference does).
at::Tensor rope_kernel_table(const at::Tensor& t, const at::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(2), D = x.size(3);
  at::Tensor t3;
  if (t.dim() == 2 && t.size(0) == T && t.size(1) == D)
    t3 = t.unsqueeze(0);
  else if (t.dim() == 4 && (t.size(0) == B || t.size(0) == 1) && t.size(1) == 1 && t.size(2) == T && t.size(3) == D)
    t3 = t.squeeze(1);
  else
    return {};
  return t3.to(x.device(), x.scalar_type()).contiguous();
}

// The kernels' one layout requirement: a contiguous last dimension (other strides are read).
at::Tensor last_dim_contiguous(const at::Tensor& x) { return x.size(-1) <= 1 || x.stride(-1) == 1 ? x : x.contiguous(); }

kernels::RopeParams rope_params(const at::Tensor& x, at::Tensor& y, const at::Tensor& cos, const at::Tensor& sin) {
  kernels::RopeParams p{};
  p.x = x.const_data_ptr();
  p.y = y.mutable_data_ptr();
  p.cos = cos.const_data_ptr();
  p.sin = sin.const_data_ptr();
  p.batch = x.size(0);
  p.heads = x.size(1);
  p.seq = x.size(2);
  p.head_dim = x.size(3);
  for (int d = 0; d < 3; ++d) {
    p.x_stride[d] = x.stride(d);
    p.y_stride[d] = y.stride(d);
  }
  p.table_stride_b = cos.size(0) > 1 ? p.seq * p.head_dim : 0;
  p.bf16 = x.scalar_type() == at::kBFloat16;
  return p;
}

#if defined(EXATRAIN_HAVE_CUDA)
void check_fused_launch(int err, const char* what) {
  EXATRAIN_CHECK(err == 0, "{}: the CUDA kernel failed to launch (cudaError {})", what, err);
}
#endif

// Rows of RoPE spread over ATen's threads (about 16K elements per task), or one CUDA launch on the
// current stream.
void run_rope(const kernels::RopeParams& p, bool backward, const at::Device& device) {
  if (device.is_cpu()) {
    const int64_t rows = p.batch * p.heads * p.seq;
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(p.head_dim, 1)),
                     [&](int64_t b, int64_t e) { kernels::rope_rows_cpu(p, backward, b, e); });
    return;
  }
#if defined(EXATRAIN_HAVE_CUDA)
  const c10::cuda::CUDAGuard guard(device);
  check_fused_launch(kernels::rope_cuda(p, backward, c10::cuda::getCurrentCUDAStream().stream()), "rope");
#endif
}

void run_swiglu(const kernels::SwigluParams& p, bool backward, const at::Device& device) {
  if (device.is_cpu()) {
    at::parallel_for(0, p.n, 32768, [&](int64_t b, int64_t e) { kernels::swiglu_cpu(p, backward, b, e); });
    return;
  }
#if defined(EXATRAIN_HAVE_CUDA)
  const c10::cuda::CUDAGuard guard(device);
  check_fused_launch(kernels::swiglu_cuda(p, backward, c10::cuda::getCurrentCUDAStream().stream()), "swiglu");
#endif
}

// The fused RoPE on the CPU or a GPU (x's device). cos and sin in rope_kernel_table's form; the
// node keeps them and nothing else.
struct RopeFused : public torch::autograd::Function<RopeFused> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& cos,
                            const at::Tensor& sin) {
    const at::Tensor x = last_dim_contiguous(x_in);
    at::Tensor y = at::empty(x.sizes(), x.options());  // [batch, heads, seq, head_dim], contiguous
    run_rope(rope_params(x, y, cos, sin), /*backward=*/false, x.device());
    ctx->save_for_backward({cos, sin});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor g = last_dim_contiguous(grad_out[0].to(saved[0].scalar_type()));
    at::Tensor dx = at::empty(g.sizes(), g.options());
    run_rope(rope_params(g, dx, saved[0], saved[1]), /*backward=*/true, g.device());
    return {dx, at::Tensor(), at::Tensor()};
  }
};

// The fused SwiGLU; the node keeps gate and up (the reference also keeps silu(gate)).
struct SwigluFused : public torch::autograd::Function<SwigluFused> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate_in, const at::Tensor& up_in) {
    const at::Tensor gate = gate_in.contiguous(), up = up_in.contiguous();
    at::Tensor out = at::empty(gate.sizes(), gate.options());
    kernels::SwigluParams p{};
    p.gate = gate.const_data_ptr();
    p.up = up.const_data_ptr();
    p.out = out.mutable_data_ptr();
    p.n = gate.numel();
    p.bf16 = gate.scalar_type() == at::kBFloat16;
    run_swiglu(p, /*backward=*/false, gate.device());
    ctx->save_for_backward({gate, up});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &gate = saved[0], &up = saved[1];
    const at::Tensor dy = grad_out[0].to(gate.scalar_type()).contiguous();
    at::Tensor dgate = at::empty(gate.sizes(), gate.options()), dup = at::empty(up.sizes(), up.options());
    kernels::SwigluParams p{};
    p.gate = gate.const_data_ptr();
    p.up = up.const_data_ptr();
    p.dout = dy.const_data_ptr();
    p.dgate = dgate.mutable_data_ptr();
    p.dup = dup.mutable_data_ptr();
    p.n = gate.numel();
    p.bf16 = gate.scalar_type() == at::kBFloat16;
    run_swiglu(p, /*backward=*/true, gate.device());
    return {dgate, dup};
  }
};

#if defined(EXATRAIN_HAVE_CUDA)
// Before the CUDA RoPE or SwiGLU serves a (device, dtype), it runs once on a small case, forward and
// backward, against the reference in float64 on the same values; off by more than the bound (bf16:
// 1.56e-2 of the largest value, as attention; fp32: 1e-5) or failing to launch, it is not used for
// the rest of the process: a warning says so and the reference runs instead.
bool fused_cuda_trusted(bool is_rope, const at::Tensor& x) {
  static std::mutex mutex;
  static std::map<std::tuple<bool, int, int>, bool> verdicts;
  const auto key = std::make_tuple(is_rope, static_cast<int>(x.device().index()), static_cast<int>(x.scalar_type()));
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = verdicts.find(key); it != verdicts.end()) return it->second;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(31);
  const at::ScalarType dtype = x.scalar_type();
  // Values the dtype holds exactly, so both sides see the same inputs.
  auto make = [&](at::IntArrayRef shape, double scale = 1.0) {
    return (at::randn(shape, gen, at::kDouble) * scale).to(dtype).to(at::kDouble);
  };
  std::vector<at::Tensor> inputs, tables;
  at::Tensor g;
  if (is_rope) {
    inputs = {make({2, 3, 37, 24})};
    const at::Tensor angles = at::arange(37 * 24, at::kDouble).view({1, 1, 37, 24}) * 0.37 +
                              at::arange(2, at::kDouble).view({2, 1, 1, 1});  // per-row tables
    tables = {angles.cos().to(at::kFloat), angles.sin().to(at::kFloat)};
    g = make({2, 3, 37, 24});
  } else {
    inputs = {make({5, 333}, 3.0), make({5, 333})};
    g = make({5, 333});
  }
  auto run = [&](const at::Device& device, at::ScalarType type, bool fused) {
    at::AutoGradMode enable(true);
    std::vector<at::Tensor> leaves;
    for (const at::Tensor& t : inputs) leaves.push_back(t.to(device, type).detach().requires_grad_(true));
    at::Tensor out;
    if (is_rope) {
      const RopeTables t{tables[0].to(device), tables[1].to(device)};
      out = fused ? RopeFused::apply(leaves[0], rope_kernel_table(t.cos, leaves[0]),
                                     rope_kernel_table(t.sin, leaves[0]))
                  : rope_reference(leaves[0], t);
    } else {
      out = fused ? SwigluFused::apply(leaves[0], leaves[1]) : swiglu_reference(leaves[0], leaves[1]);
    }
    out.backward(g.to(device, type));
    std::vector<at::Tensor> result{out.detach().cpu()};
    for (const at::Tensor& leaf : leaves) result.push_back(leaf.grad().cpu());
    return result;
  };
  const auto want = run(at::kCPU, at::kDouble, false);
  double worst = 0;
  try {
    const auto got = run(x.device(), dtype, true);
    worst = worst_relative_error(got, want);
  } catch (const std::exception& e) {
    worst = std::numeric_limits<double>::infinity();
    log_warn("{}: the CUDA kernel failed its check ({})", is_rope ? "rope" : "swiglu", e.what());
  }
  const double bound = dtype == at::kBFloat16 ? 1.5625e-2 : 1e-5;
  const bool ok = worst <= bound;
  if (!ok)
    log_warn("{}: the CUDA kernel ({}) is off by {:.2e} against the reference (bound {:.2e}) on {}; using the "
             "reference (ATen) instead. Run `exatrain selftest --kernels`.",
             is_rope ? "rope" : "swiglu", dtype == at::kBFloat16 ? "bf16" : "fp32", worst, bound, x.device().str());
  verdicts[key] = ok;
  return ok;
}
#endif

// auto: our kernel on a GPU; on the CPU where it is the faster of the two. `exatrain bench fused`
// (small preset, 1 x 4,096 tokens, forward + backward, 1 thread, best of 15-30 alternating with the
// reference; this 2-core machine was shared with other builds, so ranges over the 5 runs in
// docs/performance.md):
//   RoPE   (q: 12 heads x 64)  fp32  5.6-10.9 ms against 20-29 ms     2.7-4.2x
//                              bf16  4.1-4.5 ms against 9.4-15.1 ms    2.2-3.4x
//   SwiGLU (2,048 wide)        fp32  47-68 ms against 107-162 ms      2.1-3.2x
//                              bf16  18.8-26.6 ms against 19.1-26.5 ms 0.91-1.21x
// so bf16 SwiGLU stays with ATen on the CPU (our kernel is compute-bound there: bf16 widening and
// rounding around the exp polynomial; it still keeps a third less for backward). Two threads, in
// the one quiet run: RoPE 3.1x (fp32) and 1.5x (bf16), SwiGLU 1.9x and 1.4x (docs/performance.md).
Impl resolve_fused_impl(KernelChoice choice, const at::Device& device) {
  if (choice == KernelChoice::Reference) return Impl::Reference;
  if (device.is_cpu()) return Impl::Cpu;
#if defined(EXATRAIN_HAVE_CUDA)
  if (device.is_cuda()) return Impl::Cuda;
#endif
  return Impl::Reference;
}

}  // namespace

Impl resolve_rope_impl(KernelChoice choice, const at::Device& device) { return resolve_fused_impl(choice, device); }
Impl resolve_swiglu_impl(KernelChoice choice, const at::Device& device, at::ScalarType dtype) {
  if (device.is_cpu() && dtype == at::kBFloat16) return Impl::Reference;  // not faster there (above)
  return resolve_fused_impl(choice, device);
}

at::Tensor rope(const at::Tensor& x, const RopeTables& tables, Impl impl) {
  EXATRAIN_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope: x must be [batch, heads, seq, head_dim] with an even "
                 "head_dim, got {}", c10::str(x.sizes()));
  EXATRAIN_CHECK(tables.cos.defined() && tables.sin.defined(), "rope: the cos/sin tables are missing");
  if (impl == Impl::Reference) return rope_reference(x, tables);
  EXATRAIN_CHECK(impl != Impl::Cpu || x.device().is_cpu(), "rope: the cpu implementation got tensors on {}",
                 x.device().str());
#if !defined(EXATRAIN_HAVE_CUDA)
  if (impl == Impl::Cuda) fail("rope: this build has no CUDA kernels; use train.kernels: reference");
#endif
  // The kernels take fp32 and bf16 and tables that are not trained; anything else is the reference's.
  if (!fused_dtype(x) || tables.cos.requires_grad() || tables.sin.requires_grad()) return rope_reference(x, tables);
  const at::Tensor cos = rope_kernel_table(tables.cos, x), sin = rope_kernel_table(tables.sin, x);
  if (!cos.defined() || !sin.defined()) return rope_reference(x, tables);
#if defined(EXATRAIN_HAVE_CUDA)
  if (impl == Impl::Cuda && !(x.is_cuda() && fused_cuda_trusted(/*is_rope=*/true, x))) return rope_reference(x, tables);
#endif
  return RopeFused::apply(x, cos, sin);
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up, Impl impl) {
  EXATRAIN_CHECK(gate.sizes() == up.sizes(), "swiglu: gate {} and up {} differ in shape", c10::str(gate.sizes()),
                 c10::str(up.sizes()));
  if (impl == Impl::Reference) return swiglu_reference(gate, up);
  EXATRAIN_CHECK(impl != Impl::Cpu || gate.device().is_cpu(), "swiglu: the cpu implementation got tensors on {}",
                 gate.device().str());
#if !defined(EXATRAIN_HAVE_CUDA)
  if (impl == Impl::Cuda) fail("swiglu: this build has no CUDA kernels; use train.kernels: reference");
#endif
  if (!fused_dtype(gate) || gate.scalar_type() != up.scalar_type() || gate.device() != up.device())
    return swiglu_reference(gate, up);
#if defined(EXATRAIN_HAVE_CUDA)
  if (impl == Impl::Cuda && !(gate.is_cuda() && fused_cuda_trusted(/*is_rope=*/false, gate)))
    return swiglu_reference(gate, up);
#endif
  return SwigluFused::apply(gate, up);
}

}  // namespace exatrain::ops

// ---- cross-entropy ------------------------------------------------------------------------------
namespace exatrain::ops {

namespace {

// The kernel's view of the logits: fp32 or bf16 as they are (no fp32 copy of bf16 logits),
// anything else widened; rows contiguous.
at::Tensor xent_logits(const at::Tensor& logits) {
  const auto t = logits.scalar_type();
  return (t == at::kFloat || t == at::kBFloat16 ? logits : logits.to(at::kFloat)).contiguous();
}

kernels::CrossEntropyParams xent_params(const at::Tensor& logits, const at::Tensor& targets, int64_t vocab_start) {
  kernels::CrossEntropyParams p;
  p.logits = logits.const_data_ptr();
  p.bf16 = logits.scalar_type() == at::kBFloat16;
  p.targets = targets.const_data_ptr<int64_t>();
  p.rows = logits.size(0);
  p.cols = logits.size(1);
  p.vocab_start = vocab_start;
  return p;
}

// Rows per parallel_for grain: about 16K logits, so short rows are not one task each.
int64_t xent_grain(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)); }

#if defined(EXATRAIN_HAVE_CUDA)
void xent_check_launch(int err, const char* what) {
  EXATRAIN_CHECK(err == 0, "cross_entropy: the CUDA {} kernel failed to launch (cudaError {})", what, err);
}
#endif

// Forward: the kernel's per-row (max, sum of exp, target logit) over this slice, combined over
// `across` when other ranks hold other slices: the max all-reduced first, each slice's sum
// rescaled to it, then the sums and the target logits (0 on ranks without the target) summed.
// Saved: the logits as they came in (fp32 or bf16), the targets, per row the max and log S.
struct CrossEntropyFused : public torch::autograd::Function<CrossEntropyFused> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& logits_in,
                            const at::Tensor& targets_in, int64_t vocab_start, int64_t impl, int64_t across_address) {
    const at::Tensor logits = xent_logits(logits_in);
    const at::Tensor targets = targets_in.to(logits.device(), at::kLong).contiguous();
    const int64_t rows = logits.size(0);
    const at::TensorOptions f32 = logits.options().dtype(at::kFloat);
    at::Tensor max = at::empty({rows}, f32), sum = at::empty({rows}, f32), target_logit = at::empty({rows}, f32);
    kernels::CrossEntropyParams p = xent_params(logits, targets, vocab_start);
    p.row_max = max.mutable_data_ptr<float>();
    p.row_sum = sum.mutable_data_ptr<float>();
    p.target_logit = target_logit.mutable_data_ptr<float>();
    if (static_cast<Impl>(impl) == Impl::Cuda) {
#if defined(EXATRAIN_HAVE_CUDA)
      const c10::cuda::CUDAGuard guard(logits.device());
      xent_check_launch(kernels::cross_entropy_forward_cuda(p, c10::cuda::getCurrentCUDAStream().stream()), "forward");
#endif
    } else {
      at::parallel_for(0, rows, xent_grain(p.cols),
                       [&](int64_t b, int64_t e) { kernels::cross_entropy_forward_rows(p, b, e); });
    }
    if (across_address != 0) {
      const auto& across = *reinterpret_cast<const RowAllReduce*>(across_address);
      at::Tensor global_max = max.clone();
      across.max(global_max);
      sum.mul_(at::exp(max - global_max));
      across.sum(sum);
      across.sum(target_logit);
      max = global_max;
    }
    const at::Tensor log_sum = sum.log();
    const at::Tensor loss = at::where(targets == kernels::kIgnoreTarget, at::zeros_like(log_sum),
                                      log_sum - (target_logit - max));  // [rows]
    ctx->save_for_backward({logits, targets, max, log_sum});
    ctx->saved_data["vocab_start"] = vocab_start;
    ctx->saved_data["impl"] = impl;
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits_in.scalar_type());
    return loss;
  }

  // One pass per row: dz = (exp((z - max) - log S) - onehot) g, in the logits' dtype.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &logits = saved[0], &targets = saved[1], &max = saved[2], &log_sum = saved[3];
    const at::Tensor grad = grad_out[0].to(logits.device(), at::kFloat).contiguous();
    at::Tensor dlogits = at::empty_like(logits);
    kernels::CrossEntropyParams p = xent_params(logits, targets, ctx->saved_data["vocab_start"].toInt());
    p.max = max.const_data_ptr<float>();
    p.log_sum = log_sum.const_data_ptr<float>();
    p.grad = grad.const_data_ptr<float>();
    p.dlogits = dlogits.mutable_data_ptr();
    if (static_cast<Impl>(ctx->saved_data["impl"].toInt()) == Impl::Cuda) {
#if defined(EXATRAIN_HAVE_CUDA)
      const c10::cuda::CUDAGuard guard(logits.device());
      xent_check_launch(kernels::cross_entropy_backward_cuda(p, c10::cuda::getCurrentCUDAStream().stream()),
                        "backward");
#endif
    } else {
      at::parallel_for(0, p.rows, xent_grain(p.cols),
                       [&](int64_t b, int64_t e) { kernels::cross_entropy_backward_rows(p, b, e); });
    }
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {dlogits.to(dtype), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

#if defined(EXATRAIN_HAVE_CUDA)
// Before the CUDA kernels serve a device they run once on a small case (5 rows of 3,001 logits,
// fp32, logits up to 30, an ignored row, a target in the last column) against the reference in
// float64, loss and gradient; off by more than 1e-6 of the largest value (3x the fp32 bound of
// tests/unit/test_cross_entropy.cpp: nvcc contracts to fused multiply-adds where the emulation
// may not) or failing to launch, they are not used on that device for
// the rest of the process: a warning says so and the reference runs instead.
bool cuda_cross_entropy_trusted(const at::Device& device) {
  static std::mutex mutex;
  static std::map<int, bool> verdicts;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = verdicts.find(device.index()); it != verdicts.end()) return it->second;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(31);
  const at::Tensor z = at::randn({5, 3001}, gen, at::kDouble) * 10;
  const at::Tensor targets = at::tensor(std::vector<int64_t>{7, kernels::kIgnoreTarget, 3000, 0, 1500}, at::kLong);
  const at::Tensor g = at::randn({5}, gen, at::kDouble);
  auto run = [&](const at::Tensor& logits, bool kernel) {
    at::AutoGradMode enable(true);
    at::Tensor x = logits.detach().requires_grad_(true);
    at::Tensor loss = kernel ? CrossEntropyFused::apply(x, targets.to(x.device()), 0, static_cast<int64_t>(Impl::Cuda), 0)
                             : at::cross_entropy_loss(x, targets, {}, at::Reduction::None);
    loss.backward(g.to(x.device(), loss.scalar_type()));
    return std::vector<at::Tensor>{loss.detach().cpu().to(at::kDouble), x.grad().cpu().to(at::kDouble)};
  };
  const auto want = run(z.to(at::kFloat).to(at::kDouble), false);
  double worst = 0;
  try {
    const auto got = run(z.to(device, at::kFloat), true);
    worst = worst_relative_error(got, want);
  } catch (const std::exception& e) {
    worst = std::numeric_limits<double>::infinity();
    log_warn("cross_entropy: the CUDA kernel failed its check ({})", e.what());
  }
  const bool ok = worst <= 1e-6;
  if (!ok)
    log_warn("cross_entropy: the CUDA kernel is off by {:.2e} against the reference (bound 1e-6) on {}; using the "
             "reference (ATen) instead. Run `exatrain selftest --kernels`.",
             worst, device.str());
  verdicts[device.index()] = ok;
  return ok;
}
#endif

// fp32 as the model's loss always computed it; float64 logits stay float64 (the judge of tests).
at::Tensor cross_entropy_reference(const at::Tensor& logits, const at::Tensor& targets) {
  const at::Tensor x = logits.scalar_type() == at::kDouble ? logits : logits.to(at::kFloat);
  return at::cross_entropy_loss(x, targets, {}, at::Reduction::None, kernels::kIgnoreTarget);
}

}  // namespace

// auto on the CPU: the fused kernel, faster and smaller: forward + backward of 2,048 tokens x
// 102,400 logits on 2 threads, 0.64 s against ATen's 1.34 s (fp32 logits; bf16: 0.52 s against
// 2.08 s), peak memory above the logits 1x their size against 3x (`exatrain bench
// cross-entropy`, docs/performance.md).
Impl resolve_cross_entropy_impl(KernelChoice choice, const at::Device& device) {
  if (choice == KernelChoice::Reference) return Impl::Reference;
  if (device.is_cpu()) return Impl::Cpu;
#if defined(EXATRAIN_HAVE_CUDA)
  if (device.is_cuda()) return cuda_cross_entropy_trusted(device) ? Impl::Cuda : Impl::Reference;
#endif
  return Impl::Reference;
}

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& targets, Impl impl, int64_t vocab_start,
                         const RowAllReduce& across) {
  EXATRAIN_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0),
                 "cross_entropy: logits must be [rows, vocab] and targets [rows], got {} and {}",
                 c10::str(logits.sizes()), c10::str(targets.sizes()));
  if (across.empty() && vocab_start == 0) {  // the whole vocabulary here: every target must be in it
    const at::Tensor bad = targets.ne(kernels::kIgnoreTarget).logical_and(targets.lt(0).logical_or(targets.ge(logits.size(1))));
    EXATRAIN_CHECK(!bad.any().item<bool>(), "cross_entropy: a target is outside the vocabulary [0, {}) (and not {})",
                   logits.size(1), kernels::kIgnoreTarget);
  }
  if (impl == Impl::Reference) {
    EXATRAIN_CHECK(across.empty(), "cross_entropy: the reference takes the whole vocabulary on one rank; the "
                                   "vocab-parallel reference is vocab_parallel_cross_entropy (tp_regions.h)");
    return cross_entropy_reference(logits, targets);
  }
  EXATRAIN_CHECK(impl != Impl::Cpu || logits.device().is_cpu(), "cross_entropy: the cpu implementation got tensors on {}",
                 logits.device().str());
  EXATRAIN_CHECK(impl != Impl::Cuda || logits.is_cuda(), "cross_entropy: the cuda implementation got tensors on {}",
                 logits.device().str());
#if !defined(EXATRAIN_HAVE_CUDA)
  EXATRAIN_CHECK(impl != Impl::Cuda, "cross_entropy: this build has no CUDA kernels; use train.kernels: reference");
#endif
  return CrossEntropyFused::apply(logits, targets, vocab_start, static_cast<int64_t>(impl),
                                  across.empty() ? 0 : reinterpret_cast<int64_t>(&across));
}

}  // namespace exatrain::ops

// ---- AdamW (kernels/adamw.h) ----------------------------------------------------------------------
namespace exatrain::ops {

void adamw_step_reference(const kernels::AdamWRun* runs, int64_t run_count, const at::Tensor& param,
                          const at::Tensor& grad, const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq, double lr,
                          double beta1, double beta2, double eps, int64_t t) {
  at::NoGradGuard no_grad;
  // One _fused_adamw_ call per weight decay, its runs as the tensor lists.
  std::map<double, std::vector<int64_t>> by_decay;
  for (int64_t r = 0; r < run_count; ++r)
    if (runs[r].length > 0) by_decay[runs[r].weight_decay].push_back(r);
  const at::Tensor step = at::full({}, static_cast<double>(t), param.options());
  for (const auto& [decay, members] : by_decay) {
    std::vector<at::Tensor> p, g, m, v, steps;
    for (int64_t r : members) {
      p.push_back(param.narrow(0, runs[r].begin, runs[r].length));
      g.push_back(grad.narrow(0, runs[r].begin, runs[r].length));
      m.push_back(exp_avg.narrow(0, runs[r].begin, runs[r].length));
      v.push_back(exp_avg_sq.narrow(0, runs[r].begin, runs[r].length));
      steps.push_back(step.clone());
    }
    at::_fused_adamw_(p, g, m, v, {}, steps, lr, beta1, beta2, decay, eps, /*amsgrad=*/false, /*maximize=*/false);
  }
  for (int64_t r = 0; r < run_count; ++r)
    if (runs[r].out && runs[r].length > 0)
      at::from_blob(runs[r].out, {runs[r].length}, param.options().dtype(at::kBFloat16))
          .copy_(param.narrow(0, runs[r].begin, runs[r].length));
}

AdamWCheck adamw_kernel_check(const at::Device& device, const AdamWKernel& kernel) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(41);
  const int64_t n = 3041;
  std::vector<kernels::AdamWRun> runs = {{0, 1000, 0.1}, {1000, 37, 0.0}, {1037, 1301, 0.1}, {2338, 3, 0.0},
                                         {2341, 700, 0.1}};
  const double lr = 1e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8;
  const at::Tensor p0 = at::randn({n}, gen, at::kFloat);
  std::vector<at::Tensor> grads;
  for (int t = 0; t < 3; ++t) grads.push_back(at::randn({n}, gen, at::kFloat) * ((t + 1) * 1e-2));
  // the judge, on the CPU
  at::Tensor want_p = p0.clone(), want_m = at::zeros_like(p0), want_v = at::zeros_like(p0);
  for (int t = 0; t < 3; ++t)
    adamw_step_reference(runs.data(), static_cast<int64_t>(runs.size()), want_p, grads[t], want_m, want_v, lr, b1, b2,
                         eps, t + 1);
  // the kernel, on `device`
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  at::Tensor p = p0.to(device), m = at::zeros({n}, f32), v = at::zeros({n}, f32);
  // NaN where the kernel must write: a kernel that leaves the copy unwritten cannot pass on
  // memory that happens to hold the right values (a freed block of an earlier check did, once).
  at::Tensor copy = at::full({n}, std::numeric_limits<float>::quiet_NaN(), f32.dtype(at::kBFloat16));
  auto* bits = reinterpret_cast<uint16_t*>(copy.mutable_data_ptr<at::BFloat16>());
  for (auto& run : runs) run.out = bits + run.begin;
  for (int t = 0; t < 3; ++t) {
    const at::Tensor g = grads[t].to(device);
    kernel(runs.data(), static_cast<int64_t>(runs.size()), p.mutable_data_ptr<float>(), g.const_data_ptr<float>(),
           m.mutable_data_ptr<float>(), v.mutable_data_ptr<float>(), kernels::AdamWStep::of(lr, b1, b2, eps, t + 1));
  }
  auto rel = [](const at::Tensor& got, const at::Tensor& want) {
    return ((got.cpu() - want).abs().max() / want.abs().max()).item<double>();
  };
  AdamWCheck c;
  c.weights = rel(p, want_p);
  c.moments = std::max(rel(m, want_m), rel(v, want_v));
  c.copy_exact = at::equal(copy.cpu(), p.cpu().to(at::kBFloat16));
  return c;
}

#if defined(EXATRAIN_HAVE_CUDA)
bool adamw_cuda_trusted(const at::Device& device) {
  static std::mutex mutex;
  static std::map<int, bool> verdicts;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = verdicts.find(device.index()); it != verdicts.end()) return it->second;
  bool ok = false;
  std::string what;
  try {
    const c10::cuda::CUDAGuard guard(device);
    const AdamWCheck c = adamw_kernel_check(device, [&](const kernels::AdamWRun* runs, int64_t count, float* p,
                                                        const float* g, float* m, float* v, const kernels::AdamWStep& s) {
      const int err =
          kernels::adamw_step_cuda(runs, count, p, g, m, v, s, c10::cuda::getCurrentCUDAStream(device.index()).stream());
      EXATRAIN_CHECK(err == 0, "the kernel failed to launch (cudaError {})", err);
    });
    ok = c.passed();
    what = fmt::format("weights off by {:.2e} (bound {:.0e}), moments by {:.2e} (bound {:.0e}), bf16 copy {}", c.weights,
                       AdamWCheck::kWeightBound, c.moments, AdamWCheck::kMomentBound,
                       c.copy_exact ? "exact" : "NOT the weights rounded");
  } catch (const std::exception& e) {
    what = e.what();
  }
  if (!ok)
    log_warn("AdamW: the CUDA kernel (kernels/adamw.cu) failed its check against ATen's _fused_adamw_ on {}: {}; the "
             "optimizer uses _fused_adamw_ there instead. Run `exatrain selftest --kernels`.",
             device.str(), what);
  verdicts[device.index()] = ok;
  return ok;
}
#else
bool adamw_cuda_trusted(const at::Device&) { return false; }
#endif

}  // namespace exatrain::ops
