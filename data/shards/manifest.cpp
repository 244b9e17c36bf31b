#include "data/shards/manifest.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "manifest.pb.h"  // generated in the build tree
#include "trainer/core/atomic_file.h"
#include "trainer/core/error.h"

namespace exatrain {

namespace fs = std::filesystem;

namespace {

proto::DatasetManifest to_proto(const DatasetManifest& m) {
  proto::DatasetManifest p;
  p.set_magic(kManifestMagic);
  p.set_format_version(m.format_version);
  p.set_name(m.name);
  p.set_license(m.license);
  p.set_source(m.source);
  p.set_created_by(m.created_by);
  p.set_tokenizer_sha256(m.tokenizer_sha256);
  p.set_vocab_size(m.vocab_size);
  p.set_eos_id(m.eos_id);
  p.set_dtype(m.dtype == TokenDtype::UInt16 ? proto::UINT16 : proto::UINT32);
  p.set_shard_format_version(m.shard_format_version);
  p.set_shard_tokens(m.shard_tokens);
  p.set_input_format(m.input_format);
  p.set_jsonl_field(m.jsonl_field);
  p.set_invalid_utf8_policy(m.invalid_utf8_policy);
  p.set_max_document_bytes(m.max_document_bytes);
  for (const auto& s : m.shards) {
    auto* e = p.add_shards();
    e->set_file(s.file);
    e->set_sha256(s.sha256);
    e->set_tokens(s.tokens);
    e->set_documents(s.documents);
    e->set_bytes(s.bytes);
    e->set_loss_mask_tokens(s.loss_mask_tokens);
  }
  for (const auto& in : m.inputs) {
    auto* e = p.add_inputs();
    e->set_name(in.name);
    e->set_sha256(in.sha256);
    e->set_bytes(in.bytes);
    e->set_documents(in.documents);
  }
  p.set_total_tokens(m.total_tokens);
  p.set_total_documents(m.total_documents);
  p.set_input_bytes(m.input_bytes);
  p.set_skipped_empty_documents(m.skipped_empty_documents);
  p.set_invalid_utf8_documents(m.invalid_utf8_documents);
  p.set_skipped_bad_records(m.skipped_bad_records);
  p.set_has_loss_mask(m.has_loss_mask);
  p.set_loss_mask_tokens(m.loss_mask_tokens);
  p.set_chat_template(m.chat_template);
  p.set_chat_keep_reasoning(m.chat_keep_reasoning);
  return p;
}

DatasetManifest from_proto(const proto::DatasetManifest& p, const std::string& file) {
  if (p.magic() != kManifestMagic)
    fail("manifest '{}': not an exatrain dataset manifest (magic \"{}\", expected \"{}\")", file, p.magic(),
         kManifestMagic);
  if (p.format_version() != kManifestFormatVersion)
    fail("manifest '{}': format version {}, this exatrain reads version {}", file, p.format_version(),
         kManifestFormatVersion);
  DatasetManifest m;
  m.format_version = p.format_version();
  m.name = p.name();
  m.license = p.license();
  m.source = p.source();
  m.created_by = p.created_by();
  m.tokenizer_sha256 = p.tokenizer_sha256();
  m.vocab_size = p.vocab_size();
  m.eos_id = p.eos_id();
  if (p.dtype() == proto::UINT16)
    m.dtype = TokenDtype::UInt16;
  else if (p.dtype() == proto::UINT32)
    m.dtype = TokenDtype::UInt32;
  else
    fail("manifest '{}': token dtype {} is not uint16 (2) or uint32 (4)", file, static_cast<int>(p.dtype()));
  m.shard_format_version = p.shard_format_version();
  m.shard_tokens = p.shard_tokens();
  m.input_format = p.input_format();
  m.jsonl_field = p.jsonl_field();
  m.invalid_utf8_policy = p.invalid_utf8_policy();
  m.max_document_bytes = p.max_document_bytes();
  for (const auto& e : p.shards())
    m.shards.push_back(ManifestShard{e.file(), e.sha256(), e.tokens(), e.documents(), e.bytes(), e.loss_mask_tokens()});
  for (const auto& e : p.inputs()) m.inputs.push_back(ManifestInput{e.name(), e.sha256(), e.bytes(), e.documents()});
  m.total_tokens = p.total_tokens();
  m.total_documents = p.total_documents();
  m.input_bytes = p.input_bytes();
  m.skipped_empty_documents = p.skipped_empty_documents();
  m.invalid_utf8_documents = p.invalid_utf8_documents();
  m.skipped_bad_records = p.skipped_bad_records();
  m.has_loss_mask = p.has_loss_mask();
  m.loss_mask_tokens = p.loss_mask_tokens();
  m.chat_template = p.chat_template();
  m.chat_keep_reasoning = p.chat_keep_reasoning();
  return m;
}

std::string read_file_or_fail(const fs::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{} '{}': cannot read: {}", what, path.string(), std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Collects text-format parse errors instead of letting protobuf print them to stderr.
class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    if (first.empty()) first = fmt::format("line {}, column {}: {}", line + 1, column + 1, message);
  }
  std::string first;
};

}  // namespace

std::string manifest_to_text(const DatasetManifest& manifest) {
  std::string body;
  if (!google::protobuf::TextFormat::PrintToString(to_proto(manifest), &body))
    fail("manifest: cannot render the text format");
  return "# proto-file: data/shards/manifest.proto\n"
         "# proto-message: exatrain.proto.DatasetManifest\n"
         "# A readable copy of manifest.pb, which is authoritative; `exatrain data verify` checks they agree.\n" +
         body;
}

void write_manifest(const std::string& dir, const DatasetManifest& manifest) {
  std::string binary;
  if (!to_proto(manifest).SerializeToString(&binary)) fail("manifest for '{}': cannot serialize", dir);
  write_file_atomically((fs::path(dir) / kManifestTextFile).string(), manifest_to_text(manifest));
  // last: its presence marks a finished dataset
  write_file_atomically((fs::path(dir) / kManifestFile).string(), binary);
}

DatasetManifest read_manifest(const std::string& dir) {
  const fs::path path = fs::path(dir) / kManifestFile;
  if (!fs::exists(path))
    fail("dataset '{}': no {} (not a prepared dataset, or preparation did not finish)", dir, kManifestFile);
  const std::string bytes = read_file_or_fail(path, "manifest");
  proto::DatasetManifest p;
  if (!p.ParseFromString(bytes))
    fail("manifest '{}': not a valid Protocol Buffers message ({} bytes; truncated or corrupt?)", path.string(),
         bytes.size());
  return from_proto(p, path.string());
}

DatasetManifest read_manifest_text(const std::string& dir) {
  const fs::path path = fs::path(dir) / kManifestTextFile;
  const std::string text = read_file_or_fail(path, "manifest");
  proto::DatasetManifest p;
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &p)) fail("manifest '{}': {}", path.string(), errors.first);
  return from_proto(p, path.string());
}

}  // namespace exatrain
