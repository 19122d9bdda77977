#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flywheel::auth {

// What a secret key may do. Public keys have no scopes: they may only write signals.
enum class Scope : uint32_t {
  kIngest = 1u << 0,  // write traces and signals
  kRead = 1u << 1,    // read traces, labels, themes, stats
  kReview = 1u << 2,  // work annotation queues
  kEval = 1u << 3,    // eval sets, runs, comparisons
  kAdmin = 1u << 4,   // project settings, rules, queues, keys
};
using ScopeSet = uint32_t;

// kService: a deployment's own workers; belongs to no project, names one per call.
enum class KeyKind { kPublic, kSecret, kService };

// "ingest,read" -> bits. INVALID_ARGUMENT names an unknown scope.
absl::StatusOr<ScopeSet> ParseScopes(absl::string_view text);
std::vector<std::string> ScopeNames(ScopeSet scopes);
std::string KeyKindName(KeyKind kind);

// An API key as handed to a client once:  fw_<pk|sk|svc>_<16 hex key id>_<64 hex secret>.
// Only the key id and SHA-256 of the secret are stored.
struct ParsedKey {
  KeyKind kind = KeyKind::kSecret;
  std::string key_id;
  std::string secret;
};

// UNAUTHENTICATED when `text` is not shaped like a Flywheel key.
absl::StatusOr<ParsedKey> ParseApiKey(absl::string_view text);

struct NewKey {
  std::string plaintext;  // show once, never store
  std::string key_id;
  std::string secret_sha256;  // 32 raw bytes
};

// Generates a key from the OS's cryptographic random source.
absl::StatusOr<NewKey> GenerateApiKey(KeyKind kind);

// Raw 32-byte SHA-256 of the secret part.
std::string HashSecret(absl::string_view secret);

// Constant-time comparison of two equal-length byte strings.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace flywheel::auth
