// Preparation: input text -> token shards + manifest, streaming and multi-threaded.
//
// A reader thread splits the inputs into documents (document_reader.h) and hands them out in
// chunks of about 256 KiB; encoder threads check UTF-8, parse JSONL, encode and append EOS; the
// calling thread writes the chunks strictly in input order. At most a fixed number of chunks
// are in flight, so memory does not grow with the input, and the output is byte-identical
// whatever the thread count. Problems in the input are reported for the earliest bad document,
// the same one on every run. Bad-input policies are in docs/data.md.
//
// Chat data (InputFormat::Chat, data/chat/chat_template.h): each line is one conversation,
// rendered with the EXAONE-4 template into one document with a loss mask (1 on the assistant's
// tokens). The template ends every turn with "[|endofturn|]\n"; a conversation's document ends
// at its last [|endofturn|], which must be the tokenizer's EOS: no EOS is appended.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "data/shards/document_reader.h"
#include "data/shards/manifest.h"

namespace exatrain {

enum class InvalidUtf8Policy { Replace, Skip, Error };
const char* invalid_utf8_policy_name(InvalidUtf8Policy policy);  // "replace" / "skip" / "error"

// The tokenizer as preparation sees it. `encode` is called from several threads at once.
struct TokenizerInfo {
  std::function<std::vector<uint32_t>(std::string_view)> encode;
  std::string sha256;  // the tokenizer's content hash, recorded in the manifest
  uint64_t vocab_size = 0;
  uint32_t eos_id = 0;
};

struct PrepareOptions {
  std::vector<std::string> inputs;
  InputFormat format = InputFormat::Text;
  std::string jsonl_field = "text";
  std::string output_dir;  // created; must be empty if it exists
  std::string name;
  std::string license;  // an SPDX license expression
  std::string source;
  uint64_t shard_tokens = uint64_t{1} << 26;
  int threads = 0;  // encoder threads; 0: one per core
  bool skip_bad = false;  // skip (and count) malformed JSONL records and oversized documents
  bool chat_keep_reasoning = false;  // chat: the template's skip_think = false
  InvalidUtf8Policy invalid_utf8 = InvalidUtf8Policy::Replace;
  uint64_t max_document_bytes = uint64_t{64} << 20;
  double progress_seconds = 2.0;  // a progress line this often; 0: none
};

// Writes OUTPUT/shard-*.bin, manifest.txtpb and manifest.pb; returns the manifest. On any
// error nothing is left in OUTPUT (and OUTPUT is removed if this call created it).
DatasetManifest prepare_dataset(const PrepareOptions& options, const TokenizerInfo& tokenizer);

}  // namespace exatrain
