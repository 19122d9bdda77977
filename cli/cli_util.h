#pragma once

#include <grpcpp/client_context.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
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

// Puts `authorization: Bearer <key>` and a deadline on a call to a Flywheel service.
void PrepareCall(grpc::ClientContext& context, const std::string& key,
                 absl::Duration timeout = absl::Seconds(30));

}  // namespace flywheel::cli
