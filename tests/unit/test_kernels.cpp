// The RMSNorm kernel's logic on the CPU (the same __host__ __device__ row functions the CUDA
// kernel runs), against a plain double-precision formula; and the kernel itself when a GPU exists.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/rmsnorm.h"

#if defined(EXATRAIN_HAVE_CUDA)
#include <cuda_runtime.h>
#endif

namespace exatrain::kernels {
namespace {

std::vector<float> reference(const std::vector<float>& x, const std::vector<float>& w, int64_t rows, int64_t cols,
                             float eps) {
  std::vector<float> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t c = 0; c < cols; ++c) ss += double(x[r * cols + c]) * x[r * cols + c];
    const double inv = 1.0 / std::sqrt(ss / double(cols) + eps);
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = float(w[c] * (x[r * cols + c] * inv));
  }
  return y;
}

TEST(RmsNormKernel, CpuEmulationMatchesFormula) {
  for (int64_t cols : {1, 7, 256, 1000, 5120}) {
    const int64_t rows = 5;
    std::mt19937 rng(42);
    std::normal_distribution<float> nd;
    std::vector<float> x(rows * cols), w(cols), y(rows * cols);
    for (auto& v : x) v = nd(rng);
    for (auto& v : w) v = 1.f + 0.1f * nd(rng);
    rmsnorm_forward_cpu(x.data(), w.data(), y.data(), rows, cols, 1e-5f);
    const auto ref = reference(x, w, rows, cols, 1e-5f);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref[i], 2e-6f * (1 + std::fabs(ref[i]))) << cols << " " << i;
  }
}

TEST(RmsNormKernel, HandComputedRow) {
  // x = [3, 4]: mean square 12.5, 1/sqrt(12.5) = 0.28284271; w = [1, 2].
  const float x[2] = {3, 4}, w[2] = {1, 2};
  float y[2];
  rmsnorm_forward_cpu(x, w, y, 1, 2, 0.f);
  EXPECT_NEAR(y[0], 0.84852814f, 1e-6f);
  EXPECT_NEAR(y[1], 2.2627417f, 1e-6f);
}

TEST(RmsNormKernel, GpuMatchesCpu) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device on this machine";
#if defined(EXATRAIN_HAVE_CUDA)
  const int64_t rows = 64, cols = 4096;
  std::vector<float> x(rows * cols), w(cols), y(rows * cols), expected(rows * cols);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  for (auto& v : w) v = nd(rng);
  rmsnorm_forward_cpu(x.data(), w.data(), expected.data(), rows, cols, 1e-5f);
  float *dx, *dw, *dy;
  ASSERT_EQ(cudaMalloc(&dx, x.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dw, w.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dy, y.size() * 4), cudaSuccess);
  cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
  ASSERT_EQ(rmsnorm_forward_cuda(dx, dw, dy, rows, cols, 1e-5f, nullptr), 0);
  cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost);
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], expected[i], 1e-5f * (1 + std::fabs(expected[i])));
#endif
}

}  // namespace
}  // namespace exatrain::kernels
