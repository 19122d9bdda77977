#include "services/annotation/logic_util.h"

#include <algorithm>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/text/text.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "services/annotation/ids.h"

namespace flywheel::annotation {

absl::Status CheckId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  if (!IsValidId(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be 1..128 bytes of [A-Za-z0-9._:-]"));
  }
  return absl::OkStatus();
}

absl::Status CheckOptionalId(absl::string_view field, absl::string_view id) {
  return id.empty() ? absl::OkStatus() : CheckId(field, id);
}

absl::Status CheckText(absl::string_view field, absl::string_view text, size_t min_bytes,
                       size_t max_bytes) {
  if (text.size() < min_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  }
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": longer than ", max_bytes, " bytes"));
  }
  if (!text::IsValidUtf8(text)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not valid UTF-8"));
  }
  return absl::OkStatus();
}

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t micros = absl::ToUnixMicros(t);
  int64_t seconds = micros / 1000000;
  int64_t rest = micros % 1000000;
  if (rest < 0) {
    rest += 1000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rest * 1000));
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

absl::StatusOr<int> PageSize(int requested, int max) {
  if (requested < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  if (requested == 0) return std::min(kDefaultPageSize, max);
  return std::min(requested, max);
}

std::string Digest(const google::protobuf::Message& message) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  // FNV-1a, 64 bits, twice with different offsets: stable across processes and builds.
  uint64_t a = 14695981039346656037ull, b = 1099511628211ull * 7919;
  for (unsigned char c : bytes) {
    a = (a ^ c) * 1099511628211ull;
    b = (b ^ c) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
  }
  return absl::StrFormat("%016x%016x", a, b);
}

namespace {

std::string FilterDigest(const google::protobuf::Message& filters) {
  std::unique_ptr<google::protobuf::Message> copy(filters.New());
  copy->CopyFrom(filters);
  const google::protobuf::Descriptor* d = copy->GetDescriptor();
  const google::protobuf::Reflection* r = copy->GetReflection();
  for (const char* name : {"page_token", "page_size"}) {
    if (const auto* field = d->FindFieldByName(name)) r->ClearField(copy.get(), field);
  }
  return Digest(*copy).substr(0, 16);
}

}  // namespace

std::string EncodePageToken(const google::protobuf::Message& filters,
                            const PagePosition& position) {
  const std::string raw =
      absl::StrCat("1|", FilterDigest(filters), "|", absl::ToUnixSeconds(absl::Now()), "|",
                   position.micros, "|", position.id);
  return absl::WebSafeBase64Escape(raw);
}

absl::StatusOr<std::optional<PagePosition>> DecodePageToken(
    absl::string_view token, const google::protobuf::Message& filters, absl::Duration ttl) {
  if (token.empty()) return std::optional<PagePosition>();
  const absl::Status bad =
      absl::InvalidArgumentError("page_token: malformed, expired, or issued for other filters");
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) return bad;
  std::vector<std::string> parts = absl::StrSplit(raw, absl::MaxSplits('|', 4));
  if (parts.size() != 5 || parts[0] != "1" || parts[1] != FilterDigest(filters)) return bad;
  int64_t issued = 0;
  PagePosition position;
  if (!absl::SimpleAtoi(parts[2], &issued) || !absl::SimpleAtoi(parts[3], &position.micros)) {
    return bad;
  }
  if (absl::FromUnixSeconds(issued) + ttl < absl::Now()) return bad;
  position.id = parts[4];
  return std::optional<PagePosition>(position);
}

}  // namespace flywheel::annotation
