#include "trainer/train/data_source.h"

#include <ATen/ATen.h>

#include <fstream>
#include <random>
#include <sstream>

#include "trainer/core/error.h"

namespace exatrain {

TokenFileSource::TokenFileSource(const std::string& path, DataFormat format, int64_t vocab_size, int64_t window)
    : path_(path), window_(window) {
  if (path.empty()) fail("data.path is not set: name a text file (data.format: text) or a uint32 token file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read data file '{}': {}", path, std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (format == DataFormat::Text) {
    if (vocab_size < 256) fail("data file '{}' is text (byte ids 0-255) but model.vocab_size is {}", path, vocab_size);
    tokens_.reserve(bytes.size());
    for (unsigned char c : bytes) tokens_.push_back(c);
  } else {
    if (bytes.size() % 4 != 0)
      fail("token file '{}' has {} bytes, not a multiple of 4 (uint32 ids); is it truncated, or text (data.format: text)?",
           path, bytes.size());
    tokens_.resize(bytes.size() / 4);
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const auto* b = reinterpret_cast<const unsigned char*>(bytes.data() + 4 * i);
      const uint32_t id = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
      if (id >= static_cast<uint64_t>(vocab_size))
        fail("token file '{}': id {} at token {} (byte offset {}) is not below model.vocab_size ({})", path, id, i,
             4 * i, vocab_size);
      tokens_[i] = static_cast<int32_t>(id);
    }
  }
  if (size() < window)
    fail("data file '{}' holds {} tokens, fewer than one training window of {} (train.seq_len + 1)", path, size(), window);
}

at::Tensor TokenFileSource::batch(uint64_t seed, uint64_t index, int64_t count) const {
  // A generator per draw, seeded from (seed, index): draws are independent of order.
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(index),
                    static_cast<uint32_t>(index >> 32)};
  std::mt19937_64 rng(seq);
  std::uniform_int_distribution<int64_t> offset(0, size() - window_);
  at::Tensor out = at::empty({count, window_}, at::kLong);
  auto* dst = out.data_ptr<int64_t>();
  for (int64_t r = 0; r < count; ++r) {
    const int64_t start = offset(rng);
    for (int64_t t = 0; t < window_; ++t) dst[r * window_ + t] = tokens_[static_cast<size_t>(start + t)];
  }
  return out;
}

at::Tensor read_token_lines(const std::string& path, int64_t vocab_size) {
  std::ifstream in(path);
  if (!in) fail("cannot read token file '{}': {}", path, std::strerror(errno));
  std::vector<std::vector<int64_t>> rows;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::vector<int64_t> row;
    std::istringstream ss(line);
    for (std::string word; ss >> word;) {
      char* end = nullptr;
      errno = 0;
      long long id = std::strtoll(word.c_str(), &end, 10);
      if (*end != '\0' || errno == ERANGE || id < 0)
        fail("{}:{}: '{}' is not a token id (expected space-separated non-negative integers)", path, line_no, word);
      if (id >= vocab_size)
        fail("{}:{}: token id {} is not below the vocabulary size ({})", path, line_no, id, vocab_size);
      row.push_back(id);
    }
    if (!rows.empty() && row.size() != rows.front().size())
      fail("{}:{}: line has {} tokens but line 1 has {}; all lines must have the same length", path, line_no,
           row.size(), rows.front().size());
    rows.push_back(std::move(row));
  }
  if (rows.empty()) fail("token file '{}' has no lines of token ids", path);
  const int64_t n = static_cast<int64_t>(rows.size()), t = static_cast<int64_t>(rows.front().size());
  at::Tensor out = at::empty({n, t}, at::kLong);
  for (int64_t i = 0; i < n; ++i) std::copy(rows[i].begin(), rows[i].end(), out.data_ptr<int64_t>() + i * t);
  return out;
}

std::vector<int64_t> text_to_byte_ids(const std::string& text) {
  std::vector<int64_t> ids;
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

std::string byte_ids_to_text(const std::vector<int64_t>& ids) {
  std::string out;
  for (int64_t id : ids)
    if (id >= 0 && id < 256) out.push_back(static_cast<char>(id));
  return out;
}

}  // namespace exatrain
