#pragma once

// Small helpers shared by the logic files: field validation, time conversions, page tokens,
// request digests.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace flywheel::annotation {

inline constexpr int kDefaultPageSize = 50;

// INVALID_ARGUMENT "<field>: required" / "must be 1..128 bytes of [A-Za-z0-9._:-]".
absl::Status CheckId(absl::string_view field, absl::string_view id);
// Optional id: empty is fine.
absl::Status CheckOptionalId(absl::string_view field, absl::string_view id);
// Text of at most max_bytes (and at least min_bytes) of valid UTF-8.
absl::Status CheckText(absl::string_view field, absl::string_view text, size_t min_bytes,
                       size_t max_bytes);

absl::Time ToTime(const google::protobuf::Timestamp& t);
absl::Duration ToDuration(const google::protobuf::Duration& d);
void SetTime(absl::Time t, google::protobuf::Timestamp* out);
void SetDuration(absl::Duration d, google::protobuf::Duration* out);

// page_size: default 50, clamped to max; negative is INVALID_ARGUMENT "page_size".
absl::StatusOr<int> PageSize(int requested, int max);

// Opaque page tokens bound to the request's filters (`request` with page_token and page_size
// cleared) and valid for `ttl`. The position is (micros, id) or a number in `micros`.
struct PagePosition {
  int64_t micros = 0;
  std::string id;
};
std::string EncodePageToken(const google::protobuf::Message& filters, const PagePosition& position);
// nullopt for an empty token; INVALID_ARGUMENT "page_token" when malformed, expired or issued
// for other filters.
absl::StatusOr<std::optional<PagePosition>> DecodePageToken(
    absl::string_view token, const google::protobuf::Message& filters, absl::Duration ttl);

// A stable digest (hex) of a message's deterministic serialization.
std::string Digest(const google::protobuf::Message& message);

}  // namespace flywheel::annotation
