// Writing a file so that its final name holds either the old content or the complete new one,
// also across a crash: the bytes go to PATH.tmp.<pid> (the pid keeps two writers of one path
// apart), which is fsynced, renamed over PATH, and the directory fsynced so the rename lasts.
// The one implementation of this in exatrain; no torch here.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace exatrain {

// Streams a file to its temporary name; commit() makes it PATH. Destroyed or abandon()ed before
// commit(), it removes the temporary file. Errors name PATH and the system's reason.
class AtomicFileWriter {
 public:
  AtomicFileWriter() = default;
  explicit AtomicFileWriter(const std::string& path) { open(path); }
  ~AtomicFileWriter() { abandon(); }
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Creates PATH.tmp.<pid> (replacing a stale one); the writer must not be open.
  void open(const std::string& path);
  // Appends; small writes are buffered.
  void write(std::span<const uint8_t> bytes);
  void write(const void* data, size_t size) { write({static_cast<const uint8_t*>(data), size}); }
  void write(std::string_view text) { write(text.data(), text.size()); }
  // Overwrites bytes already written, from `offset` (e.g. a header whose counts are known last).
  void write_at(uint64_t offset, std::span<const uint8_t> bytes);
  // Hands the buffered bytes to the temporary file (so that it can be read back before commit()).
  void flush();
  // Flushes, fsyncs, closes, renames over PATH and fsyncs the directory. On failure the temporary
  // file is removed before the Error is thrown.
  void commit();
  // Closes and removes the temporary file; does nothing when not open. Never throws.
  void abandon() noexcept;

  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  uint64_t size() const { return size_; }  // bytes written so far

 private:
  [[noreturn]] void abandon_and_fail(const std::string& what, int err);
  void write_fully(const uint8_t* data, size_t size, uint64_t offset);

  std::string path_, temp_path_;
  int fd_ = -1;
  std::vector<uint8_t> buffer_;  // bytes after the file's current end, not yet written
  uint64_t size_ = 0;
};

// Writes parts to PATH.tmp.<pid>, fsyncs it, renames over PATH, fsyncs the directory. On failure
// the temp file is removed and an Error names PATH and the system's reason.
void write_file_atomically(const std::string& path, const std::vector<std::span<const uint8_t>>& parts);
void write_file_atomically(const std::string& path, std::string_view text);

// A log of whole lines (metrics.jsonl, checkpoints.jsonl): each append() writes the line with
// one write(2) and, if the disk is full or the write fails part-way, cuts the file back to where
// it was, so readers never see half a line. Returns "" or the error ("cannot write 'PATH': No
// space left on device"); the caller decides whether that stops the run (checkpoint.on_error).
class LineAppender {
 public:
  LineAppender() = default;
  ~LineAppender();
  LineAppender(const LineAppender&) = delete;
  LineAppender& operator=(const LineAppender&) = delete;
  // Opens PATH for appending (creating it; `truncate` empties it first). Throws an Error.
  void open(const std::string& path, bool truncate);
  std::string append(std::string_view line);  // `line` without its newline
  bool is_open() const { return fd_ >= 0; }

 private:
  std::string path_;
  int fd_ = -1;
};

// fsyncs a directory (so a rename inside it is durable); Error names it.
void fsync_directory(const std::string& dir);

// True for a name AtomicFileWriter gives its temporary files ("NAME.tmp.<digits>"): what a
// writer that did not finish (a crash, a kill) leaves behind.
bool is_atomic_temp_name(std::string_view file_name);

}  // namespace exatrain
