// Errors that tell the user what to do. Everything exatrain rejects is an exatrain::Error;
// the CLI catches it at the top, prints one line and exits non-zero.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace exatrain {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Ends a command with exit status `code` after it has reported why itself (e.g. a run that
// stopped on a signal after saving: kExitRequeue). main() returns the code; destructors run.
struct ExitStatus {
  int code = 0;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

#define EXATRAIN_CHECK(cond, ...)                 \
  do {                                            \
    if (!(cond)) ::exatrain::fail(__VA_ARGS__);   \
  } while (0)

}  // namespace exatrain
