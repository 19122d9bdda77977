#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace flywheel {

// Command-line flags with environment fallback. Each flag `--some_name` can also be set through
// the environment variable `FLYWHEEL_SOME_NAME`; precedence is flag > environment > default (the
// value the target holds when the flag is defined). Accepted forms: `--name=value`,
// `--name value`, and for booleans `--name` / `--noname`. Parse errors are INVALID_ARGUMENT
// naming the flag. `--help` sets help_requested().
class FlagSet {
 public:
  using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

  FlagSet(std::string program, std::string description);

  void String(std::string name, std::string* target, std::string help);
  void Int(std::string name, int* target, std::string help);
  void Int64(std::string name, int64_t* target, std::string help);
  void Double(std::string name, double* target, std::string help);
  void Bool(std::string name, bool* target, std::string help);
  // Durations use absl syntax: "30s", "1.5m", "250ms", "2h".
  void Duration(std::string name, absl::Duration* target, std::string help);

  // Parses argv[1..]. Arguments that are not flags are appended to `positional` (an error when
  // `positional` is null). "--" ends flag parsing.
  absl::Status Parse(int argc, const char* const* argv,
                     std::vector<std::string>* positional = nullptr);
  absl::Status Parse(int argc, const char* const* argv, std::vector<std::string>* positional,
                     const EnvLookup& env);

  bool help_requested() const { return help_requested_; }
  std::string Usage() const;

  // "some_name" -> "FLYWHEEL_SOME_NAME".
  static std::string EnvName(absl::string_view flag_name);

 private:
  enum class Type { kString, kInt, kInt64, kDouble, kBool, kDuration };
  struct Flag {
    std::string name;
    Type type;
    void* target;
    std::string help;
    std::string default_text;
  };
  void Add(std::string name, Type type, void* target, std::string help, std::string default_text);
  Flag* Find(absl::string_view name);
  absl::Status Set(Flag& flag, absl::string_view value, absl::string_view source);

  std::string program_;
  std::string description_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

}  // namespace flywheel
