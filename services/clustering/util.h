#pragma once

// Small helpers of the clustering service: ids, page tokens, times, packed vectors, validation.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/proto/proto_time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace flywheel::clustering {

// A 26-character lowercase, time-ordered ULID-style id (48-bit milliseconds + 80 random bits,
// Crockford base32).
std::string GenerateId();

// Idempotency keys: 1..128 bytes of [A-Za-z0-9._:-].
bool IsValidRequestId(absl::string_view id);
// Trace ids (as in capture): 1..128 bytes of [A-Za-z0-9._:-].
inline bool IsValidTraceId(absl::string_view id) { return IsValidRequestId(id); }

// Opaque page tokens bound to a list kind, a filter fingerprint and an issue time (24 h).
std::string EncodePageToken(absl::string_view kind, absl::string_view fingerprint,
                            const std::vector<std::string>& position, absl::Time now);
// INVALID_ARGUMENT "page_token: ..." when malformed, from another list or filter, or expired.
absl::StatusOr<std::vector<std::string>> DecodePageToken(absl::string_view token,
                                                         absl::string_view kind,
                                                         absl::string_view fingerprint,
                                                         absl::Time now);
// Default 50, clamped to max; negative is INVALID_ARGUMENT.
absl::StatusOr<int> ResolvePageSize(int32_t requested, int max);

using ::flywheel::FromProtoTime;
using ::flywheel::ToProtoTime;
google::protobuf::Duration ToProtoDuration(absl::Duration d);
absl::Duration FromProtoDuration(const google::protobuf::Duration& d);

// Embeddings travel and are stored as packed little-endian float32.
std::string PackVector(const std::vector<float>& v);
std::vector<float> UnpackVector(absl::string_view bytes);

// A short stable fingerprint of a string (16 hex digits; not for security).
std::string Fingerprint(absl::string_view text);

}  // namespace flywheel::clustering
