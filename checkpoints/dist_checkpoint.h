// Distributed checkpoints: every rank writes the pieces of state it holds into its own file,
// rank 0 writes one manifest, and the directory appears atomically (written as .tmp-NAME,
// fsynced, renamed; RUN/checkpoints/latest moves last). Loading reads, for each slice a rank
// needs, the overlapping parts of the stored pieces, whatever layout wrote them, and checks the
// checksum of every stored piece it touches. Pieces carry XXH3-128 checksums (libxxhash): SHA-256
// made loading hash-bound (about 1.1 GB/s per core here against 14.5 GB/s for XXH3; measured
// in docs/performance.md); the manifest itself carries a SHA-256. No torch and no MPI here: the trainer gathers
// the ranks' piece lists (trainer/train/train_state.cpp). Format: docs/checkpoints.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoints/safetensors.h"
#include "trainer/core/tensor_slice.h"

namespace exatrain {

inline constexpr uint32_t kCheckpointFormatVersion = 1;

// A slice of a global tensor that this rank holds, with its data in host memory
// (slice.numel() elements of `dtype`, the box's row-major order).
struct StatePiece {
  std::string name;
  std::vector<int64_t> global_shape;
  DType dtype = DType::F32;
  TensorSlice slice;
  void* data = nullptr;
};

struct CheckpointLayout {
  int world_size = 1, tp = 1, pp = 1, dp = 1, zero = 0;
  bool sequence_parallel = false;
  std::vector<int64_t> pipeline_layers;
  int64_t micro_batch = 0;
  std::string describe() const;  // "tp 2 x pp 2 x dp 1 (4 ranks), zero 0"
};

// Where a run stood, and what it was.
struct CheckpointInfo {
  int64_t step = 0, tokens = 0, seed = 0;
  double first_loss = 0;
  std::string config_yaml;
  std::map<std::string, std::string> model;  // flattened model.* keys
  CheckpointLayout layout;
  std::string tokenizer_sha256;
  std::vector<std::string> datasets;
  std::map<std::string, std::vector<uint8_t>> blobs;
  std::string exatrain_version, created_utc;
};

// A stored piece, as the manifest lists it.
struct StoredPiece {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> global_shape;
  TensorSlice slice;
  std::string file;
  uint64_t offset = 0, bytes = 0;
  std::string checksum;  // "xxh3-128:<hex>"
  int rank = 0;
};

// "step_00000006"
std::string checkpoint_name(int64_t step);

// "xxh3-128:" + 32 lower-case hex digits of the bytes.
std::string piece_checksum(const void* data, uint64_t bytes);

// Copies the elements of `runs` (overlap() of two slices) from `src` (elements of `src_dtype`)
// to `dst` (elements of `dst_dtype`), converting between F32, BF16 and F16. Checkpoint loading
// and Hugging Face import both move data this way.
void copy_runs(const void* src, DType src_dtype, void* dst, DType dst_dtype, const std::vector<CopyRun>& runs);

// A checkpoint directory as given, or for a run directory (or its checkpoints/ folder) the
// checkpoint its `latest` names. Errors say which of these DIR is not.
std::string resolve_checkpoint_dir(const std::string& dir);

// --- saving (every rank, then rank 0) ----------------------------------------------------

// Rank 0, before the ranks write: makes CHECKPOINTS/.tmp-NAME (removing a stale one and any
// other leftover .tmp-* directory of an interrupted save). Returns its path.
std::string begin_checkpoint(const std::string& checkpoints_dir, const std::string& name);
// Every rank: writes its pieces to TMP/rank_NNNNN.bin (magic, version, then the data, each
// piece 64-byte aligned, with its XXH3-128 checksum), fsyncs it, and returns the serialized list of what it wrote (to be
// gathered on rank 0). A rank with no pieces writes no file.
std::string write_rank_pieces(const std::string& tmp_dir, int rank, const std::vector<StatePiece>& pieces);
// Rank 0, after every rank wrote: writes the manifest from `info` and the gathered lists,
// fsyncs, renames TMP to CHECKPOINTS/NAME (replacing an older directory of that name that
// `latest` does not name), then points CHECKPOINTS/latest at it. Returns the final path.
std::string commit_checkpoint(const std::string& tmp_dir, const CheckpointInfo& info,
                              const std::vector<std::string>& rank_piece_lists);
// Rank 0: removes all but the newest `keep` complete checkpoints (keep 0: keep all); never the
// one `latest` names. Returns the names removed.
std::vector<std::string> prune_checkpoints(const std::string& checkpoints_dir, int64_t keep);

// The directory CHECKPOINTS/latest names, or "" when there is none. A `latest` naming a
// missing or incomplete directory is an error (it never happens through commit_checkpoint).
std::string latest_checkpoint(const std::string& checkpoints_dir);

// --- loading -------------------------------------------------------------------------------

class CheckpointReader {
 public:
  // Reads and checks the manifest (magic, format version, checksum, every piece inside its
  // tensor and its file). Any problem is one Error naming the file.
  explicit CheckpointReader(const std::string& dir);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& dir() const { return dir_; }
  const CheckpointInfo& info() const { return info_; }
  const std::vector<StoredPiece>& pieces() const { return pieces_; }
  bool has_tensor(const std::string& name) const { return by_name_.count(name) > 0; }
  // Global shape of a stored tensor (Error when absent).
  const std::vector<int64_t>& global_shape(const std::string& name) const;

  // Fills `target` (its slice of tensor target.name) from every stored piece that overlaps it,
  // converting F32/BF16/F16 to the target's dtype when they differ. Each stored piece is
  // checked against its checksum before its first use. Errors: tensor absent, another global
  // shape, part of the slice not stored.
  void read(const StatePiece& target);

  // Checks the checksums of this process's share of the pieces (index % parts == part) and
  // returns the first failure's message, or "" when all match: ranks that load one checkpoint
  // split the checking between them, so each piece is hashed once in the job instead of once
  // per rank that touches it (a resharded load touches most pieces on every rank). The caller
  // combines the results over the ranks, then calls trust_checked() before read().
  std::string check_share(int part, int parts);
  // Marks every piece as checked (the other ranks checked their shares).
  void trust_checked();

  // Checks every piece's checksum; `progress(done_bytes, total_bytes)` after each piece.
  // Error names the first broken file and piece.
  void verify_all(const std::function<void(uint64_t, uint64_t)>& progress = {});

 private:
  struct MappedFile;
  const uint8_t* piece_bytes(size_t index);  // mapped, verified

  std::string dir_;
  CheckpointInfo info_;
  std::vector<StoredPiece> pieces_;
  std::map<std::string, std::vector<size_t>> by_name_;
  std::map<std::string, std::unique_ptr<MappedFile>> files_;
  std::vector<bool> verified_;
};

}  // namespace exatrain
