#pragma once

#include <cstdio>
#include <initializer_list>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace flywheel {

// One structured log record per line, as JSON, to stderr by default:
//   {"ts":"2026-11-23T15:06:28.123Z","level":"info","service":"capture","msg":"...","k":"v"}
// Passed by pointer from main to whatever logs; there is no global logger.
class Logger {
 public:
  enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
  using Fields = std::initializer_list<std::pair<absl::string_view, std::string>>;

  explicit Logger(std::string service, Level min_level = Level::kInfo, std::FILE* out = stderr);

  void Log(Level level, absl::string_view message, Fields fields = {});
  void Debug(absl::string_view message, Fields fields = {}) { Log(Level::kDebug, message, fields); }
  void Info(absl::string_view message, Fields fields = {}) { Log(Level::kInfo, message, fields); }
  void Warn(absl::string_view message, Fields fields = {}) {
    Log(Level::kWarning, message, fields);
  }
  void Error(absl::string_view message, Fields fields = {}) { Log(Level::kError, message, fields); }

  // Parses "debug", "info", "warning"/"warn", "error".
  static bool ParseLevel(absl::string_view text, Level* level);

 private:
  const std::string service_;
  const Level min_level_;
  std::FILE* const out_;
  std::mutex mu_;
};

// Appends `text` to `out` as the body of a JSON string (without the quotes).
void AppendJsonEscaped(absl::string_view text, std::string* out);

}  // namespace flywheel
