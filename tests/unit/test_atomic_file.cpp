// trainer/core/atomic_file.h: the file appears complete or not at all, replaces an old one, and a
// failure leaves no temporary file and names the path and the system's reason.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "tests/unit/expect_error.h"
#include "tests/unit/scratch_dir.h"
#include "trainer/core/atomic_file.h"

namespace exatrain {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

TEST(AtomicFile, WritesPartsInOrderAndReplaces) {
  const ScratchDir scratch;
  const std::string path = (scratch.path / "out.bin").string();
  const std::string big(3 << 20, 'b');  // larger than the writer's buffer: written directly
  write_file_atomically(path, {bytes_of("head:"), bytes_of(""), bytes_of(big), bytes_of(":tail")});
  EXPECT_EQ(read_bytes(path), "head:" + big + ":tail");
  write_file_atomically(path, std::string_view("second"));
  EXPECT_EQ(read_bytes(path), "second");
  write_file_atomically(path, std::string_view(""));
  EXPECT_EQ(fs::file_size(path), 0u);
  EXPECT_EQ(names_in(scratch.path), std::vector<std::string>{"out.bin"});
}

TEST(AtomicFile, StreamingWriterOverwritesAHeaderAndShowsNothingBeforeCommit) {
  const ScratchDir scratch;
  const std::string path = (scratch.path / "shard.bin").string();
  AtomicFileWriter out(path);
  EXPECT_EQ(out.temp_path(), path + ".tmp." + std::to_string(::getpid()));
  EXPECT_TRUE(is_atomic_temp_name(fs::path(out.temp_path()).filename().string()));
  out.write(std::string_view("????"));
  for (int i = 0; i < 1000; ++i) out.write(std::string_view("0123456789"));
  out.write_at(0, bytes_of("HEAD"));
  EXPECT_EQ(out.size(), 4u + 10000u);
  expect_error([&] { out.write_at(10000, bytes_of("12345")); }, {path, "only 10004 written"});
  out.flush();
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(fs::file_size(out.temp_path()), 10004u);
  out.commit();
  EXPECT_FALSE(out.is_open());
  const std::string got = read_bytes(path);
  ASSERT_EQ(got.size(), 10004u);
  EXPECT_EQ(got.substr(0, 14), "HEAD0123456789");
  EXPECT_EQ(names_in(scratch.path), std::vector<std::string>{"shard.bin"});
}

TEST(AtomicFile, AbandonedWriterLeavesTheOldFileAndNoTemporary) {
  const ScratchDir scratch;
  const std::string path = (scratch.path / "keep.txt").string();
  write_file_atomically(path, std::string_view("old"));
  {
    AtomicFileWriter out(path);
    out.write(std::string_view("new, never committed"));
    out.flush();
  }  // destroyed: abandoned
  AtomicFileWriter moved_from(path);
  AtomicFileWriter moved = std::move(moved_from);
  moved.write(std::string_view("also never committed"));
  moved.abandon();
  moved.abandon();  // twice is harmless
  EXPECT_EQ(read_bytes(path), "old");
  EXPECT_EQ(names_in(scratch.path), std::vector<std::string>{"keep.txt"});
}

TEST(AtomicFile, FailuresNameThePathAndLeaveNoTemporary) {
  const ScratchDir scratch;
  // The directory does not exist.
  const std::string missing = (scratch.path / "no_such_dir" / "f.json").string();
  expect_error([&] { write_file_atomically(missing, std::string_view("x")); },
               {missing, "cannot create the temporary file", "No such file or directory"});
  // The "directory" is a regular file.
  write_file_atomically((scratch.path / "plain").string(), std::string_view("x"));
  const std::string under_file = (scratch.path / "plain" / "f.json").string();
  expect_error([&] { write_file_atomically(under_file, std::string_view("x")); }, {under_file, "Not a directory"});
  // The rename fails (the target is a non-empty directory): the temporary file goes too.
  const fs::path target = scratch.path / "target";
  fs::create_directories(target / "inside");
  expect_error([&] { write_file_atomically(target.string(), std::string_view("x")); },
               {target.string(), "cannot rename", "Is a directory"});
  EXPECT_TRUE(fs::is_directory(target / "inside"));
  EXPECT_EQ(names_in(scratch.path), (std::vector<std::string>{"plain", "target"}));
}

TEST(AtomicFile, FsyncDirectory) {
  const ScratchDir scratch;
  EXPECT_NO_THROW(fsync_directory(scratch.path.string()));
  const std::string missing = (scratch.path / "gone").string();
  expect_error([&] { fsync_directory(missing); }, {missing, "No such file or directory"});
}

TEST(AtomicFile, TemporaryNames) {
  EXPECT_TRUE(is_atomic_temp_name("shard-00001.bin.tmp.123"));
  EXPECT_TRUE(is_atomic_temp_name("manifest.pb.tmp.7"));
  EXPECT_FALSE(is_atomic_temp_name("shard-00001.bin"));
  EXPECT_FALSE(is_atomic_temp_name("shard-00001.bin.tmp"));
  EXPECT_FALSE(is_atomic_temp_name("a.tmp.12x"));
  EXPECT_FALSE(is_atomic_temp_name(".tmp.12"));
}

}  // namespace
}  // namespace exatrain
