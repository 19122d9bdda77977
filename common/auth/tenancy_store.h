#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/api_key.h"

namespace flywheel::auth {

struct Project {
  std::string project_id;
  std::string display_name;
  absl::Time created_at;
};

struct StoredKey {
  std::string project_id;
  std::string key_id;
  KeyKind kind = KeyKind::kSecret;
  ScopeSet scopes = 0;
  std::string secret_sha256;  // 32 raw bytes
  std::string display_name;
  absl::Time created_at;
  bool revoked = false;
};

// Storage of projects and keys (the tenancy schema). Implemented on Postgres by PgTenancyStore
// and by fakes in unit tests.
class TenancyStore {
 public:
  virtual ~TenancyStore() = default;
  // std::nullopt when no key has this id.
  virtual absl::StatusOr<std::optional<StoredKey>> FindKey(const std::string& key_id) = 0;
  // ALREADY_EXISTS when the id is taken.
  virtual absl::Status CreateProject(const Project& project) = 0;
  virtual absl::StatusOr<std::vector<Project>> ListProjects() = 0;
  // NOT_FOUND when the project does not exist.
  virtual absl::Status InsertKey(const StoredKey& key) = 0;
  virtual absl::StatusOr<std::vector<StoredKey>> ListKeys(const std::string& project_id) = 0;
  // NOT_FOUND when the project has no such key.
  virtual absl::Status RevokeKey(const std::string& project_id, const std::string& key_id) = 0;

  virtual absl::StatusOr<bool> ProjectExists(const std::string& project_id) = 0;
  // Service keys (kind kService, empty project_id): std::nullopt when no such id.
  virtual absl::StatusOr<std::optional<StoredKey>> FindServiceKey(const std::string& key_id) = 0;
  virtual absl::Status InsertServiceKey(const StoredKey& key) = 0;
  virtual absl::StatusOr<std::vector<StoredKey>> ListServiceKeys() = 0;
  // NOT_FOUND when there is no such key.
  virtual absl::Status RevokeServiceKey(const std::string& key_id) = 0;
};

}  // namespace flywheel::auth
