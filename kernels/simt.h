// The few SIMT primitives our CUDA kernels use, in one thin header with two meanings:
//   under nvcc:          CUDA built-ins (threadIdx, __syncthreads, __shfl_xor_sync, atomicAdd,
//                        mma.sync);
//   under a host compiler: a CPU emulation in which each thread of a block is a real thread
//                        (std::thread), __syncthreads is a barrier over the block, shared memory
//                        is one buffer per block, and the warp-collective operations (shuffles,
//                        mma) exchange values through a per-warp buffer between two barriers.
// So the kernel body itself (not a CPU rewrite of it) runs in CI, on every thread it would run
// on a GPU, and ThreadSanitizer sees its shared-memory accesses between real threads.
//
// The mma fragment layouts are PTX's (ISA section "Matrix Fragments for mma.m16n8k16 with
// floating point type"), for mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32:
//   groupID = lane >> 2, tig = lane % 4
//   A (16 x 16, 4 x b32 = 8 bf16, low half first): a_i row = groupID (+8 for i in {2,3,6,7}),
//       col = tig * 2 + (i & 1) (+8 for i >= 4)
//   B (16 x 8,  2 x b32 = 4 bf16): b_i row (k) = tig * 2 + (i & 1) (+8 for i >= 2), col = groupID
//   C, D (16 x 8, 4 x f32): c_i row = groupID (+8 for i >= 2), col = tig * 2 + (i & 1)
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SIMT_HD __host__ __device__ __forceinline__
#define SIMT_DEVICE __device__ __forceinline__
#define SIMT_KERNEL __global__
#else
#define SIMT_HD inline
#define SIMT_DEVICE inline
#define SIMT_KERNEL
#endif

namespace exatrain::simt {

inline constexpr int kWarpSize = 32;

// float -> bf16 bits, round to nearest even (NaN stays NaN); the same bits on host and device.
SIMT_HD uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
SIMT_HD float bf16_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
// Two bf16 in one 32-bit register, `lo` in the low half (the element with the lower index).
SIMT_HD uint32_t pack_bf16x2(uint16_t lo, uint16_t hi) { return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16); }
SIMT_HD uint32_t pack_bf16x2(float lo, float hi) { return pack_bf16x2(bf16_bits(lo), bf16_bits(hi)); }

}  // namespace exatrain::simt

#if defined(__CUDACC__)

namespace exatrain::simt {

SIMT_DEVICE int thread_x() { return static_cast<int>(threadIdx.x); }
SIMT_DEVICE int block_x() { return static_cast<int>(blockIdx.x); }
SIMT_DEVICE int block_y() { return static_cast<int>(blockIdx.y); }
SIMT_DEVICE int block_dim_x() { return static_cast<int>(blockDim.x); }
SIMT_DEVICE int lane() { return static_cast<int>(threadIdx.x) & (kWarpSize - 1); }
SIMT_DEVICE void sync_block() { __syncthreads(); }
SIMT_DEVICE float shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
template <class T>
SIMT_DEVICE T* dynamic_shared() {
  extern __shared__ __align__(16) unsigned char simt_shared[];
  return reinterpret_cast<T*>(simt_shared);
}
SIMT_DEVICE float exp2_approx(float x) { return exp2f(x); }
SIMT_DEVICE float log_approx(float x) { return logf(x); }
SIMT_DEVICE void atomic_add(float* address, float value) { atomicAdd(address, value); }

// d = a b + c on the tensor cores (sm_80 and later).
SIMT_DEVICE void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}

}  // namespace exatrain::simt

#else  // the CPU emulation

#include <atomic>
#include <cmath>
#include <functional>

namespace exatrain::simt {

// The running thread's place in the emulated grid, set by launch() before the body runs.
struct ThreadState {
  int thread = 0, block_x = 0, block_y = 0, block_dim = 0;
  unsigned char* shared = nullptr;
  struct BlockSync* sync = nullptr;
};
ThreadState& this_thread();

void block_barrier();                 // every thread of the block
void warp_barrier();                  // every thread of this thread's warp
float* warp_exchange_floats();        // 32 x 4 floats per warp
uint32_t* warp_exchange_words();      // 32 x 6 words per warp

inline int thread_x() { return this_thread().thread; }
inline int block_x() { return this_thread().block_x; }
inline int block_y() { return this_thread().block_y; }
inline int block_dim_x() { return this_thread().block_dim; }
inline int lane() { return this_thread().thread & (kWarpSize - 1); }
inline void sync_block() { block_barrier(); }
template <class T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(this_thread().shared);
}
inline float exp2_approx(float x) { return std::exp2(x); }
inline float log_approx(float x) { return std::log(x); }
inline void atomic_add(float* address, float value) { std::atomic_ref<float>(*address).fetch_add(value); }

// Warp-collective: every lane of the warp must call it (as __shfl_xor_sync with a full mask).
inline float shfl_xor(float v, int mask) {
  float* slot = warp_exchange_floats();
  const int l = lane();
  slot[l * 4] = v;
  warp_barrier();
  const float r = slot[(l ^ mask) * 4];
  warp_barrier();  // nobody writes the next exchange before everyone has read this one
  return r;
}

// Warp-collective m16n8k16 bf16 x bf16 + f32 with PTX's fragment layouts (see the top).
inline void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  uint32_t* words = warp_exchange_words();
  const int l = lane();
  for (int i = 0; i < 4; ++i) words[l * 6 + i] = a[i];
  words[l * 6 + 4] = b[0];
  words[l * 6 + 5] = b[1];
  warp_barrier();
  // Element (row, k) of A: lane (row % 8) * 4 + (k % 8) / 2, register (row >= 8) + 2 (k >= 8),
  // half k % 2. Element (k, col) of B: lane col * 4 + (k % 8) / 2, register k >= 8, half k % 2.
  auto a_at = [&](int row, int k) {
    const uint32_t w = words[((row % 8) * 4 + (k % 8) / 2) * 6 + (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)];
    return bf16_to_float(static_cast<uint16_t>(k % 2 ? w >> 16 : w & 0xffffu));
  };
  auto b_at = [&](int k, int col) {
    const uint32_t w = words[(col * 4 + (k % 8) / 2) * 6 + 4 + (k >= 8 ? 1 : 0)];
    return bf16_to_float(static_cast<uint16_t>(k % 2 ? w >> 16 : w & 0xffffu));
  };
  const int group = l >> 2, tig = l & 3;
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = group + (i >= 2 ? 8 : 0), col = tig * 2 + (i & 1);
    float acc = c[i];
    for (int k = 0; k < 16; ++k) acc += a_at(row, k) * b_at(k, col);
    out[i] = acc;
  }
  warp_barrier();
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

struct Dim2 {
  int x = 1, y = 1;
};
// Runs `body` as a grid of blocks, one block after another, each block's `block_threads`
// threads as real threads sharing `shared_bytes` of zero-initialised shared memory.
void launch(Dim2 grid, int block_threads, size_t shared_bytes, const std::function<void()>& body);

}  // namespace exatrain::simt

#endif
