#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/auth/api_key.h"
#include "common/auth/tenancy_store.h"

namespace flywheel::auth {

struct CreatedKey {
  StoredKey key;
  std::string plaintext;  // shown once; only its hash is stored
};

// Domain rules for managing projects and keys (used by the `flywheel admin` CLI).
class TenancyAdmin {
 public:
  explicit TenancyAdmin(TenancyStore* store) : store_(store) {}

  // project_id: 1..63 of [a-z0-9_-], starting with a letter or digit. INVALID_ARGUMENT names the
  // field; ALREADY_EXISTS when taken.
  absl::StatusOr<Project> CreateProject(const std::string& project_id,
                                        const std::string& display_name);
  // Public keys take no scopes (INVALID_ARGUMENT if given); secret keys need at least one.
  absl::StatusOr<CreatedKey> CreateKey(const std::string& project_id, KeyKind kind, ScopeSet scopes,
                                       const std::string& display_name);
  absl::StatusOr<std::vector<Project>> ListProjects() { return store_->ListProjects(); }
  absl::StatusOr<std::vector<StoredKey>> ListKeys(const std::string& project_id) {
    return store_->ListKeys(project_id);
  }
  absl::Status RevokeKey(const std::string& project_id, const std::string& key_id) {
    return store_->RevokeKey(project_id, key_id);
  }
  // A deployment's service key (see common/auth/client_credentials.h). Needs at least one scope;
  // the admin scope is refused (INVALID_ARGUMENT).
  absl::StatusOr<CreatedKey> CreateServiceKey(ScopeSet scopes, const std::string& display_name);
  absl::StatusOr<std::vector<StoredKey>> ListServiceKeys() { return store_->ListServiceKeys(); }
  absl::Status RevokeServiceKey(const std::string& key_id) {
    return store_->RevokeServiceKey(key_id);
  }

 private:
  TenancyStore* const store_;
};

}  // namespace flywheel::auth
