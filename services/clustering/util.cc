#include "services/clustering/util.h"

#include <algorithm>
#include <cstring>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace flywheel::clustering {
namespace {

constexpr char kCrockford[] = "0123456789abcdefghjkmnpqrstvwxyz";
constexpr absl::Duration kPageTokenLifetime = absl::Hours(24);

}  // namespace

std::string GenerateId() {
  thread_local std::mt19937_64 rng(std::random_device{}() ^
                                   static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  const uint64_t millis = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  const uint64_t r1 = rng();
  const uint64_t r2 = rng();
  // 10 characters of time (48 bits, top 2 of 50 zero), then 16 of randomness (80 bits).
  std::string out(26, '0');
  uint64_t t = millis & 0xFFFFFFFFFFFFULL;
  for (int i = 9; i >= 0; --i) {
    out[i] = kCrockford[t & 31];
    t >>= 5;
  }
  uint64_t lo = r2;              // 64 bits
  uint64_t hi = r1 & 0xFFFFULL;  // 16 bits
  for (int i = 25; i >= 10; --i) {
    out[i] = kCrockford[lo & 31];
    lo = (lo >> 5) | ((hi & 31) << 59);
    hi >>= 5;
  }
  return out;
}

bool IsValidRequestId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string EncodePageToken(absl::string_view kind, absl::string_view fingerprint,
                            const std::vector<std::string>& position, absl::Time now) {
  std::vector<std::string> parts = {std::string(kind), std::string(fingerprint),
                                    absl::StrCat(absl::ToUnixSeconds(now))};
  for (const auto& p : position) parts.push_back(absl::BytesToHexString(p));
  return absl::WebSafeBase64Escape(absl::StrJoin(parts, "|"));
}

absl::StatusOr<std::vector<std::string>> DecodePageToken(absl::string_view token,
                                                         absl::string_view kind,
                                                         absl::string_view fingerprint,
                                                         absl::Time now) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  std::vector<std::string> parts = absl::StrSplit(raw, '|');
  int64_t issued = 0;
  if (parts.size() < 3 || !absl::SimpleAtoi(parts[2], &issued)) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  if (parts[0] != kind || parts[1] != fingerprint) {
    return absl::InvalidArgumentError("page_token: issued for another list or other filters");
  }
  if (now - absl::FromUnixSeconds(issued) > kPageTokenLifetime) {
    return absl::InvalidArgumentError("page_token: expired");
  }
  std::vector<std::string> position;
  for (size_t i = 3; i < parts.size(); ++i) {
    position.push_back(absl::HexStringToBytes(parts[i]));
  }
  return position;
}

absl::StatusOr<int> ResolvePageSize(int32_t requested, int max) {
  if (requested < 0) return absl::InvalidArgumentError("page_size: must be >= 0");
  if (requested == 0) return std::min(50, max);
  return std::min<int>(requested, max);
}

google::protobuf::Duration ToProtoDuration(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out.set_seconds(nanos / 1000000000);
  out.set_nanos(static_cast<int32_t>(nanos % 1000000000));
  return out;
}

absl::Duration FromProtoDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

std::string PackVector(const std::vector<float>& v) {
  std::string out(v.size() * sizeof(float), '\0');
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());  // little-endian hosts only
  return out;
}

std::vector<float> UnpackVector(absl::string_view bytes) {
  std::vector<float> out(bytes.size() / sizeof(float));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

std::string Fingerprint(absl::string_view text) {
  // FNV-1a, 64 bits: stable across processes and replicas (absl::Hash is seeded per process).
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return absl::StrCat(absl::Hex(h, absl::kZeroPad16));
}

}  // namespace flywheel::clustering
