#include "trainer/core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "trainer/core/error.h"

namespace exatrain {

namespace {

constexpr size_t kBufferBytes = size_t{1} << 20;  // larger writes go straight to the file

std::string parent_dir(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : path_(std::move(other.path_)),
      temp_path_(std::move(other.temp_path_)),
      fd_(std::exchange(other.fd_, -1)),
      buffer_(std::move(other.buffer_)),
      size_(std::exchange(other.size_, 0)) {}

AtomicFileWriter& AtomicFileWriter::operator=(AtomicFileWriter&& other) noexcept {
  if (this != &other) {
    abandon();
    path_ = std::move(other.path_);
    temp_path_ = std::move(other.temp_path_);
    fd_ = std::exchange(other.fd_, -1);
    buffer_ = std::move(other.buffer_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void AtomicFileWriter::open(const std::string& path) {
  if (is_open()) fail("{}: cannot start writing it while '{}' is still open", path, path_);
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail("{}: cannot create the temporary file {}: {}", path, temp, std::strerror(errno));
  path_ = path;
  temp_path_ = temp;
  fd_ = fd;
  buffer_.clear();
  size_ = 0;
}

void AtomicFileWriter::abandon_and_fail(const std::string& what, int err) {
  const std::string path = path_;
  abandon();
  fail("{}: {}: {}", path, what, std::strerror(err));
}

void AtomicFileWriter::write_fully(const uint8_t* data, size_t size, uint64_t offset) {
  while (size > 0) {
    const ssize_t n = ::pwrite(fd_, data, std::min(size, size_t{1} << 30), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) abandon_and_fail("cannot write " + temp_path_, n < 0 ? errno : EIO);
    data += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

void AtomicFileWriter::write(std::span<const uint8_t> bytes) {
  if (!is_open()) fail("{}: write to a file that is not open", path_);
  if (buffer_.size() + bytes.size() > kBufferBytes) flush();
  if (bytes.size() >= kBufferBytes)
    write_fully(bytes.data(), bytes.size(), size_);
  else
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  size_ += bytes.size();
}

void AtomicFileWriter::write_at(uint64_t offset, std::span<const uint8_t> bytes) {
  if (!is_open()) fail("{}: write to a file that is not open", path_);
  if (offset > size_ || bytes.size() > size_ - offset)
    fail("{}: cannot overwrite bytes {}..{}: only {} written", path_, offset, offset + bytes.size(), size_);
  flush();
  write_fully(bytes.data(), bytes.size(), offset);
}

void AtomicFileWriter::flush() {
  if (!is_open() || buffer_.empty()) return;
  write_fully(buffer_.data(), buffer_.size(), size_ - buffer_.size());
  buffer_.clear();
}

void AtomicFileWriter::commit() {
  if (!is_open()) fail("{}: commit of a file that is not open", path_);
  flush();
  // fsync before rename, so that a crash leaves either the old file or the complete new one.
  if (::fsync(fd_) != 0) abandon_and_fail("cannot flush " + temp_path_ + " to disk", errno);
  const int closed = ::close(std::exchange(fd_, -1));
  if (closed != 0) {
    const int err = errno;
    fd_ = -1;
    abandon_and_fail("cannot close " + temp_path_, err);
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) abandon_and_fail("cannot rename " + temp_path_ + " to it", errno);
  temp_path_.clear();
  buffer_ = {};
  fsync_directory(parent_dir(path_));
}

void AtomicFileWriter::abandon() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  temp_path_.clear();
  buffer_ = {};
}

void write_file_atomically(const std::string& path, const std::vector<std::span<const uint8_t>>& parts) {
  AtomicFileWriter out(path);
  for (auto part : parts) out.write(part);
  out.commit();
}

void write_file_atomically(const std::string& path, std::string_view text) {
  AtomicFileWriter out(path);
  out.write(text);
  out.commit();
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("directory '{}': cannot open it to fsync: {}", dir, std::strerror(errno));
  int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems (e.g. several FUSE ones) cannot fsync a directory: nothing more to make durable.
  if (rc != 0 && err != EINVAL && err != ENOTSUP) fail("directory '{}': cannot fsync: {}", dir, std::strerror(err));
}

bool is_atomic_temp_name(std::string_view file_name) {
  const size_t at = file_name.rfind(".tmp.");
  if (at == std::string_view::npos || at == 0) return false;
  const std::string_view pid = file_name.substr(at + 5);
  return !pid.empty() && std::all_of(pid.begin(), pid.end(), [](char c) { return c >= '0' && c <= '9'; });
}

LineAppender::~LineAppender() {
  if (fd_ >= 0) ::close(fd_);
}

void LineAppender::open(const std::string& path, bool truncate) {
  if (fd_ >= 0) ::close(fd_);
  path_ = path;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
  if (fd_ < 0) fail("cannot write '{}': {}", path, std::strerror(errno));
}

std::string LineAppender::append(std::string_view line) {
  if (fd_ < 0) return "cannot write '" + path_ + "': not open";
  std::string text(line);
  text += '\n';
  const off_t before = ::lseek(fd_, 0, SEEK_END);
  size_t done = 0;
  int err = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : ENOSPC;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (!err) return "";
  if (done > 0 && before >= 0) {
    // Cut the partial line; if even that fails, readers drop a line that does not parse.
    [[maybe_unused]] const int cut = ::ftruncate(fd_, before);
  }
  return "cannot write '" + path_ + "': " + std::strerror(err);
}

}  // namespace exatrain
