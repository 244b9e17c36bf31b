#include "trainer/core/logging.h"

#include <spdlog/spdlog.h>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cmath>
#include <vector>

#include "trainer/core/error.h"

namespace exatrain {

void setup_logging(const std::string& level, int rank, const std::string& log_file, bool console) {
  std::vector<spdlog::sink_ptr> sinks;
  if (console) sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (!log_file.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file, /*truncate=*/false));
    } catch (const spdlog::spdlog_ex& e) {
      fail("cannot open log file '{}': {}", log_file, e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>("exatrain", sinks.begin(), sinks.end());
  logger->set_pattern(fmt::format("[%H:%M:%S rank {}] %^%v%$", rank));
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void log_message(LogLevel level, const std::string& message) {
  switch (level) {
    case LogLevel::Debug: spdlog::debug(message); break;
    case LogLevel::Info: spdlog::info(message); break;
    case LogLevel::Warn: spdlog::warn(message); break;
    case LogLevel::Error: spdlog::error(message); break;
  }
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
}

}  // namespace exatrain
