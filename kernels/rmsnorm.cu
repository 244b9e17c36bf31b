// The RMSNorm kernels (kernels/rmsnorm_kernel.cuh) launched on a CUDA stream.
#include <cuda_runtime.h>

#include "kernels/rmsnorm_kernel.cuh"

namespace exatrain::kernels {

int rmsnorm_forward_cuda(const RmsNormParams& p, void* stream) {
  if (p.rows == 0 || p.cols == 0) return 0;
  if (p.cols > kRmsNormMaxCols) return static_cast<int>(cudaErrorInvalidValue);
  const RmsNormLaunch l = rmsnorm_launch(p.rows, p.cols, /*backward=*/false);
  const auto s = static_cast<cudaStream_t>(stream);
  rmsnorm_dispatch(p, l, [&](auto types) {
    using K = decltype(types);
    rmsnorm_fwd_kernel<typename K::Tx, typename K::Ty, K::kPer>
        <<<static_cast<unsigned>(l.blocks), l.threads, l.shared_bytes, s>>>(p, l);
  });
  return static_cast<int>(cudaGetLastError());
}

int rmsnorm_backward_cuda(const RmsNormParams& p, void* stream) {
  if (p.cols == 0) return 0;
  if (p.cols > kRmsNormMaxCols) return static_cast<int>(cudaErrorInvalidValue);
  const RmsNormLaunch l = rmsnorm_launch(p.rows, p.cols, /*backward=*/true);
  const auto s = static_cast<cudaStream_t>(stream);
  rmsnorm_dispatch(p, l, [&](auto types) {
    using K = decltype(types);
    rmsnorm_bwd_kernel<typename K::Tx, typename K::Ty, K::kPer>
        <<<static_cast<unsigned>(l.blocks), l.threads, l.shared_bytes, s>>>(p, l);
  });
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return static_cast<int>(err);
  rmsnorm_dweight_kernel<<<static_cast<unsigned>(rmsnorm_reduce_blocks(p.cols)), kRmsNormReduceThreads, 0, s>>>(
      p, l.groups);
  return static_cast<int>(cudaGetLastError());
}

bool cuda_device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

}  // namespace exatrain::kernels
