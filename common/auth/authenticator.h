#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/auth/api_key.h"
#include "common/auth/tenancy_store.h"

namespace flywheel::auth {

// The authenticated caller: a key of one project, or a service key acting for one project.
struct Principal {
  std::string project_id;
  std::string key_id;
  KeyKind kind = KeyKind::kSecret;
  ScopeSet scopes = 0;
};

// What an RPC requires: a secret key holding any of `any_of` (the admin scope implies every
// scope), or (when allow_public) a public key.
struct Requirement {
  ScopeSet any_of = 0;
  bool allow_public = false;

  static Requirement Of(Scope scope) { return {static_cast<ScopeSet>(scope), false}; }
  static Requirement AnyOf(Scope a, Scope b) {
    return {static_cast<ScopeSet>(a) | static_cast<ScopeSet>(b), false};
  }
  // Writing signals: public (browser) keys or secret keys with the ingest scope.
  static Requirement SignalWrite() { return {static_cast<ScopeSet>(Scope::kIngest), true}; }
};

struct AuthenticatorOptions {
  // Verified keys are cached this long, so revocation takes effect within it.
  absl::Duration cache_ttl = absl::Seconds(30);
  // Unknown key ids are remembered this long, so guessing does not hammer the database.
  absl::Duration negative_ttl = absl::Seconds(5);
  size_t max_cache_entries = 100000;
};

// Checks API keys against the tenancy store. Errors: UNAUTHENTICATED (missing, malformed,
// unknown or revoked key, wrong secret), PERMISSION_DENIED (valid key without the required
// scope, or a public key on a secret-only RPC), UNAVAILABLE (store down). Thread-safe.
class Authenticator {
 public:
  Authenticator(TenancyStore* store, AuthenticatorOptions options = {});

  // `authorization` is the metadata value: "Bearer <key>". `project` is the x-flywheel-project
  // metadata value: required for service keys (the project they act for; INVALID_ARGUMENT when
  // missing, NOT_FOUND when unknown), ignored for project keys.
  absl::StatusOr<Principal> Authenticate(absl::string_view authorization,
                                         const Requirement& requirement,
                                         absl::string_view project = {});
  absl::StatusOr<Principal> AuthenticateKey(absl::string_view key, const Requirement& requirement,
                                            absl::string_view project = {});

  // Test hook: the clock used for cache expiry.
  void SetClockForTesting(absl::Time (*now)()) { now_ = now; }

 private:
  struct CacheEntry {
    std::optional<StoredKey> key;
    absl::Time expires;
  };
  absl::StatusOr<std::optional<StoredKey>> Lookup(KeyKind kind, const std::string& key_id);
  absl::StatusOr<bool> ProjectExists(const std::string& project_id);

  TenancyStore* const store_;
  const AuthenticatorOptions options_;
  absl::Time (*now_)() = &absl::Now;
  std::mutex mu_;
  std::unordered_map<std::string, CacheEntry> cache_;
  std::unordered_map<std::string, absl::Time> known_projects_;  // project -> cache expiry
};

}  // namespace flywheel::auth
