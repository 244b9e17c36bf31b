// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
// mapping each tensor name to {dtype, shape, data_offsets}, then the raw little-endian data.
// Reading memory-maps the file and checks every header entry before anything is trusted;
// writing goes through a temporary file and an atomic rename (atomic_file.h). No torch here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace exatrain {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

// The safetensors spelling: "F32", "BF16", "BOOL", ...
const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);
// Throws naming `name` and `context` (e.g. "model.safetensors: tensor 'x'") when unknown.
DType parse_dtype(const std::string& name, const std::string& context);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range, relative to the start of the data section
  int64_t numel() const;
};

class SafetensorsReader {
 public:
  // Maps the file read-only and validates the whole header; any problem is an Error naming the file.
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(SafetensorsReader&& other) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&& other) noexcept;
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const TensorInfo* find(const std::string& name) const;              // nullptr when absent
  // The tensor's bytes inside the mapping (valid while this reader lives). `info` must come from
  // this reader. The pointer may be unaligned for the dtype: copy out with memcpy.
  const uint8_t* data(const TensorInfo& info) const { return data_ + info.begin; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  void unmap();

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // numel * dtype_size contiguous little-endian bytes
};

// Writes the tensors in the order given (header padded with spaces to a multiple of 8 bytes, as
// the reference implementation does) through write_file_atomically (trainer/core/atomic_file.h).
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// A Hugging Face save_pretrained directory: model.safetensors, or the shards listed by
// model.safetensors.index.json (each shard opened once).
class SafetensorsDir {
 public:
  explicit SafetensorsDir(const std::string& dir);

  // nullptr when absent; otherwise *file_out (if given) is the file holding the tensor.
  const TensorInfo* find(const std::string& name, const SafetensorsReader** file_out = nullptr) const;
  std::vector<std::string> names() const;  // sorted
  // The file holding `name` (for messages), or "not in DIR".
  std::string describe_location(const std::string& name) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsReader>> files_;
  std::map<std::string, const SafetensorsReader*> owner_;  // tensor name -> file
};

// Reads n values of a floating-point dtype (F32, F16, BF16, F64) as fp32.
void convert_to_f32(DType src, const void* src_data, float* dst, int64_t n);
// Writes n fp32 values as F32, BF16 or F16, rounding to nearest even; NaN stays NaN.
void convert_f32_to(DType dst_type, const float* src, void* dst, int64_t n);

// Single-value conversions (bit patterns), used by the bulk functions above.
uint16_t f32_to_bf16_bits(float value);
uint16_t f32_to_f16_bits(float value);
float bf16_bits_to_f32(uint16_t bits);
float f16_bits_to_f32(uint16_t bits);

}  // namespace exatrain
