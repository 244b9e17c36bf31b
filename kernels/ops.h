// The operator layer: the model calls operators, an operator runs one of its implementations.
//   reference  ATen, the judge every other implementation is tested against
//   cpu        our CPU kernels (kernels/*_cpu*)
//   cuda       our CUDA kernels (attention: tensor cores, bf16, head_dim 32/64/128; other
//              dtypes and sizes run the reference on the GPU)
// `train.kernels: auto | reference` picks, per device, through resolve_impl().
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "trainer/core/config.h"

namespace exatrain::ops {

enum class Impl { Reference, Cpu, Cuda };
const char* impl_name(Impl impl);

// The implementation `choice` runs for attention on `device`; `sliding`: attention needs more than
// a causal mask (a window shorter than the sequence, or document segments; auto picks per kind:
// see ops.cpp).
Impl resolve_impl(KernelChoice choice, const at::Device& device, bool sliding = true);

struct AttentionSpec {
  int64_t window = 0;  // > 0: key k visible from query q iff q - window < k <= q; 0: causal
  double scale = 1.0;  // softmax(scale * q . k)
  // The reference only: visibility_mask(seq, window) built once by the caller and shared by the
  // layers of a forward (otherwise each call builds, and its backward keeps, its own).
  at::Tensor mask;
  // Document masks: [batch, seq] int32, the document of each token, non-decreasing along a row;
  // key k is visible from query q only within q's document. Undefined: one document per row.
  at::Tensor segments;
};

// Boolean [seq, seq], true where query q may see key k: k <= q and, with window > 0, k > q - window;
// with `segments` [batch, seq] also the same document: [batch, 1, seq, seq]. Only the reference
// builds it.
at::Tensor visibility_mask(int64_t seq, int64_t window, const at::Device& device, const at::Tensor& segments = {});

// Causal (optionally sliding-window, optionally per-document) grouped-query attention with autograd:
// q [batch, heads, seq, head_dim], k and v [batch, kv_heads, seq, head_dim] -> like q.
// Query head h reads KV head h / (heads / kv_heads). fp32 or bf16 inputs; the cpu
// implementation accumulates in fp32 and returns q's dtype.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionSpec& spec,
                     Impl impl);

// RMSNorm over the last dimension, as transformers' Exaone4RMSNorm:
//   weight * (x.float() * rsqrt(mean(x.float()^2) + eps)).to(x.dtype)
// (the result in the promoted dtype of weight and x), with autograd. The model's norms (the
// per-head q/k norms included) call it. reference: those ATen ops; cpu: the fused kernel
// (kernels/rmsnorm_cpu.cpp), which keeps only x and one fp32 1/rms per row for backward.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps, Impl impl);
// The implementation rms_norm runs on `device`: the fused kernel on the CPU under auto (faster:
// `exatrain selftest --kernels` times both), the reference elsewhere (no CUDA RMSNorm yet).
Impl resolve_norm_impl(KernelChoice choice, const at::Device& device);

}  // namespace exatrain::ops
