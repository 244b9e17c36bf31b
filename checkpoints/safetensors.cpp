#include "checkpoints/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

#include "trainer/core/atomic_file.h"
#include "trainer/core/error.h"
#include "trainer/core/json_error.h"

namespace exatrain {

// The format is little-endian and we copy bytes straight into memory.
static_assert(std::endian::native == std::endian::little, "exatrain assumes a little-endian host");

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The reference implementation's limit; a larger header means a corrupt or foreign file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

const DTypeEntry& entry_of(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e;
  fail("invalid DType value {}", static_cast<int>(dtype));
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// bytes = numel * dtype_size; false when that overflows 64 bits.
bool byte_size(const std::vector<int64_t>& shape, DType dtype, uint64_t& bytes) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  bytes = n;
  return true;
}

std::string json_kind(const json& j) { return fmt::format("{} {}", j.type_name(), j.dump().substr(0, 40)); }

std::string system_error(const std::string& what, const std::string& path) {
  return fmt::format("{}: {}: {}", path, what, std::strerror(errno));
}

}  // namespace

const char* dtype_name(DType dtype) { return entry_of(dtype).name; }
size_t dtype_size(DType dtype) { return entry_of(dtype).size; }

DType parse_dtype(const std::string& name, const std::string& context) {
  for (const auto& e : kDTypes)
    if (name == e.name) return e.dtype;
  std::string known;
  for (const auto& e : kDTypes) known += (known.empty() ? "" : ", ") + std::string(e.name);
  fail("{}: unknown dtype '{}' (exatrain reads {})", context, name, known);
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---- reading ------------------------------------------------------------------------------

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}", system_error("cannot open safetensors file", path));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string msg = system_error("cannot stat", path);
    ::close(fd);
    fail("{}", msg);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file; expected a .safetensors file", path);
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail("{}: truncated: the file has {} bytes, fewer than the 8-byte header length; not a safetensors file",
         path, file_size);
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) fail("{}: cannot memory-map the file: {}", path, std::strerror(map_errno));
  map_ = map;
  map_size_ = file_size;

  try {
    const auto* bytes = static_cast<const uint8_t*>(map_);
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes, 8);
    if (header_len >= kMaxHeaderBytes)
      fail("{}: header length {} is not below the {}-byte limit; the file is corrupt or not safetensors", path,
           header_len, kMaxHeaderBytes);
    if (header_len > file_size - 8)
      fail("{}: truncated: header says {} bytes but the file has {} ({} after the 8-byte length)", path,
           header_len, file_size, file_size - 8);
    data_ = bytes + 8 + header_len;
    const uint64_t data_size = file_size - 8 - header_len;

    // Duplicate top-level keys would silently shadow a tensor; the parser callback catches them.
    std::set<std::string> seen;
    std::string duplicate;
    auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
      if (event == json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second)
        duplicate = parsed.get<std::string>();
      return true;
    };
    json header;
    try {
      const char* text = reinterpret_cast<const char*>(bytes + 8);
      header = json::parse(text, text + header_len, on_event);
    } catch (const json::exception& e) {
      fail("{}: the header is not valid JSON: {}", path,
           json_error_text(e, std::string_view(reinterpret_cast<const char*>(bytes + 8), header_len)));
    }
    if (!header.is_object()) fail("{}: the header is a JSON {}, expected an object", path, header.type_name());
    if (!duplicate.empty()) fail("{}: the header names '{}' twice", path, duplicate);

    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const json& entry = it.value();
      if (name == "__metadata__") {
        if (entry.is_null()) continue;
        if (!entry.is_object())
          fail("{}: __metadata__ must be an object of strings, found {}", path, entry.type_name());
        for (auto m = entry.begin(); m != entry.end(); ++m) {
          if (!m->is_string())
            fail("{}: __metadata__ '{}' must be a string, found {}", path, m.key(), json_kind(*m));
          metadata_[m.key()] = m->get<std::string>();
        }
        continue;
      }
      const std::string ctx = fmt::format("{}: tensor '{}'", path, name);
      if (!entry.is_object()) fail("{}: expected an object with dtype, shape, data_offsets, found {}", ctx, json_kind(entry));
      for (const char* key : {"dtype", "shape", "data_offsets"})
        if (!entry.contains(key)) fail("{}: missing '{}'", ctx, key);

      TensorInfo info;
      info.name = name;
      const json& dtype = entry["dtype"];
      if (!dtype.is_string()) fail("{}: dtype must be a string, found {}", ctx, json_kind(dtype));
      info.dtype = parse_dtype(dtype.get<std::string>(), ctx);

      const json& shape = entry["shape"];
      if (!shape.is_array()) fail("{}: shape must be an array of integers, found {}", ctx, json_kind(shape));
      for (const json& d : shape) {
        if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
          fail("{}: shape {} must hold non-negative integers, found {}", ctx, shape.dump(), d.dump());
        info.shape.push_back(d.get<int64_t>());
      }

      const json& offsets = entry["data_offsets"];
      if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
          !offsets[1].is_number_unsigned())
        fail("{}: data_offsets must be two non-negative integers [begin, end], found {}", ctx, offsets.dump());
      info.begin = offsets[0].get<uint64_t>();
      info.end = offsets[1].get<uint64_t>();
      if (info.begin > info.end) fail("{}: data_offsets [{}, {}] end before they begin", ctx, info.begin, info.end);
      if (info.end > data_size)
        fail("{}: data_offsets [{}, {}] reach past the end of the data section ({} bytes); the file is truncated "
             "or corrupt", ctx, info.begin, info.end, data_size);
      uint64_t needed = 0;
      if (!byte_size(info.shape, info.dtype, needed))
        fail("{}: shape {} of {} is too large to address", ctx, shape_str(info.shape), dtype_name(info.dtype));
      if (info.end - info.begin != needed)
        fail("{}: data_offsets [{}, {}] hold {} bytes but shape {} of {} needs {}", ctx, info.begin, info.end,
             info.end - info.begin, shape_str(info.shape), dtype_name(info.dtype), needed);
      index_[name] = tensors_.size();
      tensors_.push_back(std::move(info));
    }

    // The reference implementation (safetensors' Metadata::validate and read_metadata) sorts
    // the tensors by data_offsets and requires them to tile the data section exactly: the
    // first begins at 0, each begins where the one before ends, the last ends at the end of
    // the file. Without that, a header length a few bytes short (the JSON still parses when
    // its padding is cut) shifts every tensor and reads garbage, and bytes after the last
    // tensor go unnoticed.
    std::vector<const TensorInfo*> by_offset;
    for (const auto& t : tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
      return std::pair(a->begin, a->end) < std::pair(b->begin, b->end);
    });
    const TensorInfo* previous = nullptr;
    uint64_t covered = 0;  // bytes of the data section tiled so far
    for (const TensorInfo* t : by_offset) {
      if (t->begin < covered)
        fail("{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap in the data section", path, previous->name,
             previous->begin, previous->end, t->name, t->begin, t->end);
      if (t->begin > covered)
        fail("{}: bytes {} to {} of the data section, before tensor '{}', belong to no tensor; the header length "
             "or the header is corrupt (safetensors requires the tensors to fill the data section exactly)",
             path, covered, t->begin, t->name);
      covered = t->end;
      previous = t;
    }
    if (covered != data_size)
      fail("{}: the tensors fill {} bytes of the data section but it holds {}: {} bytes after the last tensor; the "
           "header length is wrong or bytes were appended (safetensors requires the tensors to fill the data "
           "section exactly)",
           path, covered, data_size, data_size - covered);
  } catch (...) {
    unmap();
    throw;
  }
}

SafetensorsReader::~SafetensorsReader() { unmap(); }

SafetensorsReader::SafetensorsReader(SafetensorsReader&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      tensors_(std::move(other.tensors_)),
      index_(std::move(other.index_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    data_ = std::exchange(other.data_, nullptr);
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

void SafetensorsReader::unmap() {
  if (map_) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
  data_ = nullptr;
}

const TensorInfo* SafetensorsReader::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---- writing ------------------------------------------------------------------------------

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<std::span<const uint8_t>> parts(2);  // length and header, filled in below
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const std::string ctx = fmt::format("{}: tensor '{}'", path, t.name);
    if (t.name.empty() || t.name == "__metadata__") fail("{}: invalid tensor name", ctx);
    if (header.contains(t.name)) fail("{}: the name is given twice", ctx);
    for (int64_t d : t.shape)
      if (d < 0) fail("{}: shape {} has a negative dimension", ctx, shape_str(t.shape));
    uint64_t bytes = 0;
    if (!byte_size(t.shape, t.dtype, bytes)) fail("{}: shape {} is too large", ctx, shape_str(t.shape));
    if (bytes > 0 && !t.data) fail("{}: no data for {} bytes", ctx, bytes);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    parts.emplace_back(static_cast<const uint8_t*>(t.data), bytes);
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data then starts 8-byte aligned
  const uint64_t header_len = text.size();
  uint8_t len_bytes[8];
  std::memcpy(len_bytes, &header_len, 8);
  parts[0] = {len_bytes, 8};
  parts[1] = {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
  write_file_atomically(path, parts);
}

// ---- Hugging Face directories --------------------------------------------------------------

SafetensorsDir::SafetensorsDir(const std::string& dir) : dir_(dir) {
  const fs::path root(dir);
  const fs::path index_path = root / "model.safetensors.index.json";
  const fs::path single_path = root / "model.safetensors";
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    if (!fs::exists(single_path, ec))
      fail("{}: no model.safetensors or model.safetensors.index.json; is this a Hugging Face model directory?", dir);
    files_.push_back(std::make_unique<SafetensorsReader>(single_path.string()));
    for (const auto& t : files_.back()->tensors()) owner_[t.name] = files_.back().get();
    return;
  }

  const std::string ip = index_path.string();
  std::ifstream in(ip, std::ios::binary);
  if (!in) fail("{}", system_error("cannot open", ip));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) fail("{}", system_error("cannot read", ip));
  const std::string bytes = text.str();
  json index;
  try {
    index = json::parse(bytes);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", ip, json_error_text(e, bytes));
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail("{}: expected an object with a 'weight_map' object (tensor name -> file)", ip);

  std::map<std::string, const SafetensorsReader*> opened;  // each shard once
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string()) fail("{}: weight_map['{}'] must be a file name, found {}", ip, name, json_kind(file));
    const std::string file_name = file.get<std::string>();
    auto it = opened.find(file_name);
    if (it == opened.end()) {
      const fs::path shard = root / file_name;
      if (!fs::exists(shard, ec))
        fail("{}: weight_map names '{}' (for '{}'), but {} does not exist", ip, file_name, name, shard.string());
      files_.push_back(std::make_unique<SafetensorsReader>(shard.string()));
      it = opened.emplace(file_name, files_.back().get()).first;
    }
    if (!it->second->find(name))
      fail("{}: weight_map puts '{}' in {}, but that file has no such tensor", ip, name, it->second->path());
    owner_[name] = it->second;
  }
}

const TensorInfo* SafetensorsDir::find(const std::string& name, const SafetensorsReader** file_out) const {
  auto it = owner_.find(name);
  if (it == owner_.end()) return nullptr;
  if (file_out) *file_out = it->second;
  return it->second->find(name);
}

std::vector<std::string> SafetensorsDir::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : owner_) out.push_back(name);
  return out;
}

std::string SafetensorsDir::describe_location(const std::string& name) const {
  auto it = owner_.find(name);
  return it == owner_.end() ? "not in " + dir_ : it->second->path();
}

// ---- floating-point conversion ---------------------------------------------------------------

float bf16_bits_to_f32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t f32_to_bf16_bits(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
  // Adding 0x7fff plus the lowest kept bit rounds to nearest, ties to even; overflow becomes inf.
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float f16_bits_to_f32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exp = (bits >> 10) & 0x1fu;
  const uint32_t mant = bits & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in fp32
    const float magnitude = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf, NaN
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_f16_bits(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u)  // inf, or NaN kept quiet with its top payload bits
    return sign | (abs > 0x7f800000u ? static_cast<uint16_t>(0x7e00u | ((abs >> 13) & 0x3ffu)) : 0x7c00u);
  const uint32_t e = abs >> 23;  // fp32 biased exponent
  if (e > 142) return sign | 0x7c00u;  // >= 2^16: beyond the largest f16
  if (e < 102) return sign;            // < 2^-25: rounds to zero
  uint32_t mant, shift;
  if (e < 113) {  // f16 subnormal: count units of 2^-24
    mant = (abs & 0x7fffffu) | 0x800000u;
    shift = 126 - e;
  } else {  // normal: rebias the exponent, keep 10 mantissa bits
    mant = ((e - 112) << 23) | (abs & 0x7fffffu);
    shift = 13;
  }
  uint32_t h = mant >> shift;
  const uint32_t rest = mant & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1u))) ++h;  // a carry may reach the exponent (or inf): correct
  return sign | static_cast<uint16_t>(h);
}

void convert_to_f32(DType src, const void* src_data, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src_data);
  switch (src) {
    case DType::F32:
      std::memcpy(dst, p, static_cast<size_t>(n) * 4);
      return;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        dst[i] = static_cast<float>(v);
      }
      return;
    case DType::BF16:
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        dst[i] = src == DType::BF16 ? bf16_bits_to_f32(b) : f16_bits_to_f32(b);
      }
      return;
    default:
      fail("cannot read dtype {} as floating point", dtype_name(src));
  }
}

void convert_f32_to(DType dst_type, const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  switch (dst_type) {
    case DType::F32:
      std::memcpy(p, src, static_cast<size_t>(n) * 4);
      return;
    case DType::BF16:
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t b = dst_type == DType::BF16 ? f32_to_bf16_bits(src[i]) : f32_to_f16_bits(src[i]);
        std::memcpy(p + 2 * i, &b, 2);
      }
      return;
    default:
      fail("cannot write floating point as dtype {}", dtype_name(dst_type));
  }
}

}  // namespace exatrain
