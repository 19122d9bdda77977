#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "flywheel/capture/v1/capture.pb.h"

namespace flywheel::capture {

// A rejected field: the status code (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, PERMISSION_DENIED),
// the field path relative to the item ("output", "input.messages[3].content", ...) and why.
struct FieldError {
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  std::string field;
  std::string reason;
};

// Limits documented in capture.proto.
inline constexpr size_t kMaxIdBytes = 128;
inline constexpr size_t kMaxNameBytes = 128;
inline constexpr size_t kMaxShortNameBytes = 64;
inline constexpr size_t kMaxInputBytes = 256 * 1024;
inline constexpr int kMaxInputMessages = 1000;
inline constexpr size_t kMaxOutputBytes = 256 * 1024;
inline constexpr size_t kMaxCommentBytes = 8 * 1024;
inline constexpr size_t kMaxStructBytes = 16 * 1024;
inline constexpr int kMaxStructDepth = 10;
inline constexpr int kMaxReasonCategories = 10;
inline constexpr int kMaxBatchItems = 1000;
inline constexpr absl::Duration kMaxFutureSkew = absl::Minutes(5);

struct ValidationContext {
  absl::Time now;
  // Oldest acceptable timestamp (retention window).
  absl::Duration retention = absl::Hours(24 * 90);
  // Written with a public (browser) key: restricted to user trace signals.
  bool public_key = false;
};

// Checks a trace as received. Returns the first violation, if any.
std::optional<FieldError> ValidateTrace(const v1::Trace& trace, const ValidationContext& context);
// Checks a signal as received. Reason categories are checked against the rule set separately.
std::optional<FieldError> ValidateSignal(const v1::Signal& signal,
                                         const ValidationContext& context);

// "abc" → true when 1..128 bytes of [A-Za-z0-9._:-].
bool IsValidId(const std::string& id, size_t max_bytes = kMaxIdBytes);

// The raw kind of a signal from its oneofs (UNSPECIFIED when incomplete).
v1::SignalKind KindOf(const v1::Signal& signal);

}  // namespace flywheel::capture
