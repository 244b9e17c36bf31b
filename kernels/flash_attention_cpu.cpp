// Runtime dispatch of the CPU flash attention to the copy built for the best instruction set
// this CPU has (the copies are the same source, flash_attention_cpu.inc).
#include "kernels/flash_attention.h"

#include <atomic>
#include <cstdlib>
#include <string>

namespace exatrain::kernels {

#define EXATRAIN_FA_DECLARE(isa)                                                                                  \
  namespace isa {                                                                                                 \
  void forward(const AttentionShape&, const float*, const float*, const float*, float*, float*, int64_t, int64_t); \
  void backward(const AttentionShape&, const float*, const float*, const float*, const float*, const float*,      \
                const float*, float*, float*, float*, int64_t, int64_t);                                          \
  }
EXATRAIN_FA_DECLARE(avx512)
EXATRAIN_FA_DECLARE(avx2)
EXATRAIN_FA_DECLARE(generic)
#undef EXATRAIN_FA_DECLARE

namespace {

enum class Isa { Avx512, Avx2, Generic };

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Generic: break;
  }
  return "generic";
}

bool supported(Isa isa) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (isa == Isa::Avx512) return __builtin_cpu_supports("avx512f");
  if (isa == Isa::Avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return isa == Isa::Generic;
}

// The best copy this CPU runs; EXATRAIN_CPU_ISA=avx2|generic picks a lesser one (the tests run
// every copy a machine supports this way).
Isa detect() {
  if (const char* env = std::getenv("EXATRAIN_CPU_ISA")) {
    const std::string want = env;
    for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Generic})
      if (want == isa_name(isa) && supported(isa)) return isa;
  }
  for (Isa isa : {Isa::Avx512, Isa::Avx2})
    if (supported(isa)) return isa;
  return Isa::Generic;
}

std::atomic<int>& chosen() {
  static std::atomic<int> value{static_cast<int>(detect())};
  return value;
}

Isa isa() { return static_cast<Isa>(chosen().load(std::memory_order_relaxed)); }

}  // namespace

const char* flash_attention_cpu_isa() { return isa_name(isa()); }

bool flash_attention_cpu_use_isa(const char* name) {
  for (Isa candidate : {Isa::Avx512, Isa::Avx2, Isa::Generic})
    if (std::string(name) == isa_name(candidate)) {
      if (!supported(candidate)) return false;
      chosen().store(static_cast<int>(candidate), std::memory_order_relaxed);
      return true;
    }
  return false;
}

int64_t flash_forward_items(const AttentionShape& s) {
  return s.batch * s.heads * ((s.seq + kFlashQueryTile - 1) / kFlashQueryTile);
}

int64_t flash_backward_items(const AttentionShape& s) { return s.batch * s.heads; }

void flash_attention_forward_cpu(const AttentionShape& s, const float* q, const float* k, const float* v, float* o,
                                 float* lse, int64_t item_begin, int64_t item_end) {
  switch (isa()) {
    case Isa::Avx512: return avx512::forward(s, q, k, v, o, lse, item_begin, item_end);
    case Isa::Avx2: return avx2::forward(s, q, k, v, o, lse, item_begin, item_end);
    case Isa::Generic: break;
  }
  generic::forward(s, q, k, v, o, lse, item_begin, item_end);
}

void flash_attention_backward_cpu(const AttentionShape& s, const float* q, const float* k, const float* v,
                                  const float* lse, const float* delta, const float* dout, float* dq,
                                  float* dk_heads, float* dv_heads, int64_t item_begin, int64_t item_end) {
  switch (isa()) {
    case Isa::Avx512: return avx512::backward(s, q, k, v, lse, delta, dout, dq, dk_heads, dv_heads, item_begin, item_end);
    case Isa::Avx2: return avx2::backward(s, q, k, v, lse, delta, dout, dq, dk_heads, dv_heads, item_begin, item_end);
    case Isa::Generic: break;
  }
  generic::backward(s, q, k, v, lse, delta, dout, dq, dk_heads, dv_heads, item_begin, item_end);
}

}  // namespace exatrain::kernels
