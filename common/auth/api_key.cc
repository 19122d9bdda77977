#include "common/auth/api_key.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace flywheel::auth {
namespace {

constexpr struct {
  Scope scope;
  const char* name;
} kScopeNames[] = {{Scope::kIngest, "ingest"},
                   {Scope::kRead, "read"},
                   {Scope::kReview, "review"},
                   {Scope::kEval, "eval"},
                   {Scope::kAdmin, "admin"}};

bool IsLowerHex(absl::string_view text, size_t length) {
  if (text.size() != length) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Hex(const unsigned char* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

}  // namespace

absl::StatusOr<ScopeSet> ParseScopes(absl::string_view text) {
  ScopeSet scopes = 0;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    bool found = false;
    for (const auto& entry : kScopeNames) {
      if (part == entry.name) {
        scopes |= static_cast<ScopeSet>(entry.scope);
        found = true;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(absl::StrCat(
          "scopes: unknown scope \"", part, "\" (expected ingest, read, review, eval, admin)"));
    }
  }
  return scopes;
}

std::vector<std::string> ScopeNames(ScopeSet scopes) {
  std::vector<std::string> names;
  for (const auto& entry : kScopeNames) {
    if (scopes & static_cast<ScopeSet>(entry.scope)) names.emplace_back(entry.name);
  }
  return names;
}

std::string KeyKindName(KeyKind kind) {
  switch (kind) {
    case KeyKind::kPublic:
      return "public";
    case KeyKind::kService:
      return "service";
    case KeyKind::kSecret:
      break;
  }
  return "secret";
}

namespace {

absl::string_view KindPrefix(KeyKind kind) {
  switch (kind) {
    case KeyKind::kPublic:
      return "pk";
    case KeyKind::kService:
      return "svc";
    case KeyKind::kSecret:
      break;
  }
  return "sk";
}

}  // namespace

absl::StatusOr<ParsedKey> ParseApiKey(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '_');
  if (parts.size() != 4 || parts[0] != "fw" ||
      (parts[1] != "pk" && parts[1] != "sk" && parts[1] != "svc") || !IsLowerHex(parts[2], 16) ||
      !IsLowerHex(parts[3], 64)) {
    return absl::UnauthenticatedError("malformed API key");
  }
  ParsedKey key;
  key.kind = parts[1] == "pk"    ? KeyKind::kPublic
             : parts[1] == "svc" ? KeyKind::kService
                                 : KeyKind::kSecret;
  key.key_id = std::string(parts[2]);
  key.secret = std::string(parts[3]);
  return key;
}

std::string HashSecret(absl::string_view secret) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

absl::StatusOr<NewKey> GenerateApiKey(KeyKind kind) {
  unsigned char id[8];
  unsigned char secret[32];
  if (RAND_bytes(id, sizeof(id)) != 1 || RAND_bytes(secret, sizeof(secret)) != 1) {
    return absl::InternalError("no randomness available for key generation");
  }
  NewKey key;
  key.key_id = Hex(id, sizeof(id));
  const std::string secret_hex = Hex(secret, sizeof(secret));
  key.plaintext = absl::StrCat("fw_", KindPrefix(kind), "_", key.key_id, "_", secret_hex);
  key.secret_sha256 = HashSecret(secret_hex);
  return key;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace flywheel::auth
