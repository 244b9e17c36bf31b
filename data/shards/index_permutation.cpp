#include "data/shards/index_permutation.h"

#include <bit>

#include "trainer/core/error.h"

namespace exatrain {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

IndexPermutation::IndexPermutation(uint64_t n, uint64_t key) : n_(n) {
  if (n > (uint64_t{1} << 62)) fail("IndexPermutation: {} elements is too many", n);
  const int bits = n <= 1 ? 0 : std::bit_width(n - 1);  // values below n fit in `bits` bits
  half_bits_ = (bits + 1) / 2;
  half_mask_ = half_bits_ == 0 ? 0 : (uint64_t{1} << half_bits_) - 1;
  uint64_t k = key;
  for (auto& rk : round_keys_) rk = k = mix64(k);
}

uint64_t IndexPermutation::encrypt(uint64_t x) const {
  uint64_t left = x >> half_bits_, right = x & half_mask_;
  for (const uint64_t rk : round_keys_) {
    const uint64_t next = left ^ (mix64(right ^ rk) & half_mask_);
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

uint64_t IndexPermutation::at(uint64_t i) const {
  if (i >= n_) fail("IndexPermutation: index {} outside [0, {})", i, n_);
  if (n_ <= 1) return i;
  uint64_t x = i;
  do x = encrypt(x);
  while (x >= n_);
  return x;
}

}  // namespace exatrain
