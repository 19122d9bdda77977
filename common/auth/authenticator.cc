#include "common/auth/authenticator.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace flywheel::auth {

Authenticator::Authenticator(TenancyStore* store, AuthenticatorOptions options)
    : store_(store), options_(options) {}

absl::StatusOr<Principal> Authenticator::Authenticate(absl::string_view authorization,
                                                      const Requirement& requirement,
                                                      absl::string_view project) {
  if (authorization.empty()) {
    return absl::UnauthenticatedError("missing \"authorization: Bearer <api key>\" metadata");
  }
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWithIgnoreCase(authorization, kBearer)) {
    return absl::UnauthenticatedError("authorization metadata must be \"Bearer <api key>\"");
  }
  return AuthenticateKey(authorization.substr(kBearer.size()), requirement, project);
}

absl::StatusOr<bool> Authenticator::ProjectExists(const std::string& project_id) {
  const absl::Time now = now_();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = known_projects_.find(project_id);
    if (it != known_projects_.end() && it->second > now) return true;
  }
  absl::StatusOr<bool> exists = store_->ProjectExists(project_id);
  if (!exists.ok() || !*exists) return exists;
  std::lock_guard<std::mutex> lock(mu_);
  if (known_projects_.size() >= options_.max_cache_entries) known_projects_.clear();
  known_projects_[project_id] = now + options_.cache_ttl;
  return true;
}

absl::StatusOr<std::optional<StoredKey>> Authenticator::Lookup(KeyKind kind,
                                                               const std::string& key_id) {
  const absl::Time now = now_();
  // Project keys and service keys live in different tables: their cache keys must not collide.
  const std::string cache_key = kind == KeyKind::kService ? "svc:" + key_id : key_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(cache_key);
    if (it != cache_.end() && it->second.expires > now) return it->second.key;
  }
  absl::StatusOr<std::optional<StoredKey>> found =
      kind == KeyKind::kService ? store_->FindServiceKey(key_id) : store_->FindKey(key_id);
  if (!found.ok()) return found.status();
  std::lock_guard<std::mutex> lock(mu_);
  if (cache_.size() >= options_.max_cache_entries) {
    // Drop expired entries first; only a flood of distinct live ids empties the cache.
    for (auto it = cache_.begin(); it != cache_.end();) {
      it = it->second.expires <= now ? cache_.erase(it) : std::next(it);
    }
    if (cache_.size() >= options_.max_cache_entries) cache_.clear();
  }
  cache_[cache_key] =
      CacheEntry{*found, now + (found->has_value() ? options_.cache_ttl : options_.negative_ttl)};
  return found;
}

absl::StatusOr<Principal> Authenticator::AuthenticateKey(absl::string_view key,
                                                         const Requirement& requirement,
                                                         absl::string_view project) {
  absl::StatusOr<ParsedKey> parsed = ParseApiKey(key);
  if (!parsed.ok()) return parsed.status();
  absl::StatusOr<std::optional<StoredKey>> stored = Lookup(parsed->kind, parsed->key_id);
  if (!stored.ok()) {
    if (stored.status().code() == absl::StatusCode::kUnavailable) return stored.status();
    return absl::UnavailableError("key store unavailable");
  }
  // One answer for unknown, revoked and wrong-secret keys: no oracle for guessing.
  if (!stored->has_value() || (*stored)->revoked || (*stored)->kind != parsed->kind ||
      !ConstantTimeEquals(HashSecret(parsed->secret), (*stored)->secret_sha256)) {
    return absl::UnauthenticatedError("invalid API key");
  }
  const StoredKey& record = **stored;
  if (record.kind == KeyKind::kPublic) {
    if (!requirement.allow_public) {
      return absl::PermissionDeniedError(
          "public keys may only write signals; use a secret key for this call");
    }
  } else if ((record.scopes & (requirement.any_of | static_cast<ScopeSet>(Scope::kAdmin))) == 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("API key lacks the required scope (one of: ",
                     absl::StrJoin(ScopeNames(requirement.any_of), ", "), ")"));
  }
  if (record.kind != KeyKind::kService) {
    return Principal{record.project_id, record.key_id, record.kind, record.scopes};
  }
  if (project.empty()) {
    return absl::InvalidArgumentError(
        "x-flywheel-project: service keys must name the project they act for");
  }
  const std::string project_id(project);
  absl::StatusOr<bool> exists = ProjectExists(project_id);
  if (!exists.ok()) return absl::UnavailableError("key store unavailable");
  if (!*exists) return absl::NotFoundError("x-flywheel-project: no such project");
  return Principal{project_id, record.key_id, record.kind, record.scopes};
}

}  // namespace flywheel::auth
