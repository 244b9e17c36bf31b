// A pseudo-random permutation of [0, n) in O(1) memory: the loader's per-epoch shuffle of a
// dataset's sequences, however many billions there are, with random access (position i of the
// shuffled order is at(i)) and nothing to store in a checkpoint but the key.
//
// A balanced Feistel network (6 rounds, splitmix64 round function) is a bijection on 2^(2h)
// values for any round function; cycle-walking (re-encrypt until the value falls below n)
// restricts it to [0, n). The domain is under 4n, so that takes fewer than 4 steps on average.
#pragma once

#include <array>
#include <cstdint>

namespace exatrain {

class IndexPermutation {
 public:
  IndexPermutation(uint64_t n, uint64_t key);
  uint64_t size() const { return n_; }
  uint64_t at(uint64_t i) const;  // i < n

 private:
  static constexpr int kRounds = 6;
  uint64_t encrypt(uint64_t x) const;
  uint64_t n_;
  int half_bits_ = 0;
  uint64_t half_mask_ = 0;
  std::array<uint64_t, kRounds> round_keys_{};
};

// splitmix64's finalizer: a well-mixed 64-bit hash of a 64-bit value.
uint64_t mix64(uint64_t x);

}  // namespace exatrain
