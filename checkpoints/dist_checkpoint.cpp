#include "checkpoints/dist_checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include <xxhash.h>

#include "checkpoint.pb.h"
#include "trainer/core/atomic_file.h"
#include "trainer/core/error.h"
#include "trainer/core/progress.h"
#include "trainer/core/sha256.h"

namespace exatrain {

namespace fs = std::filesystem;

namespace {

// Data files: "EXACKPTD", u32 format version, u32 rank, then the pieces (64-byte aligned).
constexpr char kDataMagic[8] = {'E', 'X', 'A', 'C', 'K', 'P', 'T', 'D'};
constexpr uint64_t kDataHeader = 16, kAlign = 64;
// Manifest: "EXACKPTM", u32 format version, u32 0, u64 length, the Manifest message, then the
// SHA-256 of everything before it.
constexpr char kManifestMagic[8] = {'E', 'X', 'A', 'C', 'K', 'P', 'T', 'M'};
constexpr size_t kManifestHeader = 24;
constexpr const char* kManifestFile = "manifest.pb";

std::string errno_text() { return std::strerror(errno); }

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

proto::Slice to_proto(const TensorSlice& s) {
  proto::Slice p;
  for (int64_t v : s.start) p.add_start(v);
  for (int64_t v : s.length) p.add_length(v);
  p.set_flat_begin(s.flat_begin);
  p.set_flat_end(s.flat_end);
  return p;
}

TensorSlice from_proto(const proto::Slice& p) {
  TensorSlice s;
  s.start.assign(p.start().begin(), p.start().end());
  s.length.assign(p.length().begin(), p.length().end());
  s.flat_begin = p.flat_begin();
  s.flat_end = p.flat_end();
  return s;
}

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

bool is_checkpoint_name(const std::string& name) {
  static const std::regex pattern("step_[0-9]{8}");
  return std::regex_match(name, pattern);
}

}  // namespace

std::string CheckpointLayout::describe() const {
  return fmt::format("tp {} x pp {} x dp {} ({} ranks), zero {}{}", tp, pp, dp, world_size, zero,
                     sequence_parallel ? ", sequence parallel" : "");
}

std::string checkpoint_name(int64_t step) { return fmt::format("step_{:08d}", step); }

std::string piece_checksum(const void* data, uint64_t bytes) {
  const XXH128_hash_t h = XXH3_128bits(data, bytes);
  return fmt::format("xxh3-128:{:016x}{:016x}", h.high64, h.low64);
}

void copy_runs(const void* src, DType src_dtype, void* dst, DType dst_dtype, const std::vector<CopyRun>& runs) {
  const size_t in_size = dtype_size(src_dtype), out_size = dtype_size(dst_dtype);
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  std::vector<float> scratch;
  for (const CopyRun& r : runs) {
    const uint8_t* from = in + static_cast<size_t>(r.src) * in_size;
    uint8_t* to = out + static_cast<size_t>(r.dst) * out_size;
    if (src_dtype == dst_dtype) {
      std::memcpy(to, from, static_cast<size_t>(r.length) * out_size);
    } else if (dst_dtype == DType::F32) {
      convert_to_f32(src_dtype, from, reinterpret_cast<float*>(to), r.length);
    } else {
      scratch.resize(static_cast<size_t>(r.length));
      convert_to_f32(src_dtype, from, scratch.data(), r.length);
      convert_f32_to(dst_dtype, scratch.data(), to, r.length);
    }
  }
}

std::string resolve_checkpoint_dir(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir + "/" + kManifestFile, ec)) return dir;
  for (const std::string& folder : {dir + "/checkpoints", dir})
    if (fs::exists(folder + "/latest", ec)) return latest_checkpoint(folder);
  if (!fs::exists(dir, ec)) fail("'{}': no such directory", dir);
  fail("'{}' is neither a checkpoint (no {}) nor a run directory with checkpoints/latest", dir, kManifestFile);
}

// ---- saving ----------------------------------------------------------------------------------

std::string begin_checkpoint(const std::string& checkpoints_dir, const std::string& name) {
  std::error_code ec;
  fs::create_directories(checkpoints_dir, ec);
  if (ec) fail("cannot create the checkpoint directory '{}': {}", checkpoints_dir, ec.message());
  // What a process killed inside a save leaves: its .tmp- directory, a half-moved `latest`
  // (latest.tmp.PID) and a checkpoint set aside by commit_checkpoint (.old-step_N), unless
  // `latest` still falls back to it. Only rank 0 saves, one save at a time: nothing here is live.
  std::string fallback;
  try {
    fallback = fs::path(latest_checkpoint(checkpoints_dir)).filename().string();
  } catch (const Error&) {
  }
  for (const auto& entry : fs::directory_iterator(checkpoints_dir, ec)) {
    const std::string n = entry.path().filename().string();
    if (n.starts_with(".tmp-") || n.starts_with("latest.tmp.") || (n.starts_with(".old-") && n != fallback))
      fs::remove_all(entry.path(), ec);
  }
  const std::string tmp = checkpoints_dir + "/.tmp-" + name;
  fs::create_directory(tmp, ec);
  if (ec) fail("cannot create '{}': {}", tmp, ec.message());
  return tmp;
}

std::string write_rank_pieces(const std::string& tmp_dir, int rank, const std::vector<StatePiece>& pieces) {
  proto::PieceList list;
  if (pieces.empty()) return list.SerializeAsString();
  const std::string file = fmt::format("rank_{:05d}.bin", rank);
  const std::string path = tmp_dir + "/" + file;
  AtomicFileWriter out(path);
  std::string header(kDataMagic, 8);
  put_u32(header, kCheckpointFormatVersion);
  put_u32(header, static_cast<uint32_t>(rank));
  out.write(header);
  static const std::vector<uint8_t> zeros(kAlign, 0);
  for (const auto& piece : pieces) {
    note_progress();  // a large synchronous save is progress (trainer/train/watchdog.h)
    piece.slice.check_inside(piece.global_shape, "checkpoint: tensor '" + piece.name + "'");
    out.write(zeros.data(), (kAlign - out.size() % kAlign) % kAlign);
    const uint64_t offset = out.size();
    const uint64_t bytes = static_cast<uint64_t>(piece.slice.numel()) * dtype_size(piece.dtype);
    out.write(piece.data, bytes);
    proto::Piece* p = list.add_pieces();
    p->set_name(piece.name);
    p->set_dtype(dtype_name(piece.dtype));
    for (int64_t d : piece.global_shape) p->add_global_shape(d);
    *p->mutable_slice() = to_proto(piece.slice);
    p->set_file(file);
    p->set_offset(offset);
    p->set_bytes(bytes);
    p->set_checksum(piece_checksum(piece.data, bytes));
    p->set_rank(rank);
  }
  out.commit();
  return list.SerializeAsString();
}

std::string commit_checkpoint(const std::string& tmp_dir, const CheckpointInfo& info,
                              const std::vector<std::string>& rank_piece_lists) {
  proto::Manifest m;
  m.set_format_version(kCheckpointFormatVersion);
  m.set_step(info.step);
  m.set_tokens(info.tokens);
  m.set_seed(info.seed);
  m.set_first_loss(info.first_loss);
  m.set_config_yaml(info.config_yaml);
  for (const auto& [k, v] : info.model) {
    proto::KeyValue* kv = m.add_model();
    kv->set_key(k);
    kv->set_value(v);
  }
  proto::Layout* l = m.mutable_layout();
  l->set_world_size(info.layout.world_size);
  l->set_tp(info.layout.tp);
  l->set_pp(info.layout.pp);
  l->set_dp(info.layout.dp);
  l->set_zero(info.layout.zero);
  l->set_sequence_parallel(info.layout.sequence_parallel);
  for (int64_t v : info.layout.pipeline_layers) l->add_pipeline_layers(v);
  l->set_micro_batch(info.layout.micro_batch);
  m.set_tokenizer_sha256(info.tokenizer_sha256);
  for (const auto& d : info.datasets) m.add_datasets(d);
  for (const auto& [name, bytes] : info.blobs) {
    proto::Blob* b = m.add_blobs();
    b->set_name(name);
    b->set_data(std::string(bytes.begin(), bytes.end()));
  }
  for (size_t r = 0; r < rank_piece_lists.size(); ++r) {
    proto::PieceList list;
    if (!list.ParseFromString(rank_piece_lists[r])) fail("internal: rank {}'s checkpoint piece list is garbled", r);
    for (const auto& p : list.pieces()) *m.add_pieces() = p;
  }
  m.set_exatrain_version(info.exatrain_version);
  m.set_created_utc(info.created_utc.empty() ? utc_now() : info.created_utc);

  std::string bytes(kManifestMagic, 8);
  put_u32(bytes, kCheckpointFormatVersion);
  put_u32(bytes, 0);
  const std::string body = m.SerializeAsString();
  put_u64(bytes, body.size());
  bytes += body;
  Sha256 h;
  h.update(bytes);
  const auto digest = h.digest();
  bytes.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  write_file_atomically(tmp_dir + "/" + kManifestFile, bytes);
  fsync_directory(tmp_dir);

  // Into place: the directory, then `latest`. A crash before the rename leaves only a .tmp-*
  // directory (removed by the next save); after it, `latest` still names the previous one.
  const fs::path tmp(tmp_dir);
  const std::string checkpoints_dir = tmp.parent_path().string();
  const std::string name = checkpoint_name(info.step);
  const std::string final_dir = checkpoints_dir + "/" + name;
  std::error_code ec;
  const std::string old = checkpoints_dir + "/.old-" + name;
  if (fs::exists(final_dir, ec)) {
    // A directory of that name from an earlier pass over the same step (a resume from an older
    // checkpoint): set it aside; latest_checkpoint() falls back to it until `latest` moves.
    fs::remove_all(old, ec);
    fs::rename(final_dir, old, ec);
    if (ec) fail("cannot move the older '{}' aside: {}", final_dir, ec.message());
  }
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) fail("cannot rename '{}' to '{}': {}", tmp_dir, final_dir, ec.message());
  fsync_directory(checkpoints_dir);
  const std::string latest = name + "\n";
  write_file_atomically(checkpoints_dir + "/latest", latest);
  fsync_directory(checkpoints_dir);
  fs::remove_all(old, ec);
  return final_dir;
}

std::vector<std::string> prune_checkpoints(const std::string& checkpoints_dir, int64_t keep) {
  std::vector<std::string> removed;
  if (keep <= 0) return removed;
  const std::string latest = latest_checkpoint(checkpoints_dir);
  const std::string latest_name = latest.empty() ? "" : fs::path(latest).filename().string();
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir, ec)) {
    const std::string n = entry.path().filename().string();
    if (entry.is_directory() && is_checkpoint_name(n)) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  for (size_t i = 0; i + static_cast<size_t>(keep) < names.size(); ++i) {
    if (names[i] == latest_name) continue;
    fs::remove_all(checkpoints_dir + "/" + names[i], ec);
    if (ec) fail("cannot remove the old checkpoint '{}/{}': {}", checkpoints_dir, names[i], ec.message());
    removed.push_back(names[i]);
  }
  return removed;
}

std::string latest_checkpoint(const std::string& checkpoints_dir) {
  const std::string path = checkpoints_dir + "/latest";
  std::error_code ec;
  if (!fs::exists(path, ec)) return "";
  std::ifstream in(path);
  std::string name;
  if (!(in >> name) || !is_checkpoint_name(name))
    fail("'{}' does not name a checkpoint (expected a line like step_00000006); remove it or pass --resume DIR", path);
  const std::string dir = checkpoints_dir + "/" + name;
  if (fs::exists(dir + "/" + kManifestFile, ec)) return dir;
  const std::string old = checkpoints_dir + "/.old-" + name;  // see commit_checkpoint
  if (fs::exists(old + "/" + kManifestFile, ec)) return old;
  fail("'{}' names {}, which has no {}; pass --resume with another checkpoint directory", path, name, kManifestFile);
}

// ---- loading ---------------------------------------------------------------------------------

struct CheckpointReader::MappedFile {
  std::string path;
  void* map = nullptr;
  size_t size = 0;
  ~MappedFile() {
    if (map) ::munmap(map, size);
  }
};

CheckpointReader::CheckpointReader(const std::string& dir) : dir_(dir) {
  const std::string path = dir + "/" + kManifestFile;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("checkpoint '{}': no such directory", dir);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("checkpoint '{}': cannot read {}: {}; is this a checkpoint directory?", dir, kManifestFile, errno_text());
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  if (bytes.size() < 8 || std::memcmp(b, kManifestMagic, 8) != 0)
    fail("{}: not a checkpoint manifest (no EXACKPTM magic)", path);
  if (bytes.size() < kManifestHeader + 32) fail("{}: truncated ({} bytes)", path, bytes.size());
  const uint32_t version = static_cast<uint32_t>(get_le(b + 8, 4));
  if (version != kCheckpointFormatVersion)
    fail("{}: format version {}, this exatrain reads version {}", path, version, kCheckpointFormatVersion);
  const uint64_t length = get_le(b + 16, 8);
  if (length != bytes.size() - kManifestHeader - 32)
    fail("{}: truncated or padded: header says {} bytes of manifest, the file holds {}", path, length,
         bytes.size() < kManifestHeader + 32 ? 0 : bytes.size() - kManifestHeader - 32);
  Sha256 h;
  h.update(b, kManifestHeader + length);
  const auto digest = h.digest();
  if (std::memcmp(digest.data(), b + kManifestHeader + length, 32) != 0)
    fail("{}: checksum mismatch: the manifest is corrupt", path);
  proto::Manifest m;
  if (!m.ParseFromArray(b + kManifestHeader, static_cast<int>(length))) fail("{}: the manifest does not parse", path);

  info_.step = m.step();
  info_.tokens = m.tokens();
  info_.seed = m.seed();
  info_.first_loss = m.first_loss();
  info_.config_yaml = m.config_yaml();
  for (const auto& kv : m.model()) info_.model[kv.key()] = kv.value();
  const auto& l = m.layout();
  info_.layout = CheckpointLayout{l.world_size(), l.tp(), l.pp(), l.dp(), l.zero(), l.sequence_parallel(),
                                  std::vector<int64_t>(l.pipeline_layers().begin(), l.pipeline_layers().end()),
                                  l.micro_batch()};
  info_.tokenizer_sha256 = m.tokenizer_sha256();
  info_.datasets.assign(m.datasets().begin(), m.datasets().end());
  for (const auto& blob : m.blobs()) info_.blobs[blob.name()] = std::vector<uint8_t>(blob.data().begin(), blob.data().end());
  info_.exatrain_version = m.exatrain_version();
  info_.created_utc = m.created_utc();

  std::map<std::string, uint64_t> file_sizes;
  for (const auto& p : m.pieces()) {
    StoredPiece s;
    s.name = p.name();
    const std::string what = fmt::format("{}: piece of '{}'", path, s.name);
    s.dtype = parse_dtype(p.dtype(), what);
    s.global_shape.assign(p.global_shape().begin(), p.global_shape().end());
    s.slice = from_proto(p.slice());
    s.slice.check_inside(s.global_shape, what);
    s.file = p.file();
    s.offset = p.offset();
    s.bytes = p.bytes();
    s.checksum = p.checksum();
    s.rank = p.rank();
    if (s.file.empty() || s.file.find('/') != std::string::npos) fail("{}: invalid file name '{}'", what, s.file);
    if (s.bytes != static_cast<uint64_t>(s.slice.numel()) * dtype_size(s.dtype))
      fail("{}: {} bytes recorded for {} elements of {}", what, s.bytes, s.slice.numel(), dtype_name(s.dtype));
    auto it = file_sizes.find(s.file);
    if (it == file_sizes.end()) {
      const std::string data_path = dir + "/" + s.file;
      struct stat st{};
      if (::stat(data_path.c_str(), &st) != 0)
        fail("checkpoint '{}': data file {} is missing ({}); the checkpoint is incomplete", dir, s.file, errno_text());
      it = file_sizes.emplace(s.file, static_cast<uint64_t>(st.st_size)).first;
    }
    if (s.offset + s.bytes > it->second)
      fail("checkpoint '{}': {} is truncated: {} bytes, but '{}' ends at byte {}", dir, s.file, it->second, s.name,
           s.offset + s.bytes);
    auto& same = by_name_[s.name];
    if (!same.empty() && pieces_[same.front()].global_shape != s.global_shape)
      fail("{}: the pieces disagree on the tensor's shape", what);
    same.push_back(pieces_.size());
    pieces_.push_back(std::move(s));
  }
  verified_.assign(pieces_.size(), false);
}

CheckpointReader::~CheckpointReader() = default;

const std::vector<int64_t>& CheckpointReader::global_shape(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) fail("checkpoint '{}' holds no tensor '{}'", dir_, name);
  return pieces_[it->second.front()].global_shape;
}

const uint8_t* CheckpointReader::piece_bytes(size_t index) {
  const StoredPiece& p = pieces_[index];
  auto it = files_.find(p.file);
  if (it == files_.end()) {
    auto f = std::make_unique<MappedFile>();
    f->path = dir_ + "/" + p.file;
    const int fd = ::open(f->path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("checkpoint: cannot open '{}': {}", f->path, errno_text());
    struct stat st{};
    ::fstat(fd, &st);
    f->size = static_cast<size_t>(st.st_size);
    if (f->size < kDataHeader) {
      ::close(fd);
      fail("checkpoint: '{}' is truncated ({} bytes)", f->path, f->size);
    }
    f->map = ::mmap(nullptr, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (f->map == MAP_FAILED) {
      f->map = nullptr;
      fail("checkpoint: cannot map '{}': {}", f->path, errno_text());
    }
    const auto* b = static_cast<const uint8_t*>(f->map);
    if (std::memcmp(b, kDataMagic, 8) != 0) fail("checkpoint: '{}' is not a checkpoint data file (no magic)", f->path);
    if (get_le(b + 8, 4) != kCheckpointFormatVersion)
      fail("checkpoint: '{}' has format version {}, expected {}", f->path, get_le(b + 8, 4), kCheckpointFormatVersion);
    it = files_.emplace(p.file, std::move(f)).first;
  }
  const MappedFile& f = *it->second;
  if (p.offset + p.bytes > f.size)
    fail("checkpoint: '{}' is truncated: '{}' needs bytes up to {}, the file has {}", f.path, p.name, p.offset + p.bytes,
         f.size);
  const uint8_t* data = static_cast<const uint8_t*>(f.map) + p.offset;
  if (!verified_[index]) {
    const std::string got = piece_checksum(data, p.bytes);
    if (got != p.checksum)
      fail("checkpoint: '{}' is corrupt: the bytes of '{}' {} (offset {}, {} bytes) have checksum {}, the manifest "
           "says {}",
           f.path, p.name, p.slice.describe(), p.offset, p.bytes, got, p.checksum);
    verified_[index] = true;
  }
  return data;
}

void CheckpointReader::read(const StatePiece& target) {
  auto it = by_name_.find(target.name);
  if (it == by_name_.end())
    fail("checkpoint '{}' holds no tensor '{}'; was it saved from another model or with other options?", dir_,
         target.name);
  const auto& shape = pieces_[it->second.front()].global_shape;
  if (shape != target.global_shape) {
    auto str = [](const std::vector<int64_t>& s) {
      std::string out;
      for (int64_t d : s) out += (out.empty() ? "" : ", ") + std::to_string(d);
      return "[" + out + "]";
    };
    fail("checkpoint '{}': tensor '{}' has shape {}, this run's model needs {}", dir_, target.name, str(shape),
         str(target.global_shape));
  }
  target.slice.check_inside(target.global_shape, "tensor '" + target.name + "'");
  const std::vector<SliceRun> want = slice_runs(shape, target.slice);
  int64_t covered = 0;
  for (size_t index : it->second) {
    const StoredPiece& p = pieces_[index];
    const std::vector<CopyRun> runs = overlap(slice_runs(shape, p.slice), want);
    if (runs.empty()) continue;
    copy_runs(piece_bytes(index), p.dtype, target.data, target.dtype, runs);
    covered += total_length(runs);
  }
  if (covered != target.slice.numel())
    fail("checkpoint '{}': the stored pieces of '{}' cover {} of the {} elements of {} this rank needs; the checkpoint "
         "is incomplete or inconsistent",
         dir_, target.name, covered, target.slice.numel(), target.slice.describe());
}

std::string CheckpointReader::check_share(int part, int parts) {
  for (size_t i = static_cast<size_t>(part); i < pieces_.size(); i += static_cast<size_t>(parts)) {
    try {
      piece_bytes(i);
    } catch (const Error& e) {
      return e.what();
    }
  }
  return "";
}

void CheckpointReader::trust_checked() { verified_.assign(pieces_.size(), true); }

void CheckpointReader::verify_all(const std::function<void(uint64_t, uint64_t)>& progress) {
  uint64_t total = 0, done = 0;
  for (const auto& p : pieces_) total += p.bytes;
  for (size_t i = 0; i < pieces_.size(); ++i) {
    piece_bytes(i);
    done += pieces_[i].bytes;
    if (progress) progress(done, total);
  }
}

}  // namespace exatrain
