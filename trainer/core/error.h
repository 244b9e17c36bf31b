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

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

#define EXATRAIN_CHECK(cond, ...)                 \
  do {                                            \
    if (!(cond)) ::exatrain::fail(__VA_ARGS__);   \
  } while (0)

}  // namespace exatrain
