// The operator layer: the model calls operators, an operator runs one of its implementations.
//   reference  ATen, the judge every other implementation is tested against
//   cpu        our CPU kernels (kernels/*_cpu*)
//   cuda       our CUDA kernels (attention: tensor cores, bf16, head_dim 32/64/128; other
//              dtypes and sizes run the reference on the GPU)
// `train.kernels: auto | reference` picks, per device, through resolve_impl().
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>

#include "kernels/adamw.h"
#include "trainer/core/config.h"

namespace exatrain::ops {

enum class Impl { Reference, Cpu, Cuda };
const char* impl_name(Impl impl);

// The implementation `choice` runs for attention on `device`: under auto our kernel on the CPU
// and on CUDA, every kind of layer (ops.cpp says why).
Impl resolve_impl(KernelChoice choice, const at::Device& device);

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
// (kernels/rmsnorm_cpu.cpp), which keeps only x and one fp32 1/rms per row for backward; cuda:
// the CUDA kernels (kernels/rmsnorm_kernel.cuh; fp32 or bf16 x and weight on a GPU, rows of up to
// kernels::kRmsNormMaxCols), which keep the same, after a once-per-(device, dtypes) check against
// the reference there (failing it: a warning, and the reference); anything else the reference.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps, Impl impl);
// The implementation rms_norm runs on `device` under auto: the fused kernel on the CPU (faster:
// `exatrain selftest --kernels` times both), the CUDA kernel on a GPU, else the reference.
Impl resolve_norm_impl(KernelChoice choice, const at::Device& device);

// ---- RoPE and SwiGLU ---------------------------------------------------------------------------
// Implementations: reference (ATen, transformers' expressions), cpu (the fused kernel,
// kernels/rope_swiglu_cpu.cpp), cuda (kernels/rope_swiglu.cu; fp32 and bf16 CUDA tensors, after
// a self-check). Both keep the input dtype and compute in fp32; with bf16 inputs the kernels round
// where the reference's bf16 tensors round. Other dtypes (float64) run the reference.

// cos and sin for RoPE (trainer/model/rope.h builds them): fp32 [seq, head_dim], or
// [batch, 1, seq, head_dim] with per-token positions (document masks). Never trained.
struct RopeTables {
  at::Tensor cos;
  at::Tensor sin;
};

// RoPE in the half-rotation layout with autograd, as transformers' apply_rotary_pos_emb:
//   x * cos + cat(-x2, x1) * sin,  cos and sin cast to x's dtype first
// x: [batch, heads, seq, head_dim] (any strides) -> the same shape, contiguous for the kernels.
// The cpu/cuda autograd nodes keep only the tables (the backward is the transposed rotation of
// the output's gradient); one pass over x where the reference's five ATen ops make four x-sized
// intermediates.
at::Tensor rope(const at::Tensor& x, const RopeTables& tables, Impl impl);
// The implementation rope runs on `device`: the fused kernel on the CPU under auto (faster, fp32
// and bf16; ops.cpp has the measurement), the CUDA kernel on a GPU, the reference otherwise.
Impl resolve_rope_impl(KernelChoice choice, const at::Device& device);

// SwiGLU, silu(gate) * up, with autograd; gate and up of one shape and dtype. The cpu/cuda
// autograd nodes keep gate and up only (silu is recomputed in the backward), where the reference
// keeps gate, up and silu(gate).
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up, Impl impl);
// The implementation swiglu runs on `device` for `dtype` inputs: the fused kernel on the CPU under
// auto for fp32 (faster), the reference for bf16 there (not faster; ops.cpp), the CUDA kernel on
// a GPU, the reference otherwise.
Impl resolve_swiglu_impl(KernelChoice choice, const at::Device& device, at::ScalarType dtype);

}  // namespace exatrain::ops

// ---- cross-entropy ------------------------------------------------------------------------------
namespace exatrain::ops {

// How per-row partials over slices of the vocabulary combine across the ranks that hold the
// slices (tensor parallelism): in-place all-reduces of [rows] fp32 tensors, by max and by sum.
// Empty: the logits hold the whole vocabulary.
struct RowAllReduce {
  std::function<void(at::Tensor&)> max, sum;
  bool empty() const { return !max; }
};

// Softmax cross-entropy of each row, with autograd: logits [rows, cols] (fp32 or bf16; other
// dtypes are widened to fp32) are columns [vocab_start, vocab_start + cols) of the vocabulary,
// targets [rows] ids in the whole vocabulary, kernels::kIgnoreTarget (-100, torch's
// ignore_index) for tokens that count for nothing. Returns [rows] fp32: log-sum-exp minus the
// target's logit, 0 for ignored rows (the caller weights and sums; the gradient reaching a row
// is its dloss times its weight). Per-row results fp32; the fused kernels compute exponentials
// and sums in double (kernels/cross_entropy_row.h says why).
//   cpu, cuda: the fused kernels (kernels/cross_entropy.h): one pass over a row for its max, sum
//              of exp and target logit, combined over `across` (three all-reduces of [rows]: max,
//              sum of exp, target logit), one pass for the gradient. Saves the logits as they
//              are and two fp32 numbers per row: no [rows, cols] float tensor of its own.
//   reference: at::cross_entropy_loss on the fp32 logits (one rank only; the vocab-parallel
//              reference is trainer/parallel/tp_regions.cpp's Megatron-style function).
at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& targets, Impl impl, int64_t vocab_start = 0,
                         const RowAllReduce& across = {});
// The implementation cross_entropy runs on `device` under `choice`: the fused kernel on the CPU
// under auto (2.1x ATen's speed at 2,048 x 102,400 fp32, a third of its peak memory: see
// ops.cpp), the CUDA kernel on a GPU (after it passed its check against the reference there),
// else the reference.
Impl resolve_cross_entropy_impl(KernelChoice choice, const at::Device& device);

}  // namespace exatrain::ops

// ---- AdamW (kernels/adamw.h) ----------------------------------------------------------------------
namespace exatrain::ops {

// An AdamW kernel as the optimizer calls it: runs over flat fp32 buffers (on the kernel's device).
using AdamWKernel = std::function<void(const kernels::AdamWRun* runs, int64_t run_count, float* param,
                                       const float* grad, float* exp_avg, float* exp_avg_sq,
                                       const kernels::AdamWStep& step)>;

// The check an AdamW kernel passes before the optimizer trusts it on a device: 3 steps on an
// odd-length buffer (3,041 elements in 5 runs of 3 to 1,301, weight decay 0.1 on three of them),
// every run writing its bf16 weights, against ATen's _fused_adamw_ on the CPU (the unit tests'
// judge) on the same values. Errors are relative to the largest value; the bounds are the unit
// tests' (tests/unit/test_optimizer.cpp: weights 4e-7, moments 2e-7); the bf16 copy must be the
// kernel's own weights rounded to nearest even, bit for bit.
struct AdamWCheck {
  double weights = 0, moments = 0;
  bool copy_exact = false;
  static constexpr double kWeightBound = 4e-7, kMomentBound = 2e-7;
  bool passed() const { return weights <= kWeightBound && moments <= kMomentBound && copy_exact; }
};
AdamWCheck adamw_kernel_check(const at::Device& device, const AdamWKernel& kernel);

// Whether the optimizer may run the CUDA AdamW kernel on `device`: adamw_kernel_check once per
// device and process (a launch failure counts as failing); on failure a warning names the kernel
// and the errors, and the optimizer uses adamw_step_reference there. False in builds without CUDA.
bool adamw_cuda_trusted(const at::Device& device);

// The fallback: ATen's _fused_adamw_ per weight decay over the runs' views of the flat buffers
// (tensors on any device), step `t` (counting from 1), then each run's bf16 weights written to
// run.out (memory on the buffers' device), rounded to nearest even as the kernel writes them.
void adamw_step_reference(const kernels::AdamWRun* runs, int64_t run_count, const at::Tensor& param,
                          const at::Tensor& grad, const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq, double lr,
                          double beta1, double beta2, double eps, int64_t t);

}  // namespace exatrain::ops
