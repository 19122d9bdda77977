#include "services/evalset/ids.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace flywheel::evalset {
namespace {

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

bool IsValidId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (!IsIdChar(c)) return false;
  }
  return true;
}

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  if (!IsValidId(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be 1..128 bytes of [A-Za-z0-9._:-]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTagName(absl::string_view field, absl::string_view tag) {
  if (tag.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  bool ok = tag.size() <= 64 && IsAsciiLetter(tag[0]);
  for (char c : tag) {
    ok = ok && (IsIdChar(c) && c != ':');
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be 1..64 bytes of [A-Za-z0-9._-] starting with a letter"));
  }
  if (tag == "latest") return absl::InvalidArgumentError(absl::StrCat(field, ": reserved name"));
  return absl::OkStatus();
}

bool IsValidCaseTag(absl::string_view tag) {
  if (tag.empty() || tag.size() > 64) return false;
  for (char c : tag) {
    if (!IsIdChar(c) && c != '/') return false;
  }
  return true;
}

std::string GenerateId() {
  static constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
  const uint64_t millis = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  unsigned char random[10];
  if (RAND_bytes(random, sizeof(random)) != 1) {
    // The OS random source failing is not worth failing a write: ids only need uniqueness.
    thread_local std::mt19937_64 fallback(std::random_device{}());
    for (unsigned char& byte : random) byte = static_cast<unsigned char>(fallback());
  }
  // 128 bits: 48 of time then 80 of randomness, read 5 bits at a time (26 chars = 130 bits; the
  // first char carries the top 3 bits, as in ULID).
  unsigned char bits[16];
  for (int i = 0; i < 6; ++i) bits[i] = static_cast<unsigned char>(millis >> (8 * (5 - i)));
  for (int i = 0; i < 10; ++i) bits[6 + i] = random[i];
  std::string out(26, '0');
  for (int i = 0; i < 26; ++i) {
    const int bit = 130 - 5 * (i + 1);  // position of the lowest bit of char i
    int value = 0;
    for (int b = 4; b >= 0; --b) {
      const int pos = bit + b;  // bit index from the least significant end of the 130-bit number
      int v = 0;
      if (pos < 128) v = (bits[15 - pos / 8] >> (pos % 8)) & 1;
      value = (value << 1) | v;
    }
    out[i] = kAlphabet[value];
  }
  return out;
}

std::string Sha256Digest(absl::string_view data) {
  unsigned char hash[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), hash);
  return absl::StrCat("sha256:", absl::BytesToHexString(absl::string_view(
                                     reinterpret_cast<const char*>(hash), sizeof(hash))));
}

std::string EncodePageToken(absl::string_view kind, absl::string_view filter_fingerprint,
                            const std::vector<std::string>& position, absl::Time now) {
  // Fields are hex-encoded so any byte can appear in a position without breaking the framing.
  std::vector<std::string> fields = {std::string(kind), std::string(filter_fingerprint),
                                     absl::StrCat(absl::ToUnixSeconds(now))};
  for (const std::string& p : position) fields.push_back(absl::BytesToHexString(p));
  std::string token;
  absl::WebSafeBase64Escape(absl::StrJoin(fields, "|"), &token);
  return token;
}

absl::StatusOr<PageToken> DecodePageToken(absl::string_view token, absl::string_view kind,
                                          absl::string_view filter_fingerprint, absl::Time now) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  std::vector<std::string> fields = absl::StrSplit(raw, '|');
  int64_t issued = 0;
  if (fields.size() < 3 || fields[0] != kind || !absl::SimpleAtoi(fields[2], &issued)) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  if (fields[1] != filter_fingerprint) {
    return absl::InvalidArgumentError("page_token: issued for different request filters");
  }
  if (now - absl::FromUnixSeconds(issued) > kPageTokenLifetime) {
    return absl::InvalidArgumentError("page_token expired");
  }
  PageToken out;
  for (size_t i = 3; i < fields.size(); ++i) {
    for (char c : fields[i]) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
        return absl::InvalidArgumentError("page_token: malformed");
      }
    }
    if (fields[i].size() % 2 != 0) return absl::InvalidArgumentError("page_token: malformed");
    out.position.push_back(absl::HexStringToBytes(fields[i]));
  }
  return out;
}

absl::StatusOr<int> ResolvePageSize(int32_t requested, int max) {
  if (requested < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  if (requested == 0) return std::min(50, max);
  return std::min<int>(requested, max);
}

}  // namespace flywheel::evalset
