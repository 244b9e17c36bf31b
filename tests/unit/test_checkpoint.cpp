// Slice arithmetic (trainer/core/tensor_slice.h) and distributed checkpoints
// (checkpoints/dist_checkpoint.h): pieces written under one layout are read back under another,
// element by element against the global tensor; corrupt, truncated and missing files are errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <algorithm>
#include <numeric>

#include "checkpoints/dist_checkpoint.h"
#include "tests/unit/expect_error.h"
#include "tests/unit/scratch_dir.h"
#include "trainer/core/tensor_slice.h"

namespace exatrain {
namespace {

namespace fs = std::filesystem;

// The global row-major offsets a slice holds, by enumerating every element of the box: the
// judge for slice_runs, written as plainly as possible.
std::vector<int64_t> offsets_by_enumeration(const std::vector<int64_t>& shape, const TensorSlice& s) {
  std::vector<int64_t> out;
  const size_t n = shape.size();
  std::vector<int64_t> idx(n, 0);
  const int64_t box = s.box_numel();
  for (int64_t e = 0; e < box; ++e) {
    int64_t rem = e, global = 0, stride = 1;
    for (size_t d = n; d-- > 0;) {
      idx[d] = rem % s.length[d];
      rem /= s.length[d];
    }
    for (size_t d = n; d-- > 0;) {
      global += (s.start[d] + idx[d]) * stride;
      stride *= shape[d];
    }
    const int64_t end = s.flat_end < 0 ? box : s.flat_end;
    if (e >= s.flat_begin && e < end) out.push_back(global);
  }
  return out;
}

std::vector<int64_t> offsets_from_runs(const std::vector<SliceRun>& runs) {
  std::vector<int64_t> out;
  int64_t local = 0;
  for (const auto& r : runs) {
    EXPECT_EQ(r.local, local);  // runs cover the slice's data in order, without gaps
    for (int64_t i = 0; i < r.length; ++i) out.push_back(r.global + i);
    local += r.length;
  }
  return out;
}

TEST(TensorSlice, RunsEqualElementEnumeration) {
  const std::vector<int64_t> shape{6, 10};
  const std::vector<TensorSlice> cases = {
      TensorSlice::whole(shape),
      TensorSlice{{2, 0}, {3, 10}},           // rows (column-parallel shard): one run
      TensorSlice{{0, 5}, {6, 5}},            // columns (row-parallel shard): one run per row
      TensorSlice{{0, 5}, {6, 5}, 7, 23},     // a ZeRO segment cutting a column shard mid-row
      TensorSlice{{1, 2}, {4, 3}, 0, 1},
      TensorSlice{{0, 0}, {6, 10}, 59, -1},
  };
  for (const auto& s : cases) {
    const auto runs = slice_runs(shape, s);
    EXPECT_EQ(offsets_from_runs(runs), offsets_by_enumeration(shape, s)) << s.describe();
  }
  EXPECT_EQ(slice_runs(shape, TensorSlice{{2, 0}, {3, 10}}).size(), 1u);
  EXPECT_EQ(slice_runs(shape, TensorSlice{{0, 5}, {6, 5}}).size(), 6u);
  // Three dimensions, a box in the middle one.
  const std::vector<int64_t> cube{3, 4, 5};
  const TensorSlice mid{{0, 1, 0}, {3, 2, 5}, 3, 28};
  EXPECT_EQ(offsets_from_runs(slice_runs(cube, mid)), offsets_by_enumeration(cube, mid));
  // A scalar (the optimizer's step) is one element.
  const auto scalar = slice_runs({}, TensorSlice::whole({}));
  ASSERT_EQ(scalar.size(), 1u);
  EXPECT_EQ(scalar[0].length, 1);
}

TEST(TensorSlice, OverlapCopiesExactlyTheSharedElements) {
  // Source: columns [3, 8) of rows [0, 4); destination: a flat range of rows [1, 3).
  const std::vector<int64_t> shape{4, 8};
  const TensorSlice src{{0, 3}, {4, 5}}, dst{{1, 0}, {2, 8}, 2, 13};
  const auto runs = overlap(slice_runs(shape, src), slice_runs(shape, dst));
  const auto src_offsets = offsets_by_enumeration(shape, src), dst_offsets = offsets_by_enumeration(shape, dst);
  int64_t copied = 0;
  for (const auto& r : runs)
    for (int64_t i = 0; i < r.length; ++i) {
      EXPECT_EQ(src_offsets[r.src + i], dst_offsets[r.dst + i]);
      ++copied;
    }
  int64_t shared = 0;
  for (int64_t g : dst_offsets) shared += std::count(src_offsets.begin(), src_offsets.end(), g);
  EXPECT_EQ(copied, shared);
  EXPECT_EQ(copied, 7);  // row 1 cols 3..7 (5, from flat 2..7 = cols 2..7 of row 1) -> 5; row 2 cols 3..4 -> 2
}

TEST(TensorSlice, NoThirtyTwoBitOverflowOnLargeTensors) {
  // A 32B ZeRO-1 bucket on 8 ranks holds > 2^31 elements; offsets and lengths are 64-bit.
  const std::vector<int64_t> shape{int64_t{1} << 20, int64_t{1} << 13};  // 2^33 elements
  const int64_t begin = (int64_t{1} << 31) + 12345, end = (int64_t{1} << 32) + 777;
  const TensorSlice segment{{0, 0}, shape, begin, end};
  EXPECT_EQ(segment.numel(), end - begin);
  const auto runs = slice_runs(shape, segment);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].global, begin);
  EXPECT_EQ(runs[0].length, end - begin);
  // A column shard of the same tensor: the last row's run starts beyond 2^32.
  const TensorSlice columns{{0, int64_t{1} << 12}, {int64_t{1} << 20, int64_t{1} << 12}};
  const auto col_runs = slice_runs(shape, columns);
  ASSERT_EQ(col_runs.size(), size_t{1} << 20);
  EXPECT_EQ(col_runs.back().global, ((int64_t{1} << 20) - 1) * (int64_t{1} << 13) + (int64_t{1} << 12));
  EXPECT_EQ(col_runs.back().local, ((int64_t{1} << 20) - 1) * (int64_t{1} << 12));
  // Shared elements counted row by row: the right half of every row the segment touches.
  const int64_t width = int64_t{1} << 13;
  int64_t shared = 0;
  for (int64_t row = begin / width; row <= (end - 1) / width; ++row)
    shared += std::max<int64_t>(0, std::min(end, (row + 1) * width) - std::max(begin, row * width + width / 2));
  EXPECT_GT(shared, int64_t{1} << 29);
  EXPECT_EQ(total_length(overlap(runs, col_runs)), shared);
}


// A [rows, cols] fp32 tensor whose element at global offset g is g: what a reader gets back
// says exactly which elements it got.
struct Saved {
  std::string dir;
  std::vector<int64_t> shape{12, 10};
};

// "Rank r of 4" holds column shard r % 2, and rows split as a ZeRO segment by r / 2.
Saved save_four_ranks(const fs::path& root, int64_t step = 3) {
  Saved s;
  const std::string checkpoints = (root / "checkpoints").string();
  const std::string tmp = begin_checkpoint(checkpoints, checkpoint_name(step));
  std::vector<std::string> lists;
  for (int r = 0; r < 4; ++r) {
    TensorSlice slice{{0, 5 * (r % 2)}, {12, 5}};
    const int64_t half = slice.box_numel() / 2;
    slice.flat_begin = (r / 2) * half - (r / 2);  // uneven cut: 0..30 and 29..60 overlap by one element
    slice.flat_end = r / 2 == 0 ? half : -1;
    if (r / 2 == 1) slice.flat_begin = half;     // no overlap: writers are canonical
    std::vector<float> data;
    for (const auto& run : slice_runs(s.shape, slice))
      for (int64_t i = 0; i < run.length; ++i) data.push_back(static_cast<float>(run.global + i));
    std::vector<float> scalar{static_cast<float>(step)};
    std::vector<StatePiece> pieces{{"w", s.shape, DType::F32, slice, data.data()}};
    if (r == 0) pieces.push_back({"steps", {}, DType::F32, TensorSlice::whole({}), scalar.data()});
    lists.push_back(write_rank_pieces(tmp, r, pieces));
  }
  CheckpointInfo info;
  info.step = step;
  info.tokens = 100 * step;
  info.model = {{"model.hidden_size", "10"}};
  info.layout.world_size = 4;
  info.layout.tp = 2;
  info.layout.dp = 2;
  info.layout.zero = 1;
  info.blobs["loader"] = {1, 2, 3};
  s.dir = commit_checkpoint(tmp, info, lists);
  return s;
}

TEST(DistCheckpoint, SaveUnderOneLayoutLoadUnderAnother) {
  ScratchDir scratch;
  const Saved saved = save_four_ranks(scratch.path);
  EXPECT_EQ(fs::path(saved.dir).filename(), "step_00000003");
  EXPECT_EQ(latest_checkpoint((scratch.path / "checkpoints").string()), saved.dir);
  CheckpointReader reader(saved.dir);
  EXPECT_EQ(reader.info().step, 3);
  EXPECT_EQ(reader.info().tokens, 300);
  EXPECT_EQ(reader.info().layout.tp, 2);
  EXPECT_EQ(reader.info().blobs.at("loader"), (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(reader.info().model.at("model.hidden_size"), "10");
  // Load as 3 row shards, one a ZeRO segment, and as the whole tensor in bf16.
  for (const TensorSlice& want : {TensorSlice{{0, 0}, {4, 10}}, TensorSlice{{4, 0}, {4, 10}, 3, 37},
                                  TensorSlice{{8, 0}, {4, 10}}, TensorSlice::whole(saved.shape)}) {
    std::vector<float> got(static_cast<size_t>(want.numel()), -1);
    reader.read(StatePiece{"w", saved.shape, DType::F32, want, got.data()});
    std::vector<float> expected;
    for (const auto& run : slice_runs(saved.shape, want))
      for (int64_t i = 0; i < run.length; ++i) expected.push_back(static_cast<float>(run.global + i));
    EXPECT_EQ(got, expected) << want.describe();
  }
  std::vector<uint16_t> bf16(120);
  reader.read(StatePiece{"w", saved.shape, DType::BF16, TensorSlice::whole(saved.shape), bf16.data()});
  EXPECT_EQ(bf16_bits_to_f32(bf16[119]), 119.0f);
  float step = 0;
  reader.read(StatePiece{"steps", {}, DType::F32, TensorSlice::whole({}), &step});
  EXPECT_EQ(step, 3.0f);
  reader.verify_all();
}

TEST(DistCheckpoint, ErrorsNameTheProblem) {
  ScratchDir scratch;
  const Saved saved = save_four_ranks(scratch.path);
  std::vector<float> buf(120);
  {
    CheckpointReader reader(saved.dir);
    expect_error([&] { reader.read(StatePiece{"v", saved.shape, DType::F32, TensorSlice::whole(saved.shape), buf.data()}); },
                 {"holds no tensor 'v'"});
    expect_error([&] { reader.read(StatePiece{"w", {12, 11}, DType::F32, TensorSlice::whole({12, 11}), buf.data()}); },
                 {"tensor 'w' has shape [12, 10]", "needs [12, 11]"});
  }
  // A flipped byte in a data file: named on read and by verify.
  const std::string data_file = saved.dir + "/rank_00001.bin";
  {
    std::fstream f(data_file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(64 + 8);
    char c;
    f.read(&c, 1);
    f.seekp(64 + 8);
    c = static_cast<char>(c ^ 0x10);
    f.write(&c, 1);
  }
  {
    CheckpointReader reader(saved.dir);
    expect_error([&] { reader.verify_all(); }, {"rank_00001.bin", "is corrupt", "'w'"});
    expect_error([&] { reader.read(StatePiece{"w", saved.shape, DType::F32, TensorSlice::whole(saved.shape), buf.data()}); },
                 {"rank_00001.bin", "is corrupt"});
    // Pieces that do not overlap the corrupt one still load.
    std::vector<float> rows(10);
    reader.read(StatePiece{"w", saved.shape, DType::F32, TensorSlice{{0, 0}, {1, 5}}, rows.data()});
  }
  // Truncated and missing data files, a corrupt manifest, a missing manifest.
  fs::resize_file(saved.dir + "/rank_00002.bin", 40);
  expect_error([&] { CheckpointReader reader(saved.dir); }, {"rank_00002.bin is truncated"});
  fs::remove(saved.dir + "/rank_00002.bin");
  expect_error([&] { CheckpointReader reader(saved.dir); }, {"rank_00002.bin is missing"});
  {
    std::fstream f(saved.dir + "/manifest.pb", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  expect_error([&] { CheckpointReader reader(saved.dir); }, {"manifest.pb", "checksum mismatch"});
  fs::resize_file(saved.dir + "/manifest.pb", 10);
  expect_error([&] { CheckpointReader reader(saved.dir); }, {"manifest.pb", "truncated"});
  fs::remove(saved.dir + "/manifest.pb");
  expect_error([&] { CheckpointReader reader(saved.dir); }, {"cannot read manifest.pb"});
  expect_error([&] { CheckpointReader reader((scratch.path / "nowhere").string()); }, {"no such directory"});
}

TEST(DistCheckpoint, LatestMovesLastAndKeepPrunesTheOldest) {
  ScratchDir scratch;
  const std::string checkpoints = (scratch.path / "checkpoints").string();
  EXPECT_EQ(latest_checkpoint(checkpoints), "");
  for (int64_t step : {2, 4, 6}) save_four_ranks(scratch.path, step);
  EXPECT_EQ(fs::path(latest_checkpoint(checkpoints)).filename(), "step_00000006");
  EXPECT_EQ(prune_checkpoints(checkpoints, 2), (std::vector<std::string>{"step_00000002"}));
  EXPECT_TRUE(fs::exists(checkpoints + "/step_00000004"));
  // A save interrupted before its rename leaves a .tmp- directory that changes nothing and is
  // removed by the next save.
  begin_checkpoint(checkpoints, checkpoint_name(8));
  EXPECT_EQ(fs::path(latest_checkpoint(checkpoints)).filename(), "step_00000006");
  save_four_ranks(scratch.path, 10);
  EXPECT_FALSE(fs::exists(checkpoints + "/.tmp-step_00000008"));
  // A process killed while moving `latest` leaves latest.tmp.PID; one killed after moving it,
  // before removing the directory it set aside, leaves .old-step_N. The next save removes both,
  // but keeps an .old- directory that `latest` falls back to (killed between the two renames).
  std::ofstream(checkpoints + "/latest.tmp.12345") << "step_00000012";
  fs::rename(checkpoints + "/step_00000006", checkpoints + "/.old-step_00000006");
  fs::rename(checkpoints + "/step_00000010", checkpoints + "/.old-step_00000010");  // `latest` names it
  EXPECT_EQ(fs::path(latest_checkpoint(checkpoints)).filename(), ".old-step_00000010");
  begin_checkpoint(checkpoints, checkpoint_name(12));
  EXPECT_FALSE(fs::exists(checkpoints + "/latest.tmp.12345"));
  EXPECT_FALSE(fs::exists(checkpoints + "/.old-step_00000006"));
  EXPECT_EQ(fs::path(latest_checkpoint(checkpoints)).filename(), ".old-step_00000010");
  save_four_ranks(scratch.path, 10);
  EXPECT_FALSE(fs::exists(checkpoints + "/.old-step_00000010"));
  // Saving a step again (a resume from an older checkpoint) replaces the directory.
  save_four_ranks(scratch.path, 4);
  EXPECT_EQ(fs::path(latest_checkpoint(checkpoints)).filename(), "step_00000004");
  CheckpointReader reader(checkpoints + "/step_00000004");
  EXPECT_EQ(reader.info().step, 4);
  // `latest` naming garbage, or a directory that is not there.
  std::ofstream(checkpoints + "/latest") << "../etc\n";
  expect_error([&] { latest_checkpoint(checkpoints); }, {"does not name a checkpoint"});
  std::ofstream(checkpoints + "/latest") << "step_00000099\n";
  expect_error([&] { latest_checkpoint(checkpoints); }, {"names step_00000099, which has no manifest.pb"});
}

}  // namespace
}  // namespace exatrain
