#include "data/shards/document_reader.h"

#include <cerrno>
#include <cstring>

#include "trainer/core/error.h"

namespace exatrain {

namespace {

bool is_blank(const std::string& line) {
  for (char c : line)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\v' && c != '\f') return false;
  return true;
}

void append_capped(std::string& out, const char* data, size_t n, uint64_t max, bool& oversized) {
  if (out.size() + n > max) {
    oversized = true;
    n = out.size() < max ? max - out.size() : 0;
  }
  out.append(data, n);
}

}  // namespace

const char* input_format_name(InputFormat format) {
  switch (format) {
    case InputFormat::Text: return "text";
    case InputFormat::Lines: return "lines";
    case InputFormat::Jsonl: return "jsonl";
    case InputFormat::Chat: return "chat";
  }
  return "?";
}

DocumentReader::DocumentReader(std::string path, uint32_t file_index, InputFormat format, uint64_t max_document_bytes)
    : path_(std::move(path)),
      file_index_(file_index),
      format_(format),
      max_bytes_(max_document_bytes),
      file_(std::fopen(path_.c_str(), "rb"), &std::fclose),
      buffer_(1 << 20) {
  if (!file_) fail("input '{}': cannot open: {}", path_, std::strerror(errno));
}

bool DocumentReader::fill() {
  if (eof_) return false;
  const size_t n = std::fread(buffer_.data(), 1, buffer_.size(), file_.get());
  if (n < buffer_.size()) {
    if (std::ferror(file_.get())) fail("input '{}': read error: {}", path_, std::strerror(errno));
    eof_ = true;
  }
  hash_.update(buffer_.data(), n);
  bytes_read_ += n;
  pos_ = 0;
  end_ = n;
  return n > 0;
}

bool DocumentReader::read_line(std::string& line, bool& oversized) {
  line.clear();
  oversized = false;
  bool any = false;
  for (;;) {
    if (pos_ == end_ && !fill()) {
      if (any) ++line_number_;  // a last line without "\n"
      line_terminated_ = false;
      return any;
    }
    any = true;
    const char* start = buffer_.data() + pos_;
    const auto* nl = static_cast<const char*>(std::memchr(start, '\n', end_ - pos_));
    if (nl) {
      append_capped(line, start, static_cast<size_t>(nl - start), max_bytes_, oversized);
      pos_ += static_cast<size_t>(nl - start) + 1;
      ++line_number_;
      line_terminated_ = true;
      return true;
    }
    append_capped(line, start, end_ - pos_, max_bytes_, oversized);
    pos_ = end_;
  }
}

bool DocumentReader::next(RawDocument& doc) {
  doc.bytes.clear();
  doc.oversized = false;
  doc.file = file_index_;
  bool oversized = false;
  if (format_ != InputFormat::Text) {
    if (!read_line(line_, oversized)) return false;
    if (line_terminated_ && !line_.empty() && line_.back() == '\r') line_.pop_back();
    doc.bytes.swap(line_);
    doc.line = line_number_;
    doc.oversized = oversized;
    return true;
  }
  // Paragraphs: skip blank lines, then take lines up to the next blank line or the end.
  do {
    if (!read_line(line_, oversized)) return false;
  } while (is_blank(line_));
  doc.line = line_number_;
  for (;;) {
    doc.oversized = doc.oversized || oversized;
    // Hold back this line's "\r" of a "\r\n": it stays only if another line follows.
    const bool crlf = line_terminated_ && !line_.empty() && line_.back() == '\r';
    if (crlf) line_.pop_back();
    append_capped(doc.bytes, line_.data(), line_.size(), max_bytes_, doc.oversized);
    if (!read_line(line_, oversized) || is_blank(line_)) return true;
    append_capped(doc.bytes, crlf ? "\r\n" : "\n", crlf ? 2 : 1, max_bytes_, doc.oversized);
  }
}

}  // namespace exatrain
