// `exatrain data verify DIR`: checks a prepared dataset against its manifest, file by file.
//
// manifest.pb: readable, right magic and version, internally consistent (totals, dtype for the
// vocabulary, shard sizes); manifest.txtpb says the same; the tokenizer hash is the expected
// one (when one is given). Every shard: present, its sha256 and size as recorded, a valid
// header and document index, counts as recorded, the loss mask as the manifest says (present or
// not, its count of 1 bits, no stray bits), every id inside the vocabulary, and EOS
// before every document start and at the very end. No stray shard or temporary file.
// Shards are checked in parallel; the problems come back in a fixed order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/shards/manifest.h"

namespace exatrain {

struct VerifyReport {
  DatasetManifest manifest;
  uint64_t shards_checked = 0;
  uint64_t bytes_hashed = 0;
  double seconds = 0;
  std::vector<std::string> problems;  // each names the file and what is wrong; empty: all good
  bool ok() const { return problems.empty(); }
};

// Problems in the data are collected, not thrown; `threads` 0: one per core.
VerifyReport verify_dataset(const std::string& dir, const std::string& expected_tokenizer_sha256 = "",
                            int threads = 0);

// Throws one Error naming the dataset and its problems (the first few) if there are any.
void require_verified(const std::string& dir, const VerifyReport& report);

}  // namespace exatrain
