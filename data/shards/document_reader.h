// Splits one input file into raw documents, streaming (a 1 MiB read buffer and one document
// in memory), and hashes the file's bytes on the way.
//
//   text   a document is a paragraph: a run of lines that are not blank, the runs separated
//          by blank lines (lines of only spaces, tabs, CR, VT, FF). Its bytes are exactly the
//          file's, from its first line's first byte to its last line's end, without that last
//          line's terminator ("\n" or "\r\n"); the terminators between its lines stay.
//   lines  a document is one line without its terminator; a blank line is an empty document.
//   jsonl  a record is one line without its terminator (parsed later, by the encoder threads).
//   chat   as jsonl: one conversation {"messages": [...]} per line.
//
// A document longer than `max_document_bytes` is cut off at that length and flagged
// `oversized` (the caller reports it): one pathological line cannot exhaust memory.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "trainer/core/sha256.h"

namespace exatrain {

enum class InputFormat { Text, Lines, Jsonl, Chat };
const char* input_format_name(InputFormat format);  // "text" / "lines" / "jsonl" / "chat"

struct RawDocument {
  std::string bytes;
  uint64_t line = 0;  // 1-based line of its first byte
  uint32_t file = 0;  // index of the input file
  bool oversized = false;
};

class DocumentReader {
 public:
  DocumentReader(std::string path, uint32_t file_index, InputFormat format, uint64_t max_document_bytes);

  // The next document (or record); false at the end of the file.
  bool next(RawDocument& doc);

  uint64_t bytes_read() const { return bytes_read_; }
  // Once next() has returned false: the sha256 of the whole file.
  std::string sha256_hex() { return hash_.hex_digest(); }

 private:
  // The next line without "\n" into `line` (at most max bytes kept); false at the end.
  bool read_line(std::string& line, bool& oversized);
  bool fill();

  std::string path_;
  uint32_t file_index_;
  InputFormat format_;
  uint64_t max_bytes_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_;
  std::vector<char> buffer_;
  size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
  uint64_t line_number_ = 0;  // of the last line read
  bool line_terminated_ = false;  // it ended with "\n" (not at the end of the file)
  uint64_t bytes_read_ = 0;
  exatrain::Sha256 hash_;
  std::string line_;
};

}  // namespace exatrain
