// Helpers for tests and benchmarks of datasets (header-only, not part of the library API):
// a temporary directory that removes itself, file writing, and byte-level "tokenizers" that
// make preparation testable without a real tokenizer.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "data/shards/prepare.h"

namespace exatrain::testing {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/exatrain-data-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// ids = bytes (0..255), EOS = 256, vocabulary 257: uint16 shards.
inline TokenizerInfo byte_tokenizer() {
  TokenizerInfo t;
  t.encode = [](std::string_view text) {
    std::vector<uint32_t> ids;
    ids.reserve(text.size());
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  };
  t.sha256 = std::string(64, 'b');
  t.vocab_size = 257;
  t.eos_id = 256;
  return t;
}

// Byte b -> id b * 300 + 3 (0xef -> 71703), EOS = 1, vocabulary 80000: uint32 shards.
inline uint32_t wide_id(unsigned char c) { return uint32_t{c} * 300 + 3; }
inline TokenizerInfo wide_byte_tokenizer() {
  TokenizerInfo t;
  t.encode = [](std::string_view text) {
    std::vector<uint32_t> ids;
    for (unsigned char c : text) ids.push_back(wide_id(c));
    return ids;
  };
  t.sha256 = std::string(64, 'w');
  t.vocab_size = 80000;
  t.eos_id = 1;
  return t;
}

// Bytes as ids 0..255 and the EXAONE-4 chat special tokens as single ids: [|system|]=256,
// [|user|]=257, [|assistant|]=258, [|tool|]=259, [|endofturn|]=260 (EOS), <think>=261,
// </think>=262; vocabulary 263. Enough to prepare chat data without a real tokenizer.
inline const std::vector<std::string>& chat_byte_specials() {
  static const std::vector<std::string> specials = {"[|system|]", "[|user|]", "[|assistant|]", "[|tool|]",
                                                    "[|endofturn|]", "<think>", "</think>"};
  return specials;
}
inline std::vector<uint32_t> chat_byte_encode(std::string_view text) {
  std::vector<uint32_t> ids;
  for (size_t i = 0; i < text.size();) {
    bool special = false;
    for (size_t s = 0; s < chat_byte_specials().size() && !special; ++s)
      if (text.substr(i).starts_with(chat_byte_specials()[s])) {
        ids.push_back(static_cast<uint32_t>(256 + s));
        i += chat_byte_specials()[s].size();
        special = true;
      }
    if (!special) ids.push_back(static_cast<unsigned char>(text[i++]));
  }
  return ids;
}
inline TokenizerInfo chat_byte_tokenizer() {
  TokenizerInfo t;
  t.encode = chat_byte_encode;
  t.sha256 = std::string(64, 'c');
  t.vocab_size = 263;
  t.eos_id = 260;
  return t;
}

inline PrepareOptions prepare_options(std::vector<std::string> inputs, std::string output, InputFormat format) {
  PrepareOptions o;
  o.inputs = std::move(inputs);
  o.output_dir = std::move(output);
  o.format = format;
  o.name = "test";
  o.license = "CC0-1.0";
  o.source = "unit test";
  o.progress_seconds = 0;
  return o;
}

}  // namespace exatrain::testing
