// exatrain: one binary, one subcommand per file (cmd_*.cpp). Errors are caught here and
// printed as one line: "exatrain: error: <what and where>".
#include <CLI/CLI.hpp>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <exception>

#include "trainer/app/commands.h"
#include "trainer/core/config.h"
#include "trainer/core/error.h"

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

int main(int argc, char** argv) {
  CLI::App app{"exatrain: train, fine-tune and export EXAONE-4 transformers"};
  app.require_subcommand(1);
  app.set_version_flag("--version",
                       fmt::format("exatrain {} (commit {})", exatrain::version_string(), exatrain::git_commit()));
  auto commands = exatrain::registered_commands();
  std::sort(commands.begin(), commands.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  for (const auto& c : commands) c.fn(app);
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
