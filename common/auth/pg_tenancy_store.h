#pragma once

#include "common/auth/tenancy_store.h"
#include "common/db/pool.h"
#include "common/log/logger.h"

namespace flywheel::auth {

// TenancyStore on the tenancy schema (migrations/tenancy).
class PgTenancyStore : public TenancyStore {
 public:
  // Registers its prepared statements on `pool`.
  PgTenancyStore(db::ConnectionPool* pool, Logger* logger);

  absl::StatusOr<std::optional<StoredKey>> FindKey(const std::string& key_id) override;
  absl::Status CreateProject(const Project& project) override;
  absl::StatusOr<std::vector<Project>> ListProjects() override;
  absl::Status InsertKey(const StoredKey& key) override;
  absl::StatusOr<std::vector<StoredKey>> ListKeys(const std::string& project_id) override;
  absl::Status RevokeKey(const std::string& project_id, const std::string& key_id) override;
  absl::StatusOr<bool> ProjectExists(const std::string& project_id) override;
  absl::StatusOr<std::optional<StoredKey>> FindServiceKey(const std::string& key_id) override;
  absl::Status InsertServiceKey(const StoredKey& key) override;
  absl::StatusOr<std::vector<StoredKey>> ListServiceKeys() override;
  absl::Status RevokeServiceKey(const std::string& key_id) override;

 private:
  db::ConnectionPool* const pool_;
  Logger* const logger_;
};

}  // namespace flywheel::auth
