#include "trainer/train/memory_tracker.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace exatrain {

namespace {

std::atomic<int64_t> g_allocated{0};
std::atomic<int64_t> g_peak{0};
std::atomic<bool> g_installed{false};

// The size of every live allocation, so the deleter can uncount it. Allocations keep the simple
// form (context == data, one raw deleter) that ATen's raw_allocate() requires.
std::mutex g_mutex;
std::unordered_map<void*, int64_t> g_sizes;
c10::DeleterFnPtr g_inner_deleter = nullptr;

void counted_delete(void* ptr) {
  if (!ptr) return;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_sizes.find(ptr);
    if (it != g_sizes.end()) {
      g_allocated.fetch_sub(it->second, std::memory_order_relaxed);
      g_sizes.erase(it);
    }
  }
  g_inner_deleter(ptr);
}

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* inner) : inner_(inner) {}

  c10::DataPtr allocate(size_t n) override {
    c10::DataPtr inner = inner_->allocate(n);
    void* data = inner.get();
    const c10::Device device = inner.device();
    if (!data) return inner;
    inner.release_context();  // now owned here; freed by counted_delete through the inner deleter
    const int64_t bytes = static_cast<int64_t>(n);
    {
      std::lock_guard<std::mutex> lock(g_mutex);
      g_sizes[data] = bytes;
    }
    const int64_t now = g_allocated.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    for (int64_t peak = g_peak.load(std::memory_order_relaxed);
         now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed);) {
    }
    return {data, data, &counted_delete, device};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &counted_delete; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

 private:
  c10::Allocator* inner_;
};

}  // namespace

void MemoryTracker::install() {
  static std::once_flag once;
  std::call_once(once, [] {
    c10::Allocator* inner = c10::GetCPUAllocator();
    // ATen's default CPU allocator hands out simple pointers freed by one raw deleter; anything
    // else (a custom allocator installed by someone else) is left alone, uncounted.
    g_inner_deleter = inner->raw_deleter();
    if (!g_inner_deleter) return;
    static CountingAllocator allocator(inner);
    c10::SetCPUAllocator(&allocator, /*priority=*/1);
    g_installed = true;
  });
}

bool MemoryTracker::installed() { return g_installed; }
namespace {
const c10::CachingAllocator::Stat& cuda_allocated(int device) {
  static thread_local c10::CachingDeviceAllocator::DeviceStats stats;
  stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
}
}  // namespace

int64_t MemoryTracker::allocated(int cuda_device) {
  return cuda_device < 0 ? g_allocated.load() : cuda_allocated(cuda_device).current;
}
int64_t MemoryTracker::peak(int cuda_device) {
  return cuda_device < 0 ? g_peak.load() : cuda_allocated(cuda_device).peak;
}
void MemoryTracker::reset_peak(int cuda_device) {
  if (cuda_device < 0)
    g_peak.store(g_allocated.load());
  else
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(cuda_device));
}

}  // namespace exatrain
