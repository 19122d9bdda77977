#include "cli/cli_util.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/time/clock.h"

namespace flywheel::cli {

int Fail(const std::string& command, const absl::Status& status) {
  std::fprintf(stderr, "%s: %s\n", command.c_str(), status.ToString().c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

std::optional<int> ParseOrExit(FlagSet& flags, int argc, char** argv) {
  absl::Status status = flags.Parse(argc, argv);
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n\n%s", std::string(status.message()).c_str(), flags.Usage().c_str());
    return 2;
  }
  return std::nullopt;
}

std::optional<int> Require(const std::string& command, const std::string& flag,
                           const std::string& value) {
  if (!value.empty()) return std::nullopt;
  std::fprintf(stderr, "%s: --%s is required (see --help)\n", command.c_str(), flag.c_str());
  return 2;
}

absl::StatusOr<std::string> ReadKeyFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line) || absl::StripAsciiWhitespace(line).empty()) {
    return absl::InvalidArgumentError("--" + flag + ": cannot read an API key from " + path);
  }
  return std::string(absl::StripAsciiWhitespace(line));
}

void PrepareCall(grpc::ClientContext& context, const std::string& key, absl::Duration timeout) {
  context.AddMetadata("authorization", "Bearer " + key);
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace flywheel::cli
