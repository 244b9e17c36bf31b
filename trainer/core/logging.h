// Logging: "[HH:MM:SS rank R] message" on stderr and, when a file is given, the same lines in a
// per-rank log file. spdlog stays inside logging.cpp: the torch wheel ships its own (newer) fmt
// headers, which Debian's spdlog cannot be compiled against, so translation units that include
// LibTorch format with whichever fmt they see and hand over finished strings.
#pragma once

#include <fmt/format.h>

#include <string>

namespace exatrain {

enum class LogLevel { Debug, Info, Warn, Error };

// Sets up the logger; `level` is trace|debug|info|warn|error. `log_file` empty: console only.
void setup_logging(const std::string& level, int rank, const std::string& log_file = "", bool console = true);
void log_message(LogLevel level, const std::string& message);

template <class... Args>
void log_info(fmt::format_string<Args...> format, Args&&... args) {
  log_message(LogLevel::Info, fmt::format(format, std::forward<Args>(args)...));
}
template <class... Args>
void log_warn(fmt::format_string<Args...> format, Args&&... args) {
  log_message(LogLevel::Warn, fmt::format(format, std::forward<Args>(args)...));
}
template <class... Args>
void log_debug(fmt::format_string<Args...> format, Args&&... args) {
  log_message(LogLevel::Debug, fmt::format(format, std::forward<Args>(args)...));
}

// "42s", "3m05s", "2h10m".
std::string format_duration(double seconds);

}  // namespace exatrain
