// AdamW over flat fp32 buffers (the optimizer's owned slice of master weights, gradients and both
// moments), with a C-style interface: raw pointers, sizes, a stream. Multi-tensor in the sense
// Megatron-LM and apex mean it: one call updates every parameter of the slice, a list of `runs`
// (ranges of the buffer sharing a weight decay) instead of one launch per tensor. It also writes
// the bf16 weights in the same pass, when asked (AdamWRun::out): the parameters a run with
// `train.weights: bf16` computes with, or the bf16 copy of the owned slice ZeRO-1 all-gathers.
//
// The element update is one __host__ __device__ function (adamw_update) shared by the CPU kernel
// (kernels/adamw_cpu.cpp), the CUDA kernel (kernels/adamw.cuh, built by nvcc in kernels/adamw.cu)
// and that same CUDA kernel body run under the CPU emulation of kernels/simt.h
// (kernels/adamw_emulated.cpp), so the GPU's arithmetic is tested in CI. Its order of
// operations is ATen's `_fused_adamw_` (aten/src/ATen/native/cpu/FusedAdamKernel.cpp), the
// reference the tests judge it against.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/simt.h"

namespace exatrain::kernels {

// A range [begin, begin + length) of the flat buffers updated with one weight decay; `out` (may
// be null): where the bf16 bits of its updated weights go, out[0] for element `begin` (a bf16
// parameter tensor, or a bf16 copy of the buffer).
struct AdamWRun {
  int64_t begin = 0, length = 0;
  double weight_decay = 0;
  uint16_t* out = nullptr;
};

// The step's scalars, computed once in double on the host as ATen does (then used in fp32).
struct AdamWStep {
  double lr = 0;  // (the decay factor 1 - lr * weight_decay is formed in double, as ATen)
  float beta1 = 0, beta2 = 0, eps = 0;
  float one_minus_beta1 = 0, one_minus_beta2 = 0;
  float step_size = 0;              // lr / (1 - beta1^t)
  float bias_correction2_sqrt = 0;  // sqrt(1 - beta2^t)
  // t: the step being taken, counting from 1.
  static AdamWStep of(double lr, double beta1, double beta2, double eps, int64_t t) {
    AdamWStep s;
    s.lr = lr;
    s.beta1 = static_cast<float>(beta1);
    s.beta2 = static_cast<float>(beta2);
    s.eps = static_cast<float>(eps);
    s.one_minus_beta1 = static_cast<float>(1 - beta1);
    s.one_minus_beta2 = static_cast<float>(1 - beta2);
    s.step_size = static_cast<float>(lr / (1 - std::pow(beta1, static_cast<double>(t))));
    s.bias_correction2_sqrt = static_cast<float>(std::sqrt(1 - std::pow(beta2, static_cast<double>(t))));
    return s;
  }
};

// The weight-decay factor of a run: 1 - lr * weight_decay (1 without decay).
SIMT_HD float adamw_decay_factor(const AdamWStep& s, const AdamWRun& run) {
  return static_cast<float>(1.0 - s.lr * run.weight_decay);
}

// One element: decoupled weight decay, both moments, the update; the operations and their order
// are ATen's (lerp as a multiply-add from the nearer end, (1 - beta2) g g).
SIMT_HD float adamw_update(float p, float g, float& m, float& v, float decay, const AdamWStep& s) {
  p = p * decay;
  m = m + s.one_minus_beta1 * (g - m);  // lerp(m, g, 1 - beta1) for 1 - beta1 < 0.5
  v = v * s.beta2 + s.one_minus_beta2 * g * g;
  const float denom = sqrtf(v) / s.bias_correction2_sqrt + s.eps;
  return p - s.step_size * m / denom;
}

// CPU: elements [begin, end) of the runs' union, in buffer coordinates (callers split the
// buffer over threads; a range may cross runs).
void adamw_step_cpu(const AdamWRun* runs, int64_t run_count, float* param, const float* grad, float* exp_avg,
                    float* exp_avg_sq, const AdamWStep& step, int64_t begin, int64_t end);

// The CUDA kernel body under the CPU emulation (every run, every element). Small buffers only:
// each emulated block is 256 real threads.
void adamw_step_emulated(const AdamWRun* runs, int64_t run_count, float* param, const float* grad, float* exp_avg,
                         float* exp_avg_sq, const AdamWStep& step);

// CUDA: `runs` in host memory (copied into the launch's parameters, at most kAdamWMaxRuns per
// launch; more are launched in groups). Returns a cudaError_t as int (0 = success); `stream` is
// a cudaStream_t. Defined only when built with CUDA (EXATRAIN_HAVE_CUDA).
int adamw_step_cuda(const AdamWRun* runs, int64_t run_count, float* param, const float* grad, float* exp_avg,
                    float* exp_avg_sq, const AdamWStep& step, void* stream);

}  // namespace exatrain::kernels
