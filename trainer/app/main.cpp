// exatrain: one binary, one subcommand per file (cmd_*.cpp). Errors are caught here and
// printed as one line: "exatrain: error: <what and where>".
#include <CLI/CLI.hpp>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>

#include "trainer/app/commands.h"
#include "trainer/core/config.h"
#include "trainer/core/error.h"
#include "trainer/core/logging.h"

namespace exatrain {

std::vector<RegisteredCommand>& registered_commands() {
  static std::vector<RegisteredCommand> commands;
  return commands;
}

CommandRegistration::CommandRegistration(std::string name, int order, Register fn) {
  registered_commands().push_back(RegisteredCommand{std::move(name), order, fn});
}

void set_compute_threads(int threads) {
  if (threads > 0) at::set_num_threads(threads);
}

}  // namespace exatrain

namespace {

int run(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "exatrain: error: %s (run with --help for usage)\n", e.what());
    return 1;
  } catch (const exatrain::ExitStatus& e) {
    return e.code;
  } catch (const exatrain::Error& e) {
    std::fprintf(stderr, "exatrain: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {  // LibTorch: first line only (no C++ backtrace)
    std::string what = e.what_without_backtrace();
    std::fprintf(stderr, "exatrain: error: torch: %s\n", what.substr(0, what.find('\n')).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exatrain: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}

// Output that never arrived is a failure: `exatrain config show > /dev/full` must not exit 0.
// Commands write through stdio (std::cout is synchronised with it), so one flush and the stream's
// error flag see every failed write. errno is read right after the flush: when an earlier write
// failed, the flush of what is still buffered fails again with the same cause.
bool stdout_written() {
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  const int err = errno;
  if (flushed && !std::ferror(stdout)) return true;
  std::fprintf(stderr, "exatrain: error: cannot write to standard output: %s\n",
               err != 0 ? std::strerror(err) : "an earlier write failed");
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  // protobuf prints "[libprotobuf ERROR ...]" on stderr before our own one-line message (e.g. a
  // string field of a corrupt manifest.pb with invalid UTF-8). Debian 12's protobuf (3.21, before
  // abseil logging) takes a process-wide handler; set once, before any thread starts. Its
  // messages stay available at log.level debug.
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int, const std::string& message) {
    exatrain::log_message(exatrain::LogLevel::Debug, "protobuf: " + message);
  });
  CLI::App app{"exatrain: train, fine-tune and export EXAONE-4 transformers"};
  app.require_subcommand(1);
  app.set_version_flag("--version",
                       fmt::format("exatrain {} (commit {})", exatrain::version_string(), exatrain::git_commit()));
  auto commands = exatrain::registered_commands();
  std::sort(commands.begin(), commands.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  for (const auto& c : commands) c.fn(app);
  const int rc = run(app, argc, argv);
  if (rc != 0) {  // the command has said why it failed (possibly that it could not write)
    std::fflush(stdout);
    return rc;
  }
  return stdout_written() ? 0 : 1;
}
