// Counts the bytes of tensor storage. On the CPU: a wrapper around ATen's CPU allocator that
// keeps the bytes currently allocated and their peak. The trainer measures each step's peak activation
// memory as (peak during the step) - (allocated at its start, with gradients already allocated).
// On a GPU the same figures come from the CUDA caching allocator's statistics.
#pragma once

#include <cstdint>

namespace exatrain {

class MemoryTracker {
 public:
  // Installs the counting allocator once per process (later calls do nothing). Storage that
  // existed before is not counted.
  static void install();
  static bool installed();
  // `cuda_device` < 0: CPU storage (counted by the installed allocator); else that GPU's.
  static int64_t allocated(int cuda_device = -1);  // bytes now
  static int64_t peak(int cuda_device = -1);       // most bytes since the last reset_peak()
  static void reset_peak(int cuda_device = -1);    // peak := allocated
};

}  // namespace exatrain
