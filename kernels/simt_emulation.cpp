// The CPU emulation behind kernels/simt.h: a block's threads are real threads; barriers are
// std::barrier (the block's, and one per warp); shared memory is one zeroed buffer per block.
#include <barrier>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/simt.h"

namespace exatrain::simt {

struct BlockSync {
  explicit BlockSync(int threads)
      : block(threads), warps_count((threads + kWarpSize - 1) / kWarpSize),
        floats(static_cast<size_t>(warps_count) * kWarpSize * 4), words(static_cast<size_t>(warps_count) * kWarpSize * 6) {
    for (int w = 0; w < warps_count; ++w)
      warps.push_back(std::make_unique<std::barrier<>>(std::min(kWarpSize, threads - w * kWarpSize)));
  }
  std::barrier<> block;
  int warps_count;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<float> floats;
  std::vector<uint32_t> words;
};

ThreadState& this_thread() {
  thread_local ThreadState state;
  return state;
}

void block_barrier() { this_thread().sync->block.arrive_and_wait(); }

void warp_barrier() { this_thread().sync->warps[static_cast<size_t>(this_thread().thread / kWarpSize)]->arrive_and_wait(); }

float* warp_exchange_floats() {
  return this_thread().sync->floats.data() + static_cast<size_t>(this_thread().thread / kWarpSize) * kWarpSize * 4;
}

uint32_t* warp_exchange_words() {
  return this_thread().sync->words.data() + static_cast<size_t>(this_thread().thread / kWarpSize) * kWarpSize * 6;
}

void launch(Dim2 grid, int block_threads, size_t shared_bytes, const std::function<void()>& body) {
  if (block_threads < 1 || block_threads > 1024) throw std::invalid_argument("simt::launch: 1 to 1024 threads per block");
  std::vector<unsigned char> shared(shared_bytes);
  for (int by = 0; by < grid.y; ++by)
    for (int bx = 0; bx < grid.x; ++bx) {
      std::fill(shared.begin(), shared.end(), 0);
      BlockSync sync(block_threads);
      std::vector<std::thread> threads;
      threads.reserve(static_cast<size_t>(block_threads));
      for (int t = 0; t < block_threads; ++t)
        threads.emplace_back([&, t] {
          ThreadState& s = this_thread();
          s = ThreadState{t, bx, by, block_threads, shared.data(), &sync};
          body();
        });
      for (auto& th : threads) th.join();
    }
}

}  // namespace exatrain::simt
