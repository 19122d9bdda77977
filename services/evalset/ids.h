#pragma once

// Identifier rules, generated ids and opaque page tokens of the eval-set API.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace flywheel::evalset {

// Ids: 1..128 bytes of [A-Za-z0-9._:-]. INVALID_ARGUMENT naming `field` otherwise.
absl::Status ValidateId(absl::string_view field, absl::string_view id);
bool IsValidId(absl::string_view id);

// Version tags: 1..64 bytes of [A-Za-z0-9._-], starting with a letter; "latest" is reserved.
absl::Status ValidateTagName(absl::string_view field, absl::string_view tag);

// Case tags: 1..64 bytes of [A-Za-z0-9._:/-].
bool IsValidCaseTag(absl::string_view tag);

// A 26-character lowercase, time-ordered ULID-style id (48-bit milliseconds + 80 random bits,
// Crockford base32), so generated ids sort by creation time.
std::string GenerateId();

// "sha256:" + lowercase hex of SHA-256(data).
std::string Sha256Digest(absl::string_view data);

// Opaque page tokens. A token binds the list it came from (`kind`), a fingerprint of the request
// filters and its issue time, and carries the keyset position as a few string fields. Tokens are
// not secret: they only ever address the caller's own project.
struct PageToken {
  std::vector<std::string> position;
};

inline constexpr absl::Duration kPageTokenLifetime = absl::Hours(24);

std::string EncodePageToken(absl::string_view kind, absl::string_view filter_fingerprint,
                            const std::vector<std::string>& position, absl::Time now);
// INVALID_ARGUMENT ("page_token: ...") when malformed, issued for another list or filter, or
// expired.
absl::StatusOr<PageToken> DecodePageToken(absl::string_view token, absl::string_view kind,
                                          absl::string_view filter_fingerprint, absl::Time now);

// Page size rules shared by every list: default 50, at most `max` (larger values are clamped),
// negative is INVALID_ARGUMENT.
absl::StatusOr<int> ResolvePageSize(int32_t requested, int max = 1000);

}  // namespace flywheel::evalset
