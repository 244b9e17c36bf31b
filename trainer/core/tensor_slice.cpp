#include "trainer/core/tensor_slice.h"

#include <algorithm>

#include "trainer/core/error.h"

namespace exatrain {

TensorSlice TensorSlice::whole(const std::vector<int64_t>& shape) {
  return TensorSlice{std::vector<int64_t>(shape.size(), 0), shape};
}

int64_t TensorSlice::box_numel() const {
  int64_t n = 1;
  for (int64_t l : length) n *= l;
  return n;
}

int64_t TensorSlice::numel() const {
  const int64_t box = box_numel();
  return (flat_end < 0 ? box : std::min(flat_end, box)) - flat_begin;
}

void TensorSlice::check_inside(const std::vector<int64_t>& shape, const std::string& what) const {
  bool ok = start.size() == shape.size() && length.size() == shape.size();
  for (size_t d = 0; ok && d < shape.size(); ++d)
    ok = start[d] >= 0 && length[d] >= 0 && start[d] + length[d] <= shape[d];
  const int64_t box = ok ? box_numel() : 0;
  ok = ok && flat_begin >= 0 && (flat_end < 0 ? flat_begin <= box : flat_begin <= flat_end && flat_end <= box);
  if (!ok) {
    std::string dims;
    for (int64_t s : shape) dims += (dims.empty() ? "" : ", ") + std::to_string(s);
    fail("{}: slice {} does not lie inside the tensor's shape [{}]", what, describe(), dims);
  }
}

std::string TensorSlice::describe() const {
  std::string s = "[";
  for (size_t d = 0; d < start.size(); ++d)
    s += (d ? ", " : "") + std::to_string(start[d]) + ":" + std::to_string(start[d] + (d < length.size() ? length[d] : 0));
  s += "]";
  if (flat_begin != 0 || flat_end >= 0)
    s += " elements " + std::to_string(flat_begin) + ":" + (flat_end < 0 ? std::string() : std::to_string(flat_end));
  return s;
}

std::vector<SliceRun> slice_runs(const std::vector<int64_t>& shape, const TensorSlice& slice) {
  const size_t n = shape.size();
  std::vector<SliceRun> runs;
  if (slice.box_numel() == 0) return runs;
  // Row-major strides, and the outermost dimension k below which the box spans whole
  // dimensions: each run is then length[k] x (the inner dimensions), contiguous in both.
  std::vector<int64_t> stride(n, 1);
  for (size_t d = n; d-- > 1;) stride[d - 1] = stride[d] * shape[d];
  size_t k = n == 0 ? 0 : n - 1;
  while (k > 0 && slice.start[k] == 0 && slice.length[k] == shape[k]) --k;
  const int64_t run_length = n == 0 ? 1 : slice.length[k] * stride[k];
  int64_t outer = 1;
  for (size_t d = 0; d < k; ++d) outer *= slice.length[d];
  const int64_t flat_end = slice.flat_end < 0 ? slice.box_numel() : slice.flat_end;
  // Skip whole runs before flat_begin without enumerating them one by one.
  const int64_t first = slice.flat_begin / run_length;
  std::vector<int64_t> index(k, 0);  // position within the box of dims [0, k)
  int64_t rem = first;
  for (size_t d = k; d-- > 0;) {
    index[d] = rem % slice.length[d];
    rem /= slice.length[d];
  }
  for (int64_t r = first; r < outer; ++r) {
    const int64_t local = r * run_length;
    if (local >= flat_end) break;
    int64_t global = n == 0 ? 0 : slice.start[k] * stride[k];
    for (size_t d = 0; d < k; ++d) global += (slice.start[d] + index[d]) * stride[d];
    const int64_t lo = std::max(local, slice.flat_begin), hi = std::min(local + run_length, flat_end);
    if (lo < hi) runs.push_back(SliceRun{global + (lo - local), lo - slice.flat_begin, hi - lo});
    for (size_t d = k; d-- > 0;) {  // next index, row-major
      if (++index[d] < slice.length[d]) break;
      index[d] = 0;
    }
  }
  return runs;
}

std::vector<CopyRun> overlap(const std::vector<SliceRun>& src, const std::vector<SliceRun>& dst) {
  std::vector<CopyRun> out;
  size_t i = 0, j = 0;
  while (i < src.size() && j < dst.size()) {
    const SliceRun& a = src[i];
    const SliceRun& b = dst[j];
    const int64_t lo = std::max(a.global, b.global);
    const int64_t hi = std::min(a.global + a.length, b.global + b.length);
    if (lo < hi) {
      const CopyRun run{a.local + (lo - a.global), b.local + (lo - b.global), hi - lo};
      if (!out.empty() && out.back().src + out.back().length == run.src && out.back().dst + out.back().length == run.dst)
        out.back().length += run.length;
      else
        out.push_back(run);
    }
    if (a.global + a.length <= b.global + b.length)
      ++i;
    else
      ++j;
  }
  return out;
}

}  // namespace exatrain
