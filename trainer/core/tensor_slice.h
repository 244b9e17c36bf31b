// Slice arithmetic for sharded state: which elements of a global tensor a rank holds, and which
// elements two such holdings share. Every layout is a case of it: a tensor-parallel shard is a
// box (rows or columns of the global tensor), a replicated KV head is a box that several ranks
// hold, a ZeRO-1 segment is a flat range of elements of a box (it cuts a shard anywhere), a
// Hugging Face file holds the whole tensor. Checkpoint save/load with resharding, Hugging Face
// import and export are all "copy the overlap of two slices". No torch here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace exatrain {

// The box [start[d], start[d] + length[d]) in every dimension of a global tensor, optionally
// only the elements [flat_begin, flat_end) of that box counted in row-major order. A slice's
// data is its elements in the box's row-major order.
struct TensorSlice {
  std::vector<int64_t> start, length;
  int64_t flat_begin = 0, flat_end = -1;  // -1: to the end of the box

  // The whole tensor.
  static TensorSlice whole(const std::vector<int64_t>& shape);
  int64_t box_numel() const;
  int64_t numel() const;  // elements held
  // Error (naming `what`) unless the slice lies inside `global_shape`.
  void check_inside(const std::vector<int64_t>& global_shape, const std::string& what) const;
  std::string describe() const;  // "[0:64, 32:64]" or "[0:64, 0:32] elements 10:200"
  bool operator==(const TensorSlice&) const = default;
};

// Elements contiguous both in the global tensor (row-major offset `global`) and in a slice's data
// (offset `local`).
struct SliceRun {
  int64_t global = 0, local = 0, length = 0;
};
// The slice as runs, ascending in both offsets. One run for a box of whole rows; one run per
// row for a column block (a row-parallel weight's shard).
std::vector<SliceRun> slice_runs(const std::vector<int64_t>& global_shape, const TensorSlice& slice);

// Elements two slices share: copy `length` elements from offset `src` of the source slice's
// data to offset `dst` of the destination's.
struct CopyRun {
  int64_t src = 0, dst = 0, length = 0;
};
std::vector<CopyRun> overlap(const std::vector<SliceRun>& src, const std::vector<SliceRun>& dst);
inline int64_t total_length(const std::vector<CopyRun>& runs) {
  int64_t n = 0;
  for (const auto& r : runs) n += r.length;
  return n;
}

}  // namespace exatrain
