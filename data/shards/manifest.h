// A dataset's manifest as a plain struct, and its two files: manifest.pb (binary Protocol
// Buffers, authoritative) and manifest.txtpb (the same message in text format). The schema is
// manifest.proto; the generated code stays inside manifest.cpp so that this header compiles
// next to LibTorch's own protobuf headers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/shards/shard_format.h"

namespace exatrain {

inline constexpr const char* kManifestMagic = "exatrain.dataset";
inline constexpr uint32_t kManifestFormatVersion = 1;
inline constexpr const char* kManifestFile = "manifest.pb";
inline constexpr const char* kManifestTextFile = "manifest.txtpb";

struct ManifestShard {
  std::string file;
  std::string sha256;
  uint64_t tokens = 0;
  uint64_t documents = 0;  // documents that start in this shard
  uint64_t bytes = 0;
  uint64_t loss_mask_tokens = 0;  // mask bits that are 1 (0 without a mask)
  bool operator==(const ManifestShard&) const = default;
};

struct ManifestInput {
  std::string name;
  std::string sha256;
  uint64_t bytes = 0;
  uint64_t documents = 0;
  bool operator==(const ManifestInput&) const = default;
};

struct DatasetManifest {
  uint32_t format_version = kManifestFormatVersion;
  std::string name;
  std::string license;
  std::string source;
  std::string created_by;
  std::string tokenizer_sha256;
  uint64_t vocab_size = 0;
  uint32_t eos_id = 0;
  TokenDtype dtype = TokenDtype::UInt16;
  uint32_t shard_format_version = kShardFormatVersion;
  uint64_t shard_tokens = 0;
  std::string input_format;
  std::string jsonl_field;
  std::string invalid_utf8_policy;
  uint64_t max_document_bytes = 0;
  std::vector<ManifestShard> shards;
  std::vector<ManifestInput> inputs;
  uint64_t total_tokens = 0;
  uint64_t total_documents = 0;
  uint64_t input_bytes = 0;
  uint64_t skipped_empty_documents = 0;
  uint64_t invalid_utf8_documents = 0;
  uint64_t skipped_bad_records = 0;
  bool has_loss_mask = false;
  uint64_t loss_mask_tokens = 0;
  std::string chat_template;  // "exaone4" for --format chat
  bool chat_keep_reasoning = false;
  bool operator==(const DatasetManifest&) const = default;
};

// Writes DIR/manifest.txtpb, then DIR/manifest.pb (each via a temporary file and a rename).
void write_manifest(const std::string& dir, const DatasetManifest& manifest);
// Reads DIR/manifest.pb; checks the magic and the version. Errors name the file.
DatasetManifest read_manifest(const std::string& dir);
// Reads DIR/manifest.txtpb (for verify, which checks it says the same as manifest.pb).
DatasetManifest read_manifest_text(const std::string& dir);
// The text-format rendering (what manifest.txtpb holds).
std::string manifest_to_text(const DatasetManifest& manifest);

}  // namespace exatrain
