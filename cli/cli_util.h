#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config/flags.h"

namespace flywheel::cli {

// Prints "<command>: <status>" and returns the exit code: 2 for INVALID_ARGUMENT, else 1.
int Fail(const std::string& command, const absl::Status& status);

// Parses flags; returns an exit code when the command should stop (help or usage error).
std::optional<int> ParseOrExit(FlagSet& flags, int argc, char** argv);

// Exit code 2 with a message when a required flag is empty.
std::optional<int> Require(const std::string& command, const std::string& flag,
                           const std::string& value);

// Reads the first line of a key file (an API key). INVALID_ARGUMENT naming the flag when unreadable
// or empty.
absl::StatusOr<std::string> ReadKeyFile(const std::string& flag, const std::string& path);

}  // namespace flywheel::cli
