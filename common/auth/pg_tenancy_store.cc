#include "common/auth/pg_tenancy_store.h"

#include <pqxx/pqxx>

#include "absl/time/time.h"
#include "common/db/transaction.h"

namespace flywheel::auth {
namespace {

constexpr char kKeyColumns[] =
    "project_id, key_id, kind, array_to_string(scopes, ','), secret_sha256, display_name, "
    "extract(epoch from created_at)::float8, revoked_at IS NOT NULL";

constexpr char kServiceKeyColumns[] =
    "'', key_id, 'service', array_to_string(scopes, ','), secret_sha256, display_name, "
    "extract(epoch from created_at)::float8, revoked_at IS NOT NULL";

StoredKey KeyFromRow(const pqxx::row& row) {
  StoredKey key;
  key.project_id = row[0].as<std::string>();
  key.key_id = row[1].as<std::string>();
  const std::string kind = row[2].as<std::string>();
  key.kind = kind == "public"    ? KeyKind::kPublic
             : kind == "service" ? KeyKind::kService
                                 : KeyKind::kSecret;
  absl::StatusOr<ScopeSet> scopes = ParseScopes(row[3].as<std::string>());
  key.scopes = scopes.ok() ? *scopes : 0;  // an unknown stored scope grants nothing
  key.secret_sha256 = pqxx::binarystring(row[4]).str();
  key.display_name = row[5].as<std::string>();
  key.created_at = absl::FromUnixMicros(static_cast<int64_t>(row[6].as<double>() * 1e6));
  key.revoked = row[7].as<bool>();
  return key;
}

std::string ScopesArray(ScopeSet scopes) {
  std::string out = "{";
  for (const std::string& name : ScopeNames(scopes)) {
    if (out.size() > 1) out += ',';
    out += name;
  }
  return out + "}";
}

}  // namespace

PgTenancyStore::PgTenancyStore(db::ConnectionPool* pool, Logger* logger)
    : pool_(pool), logger_(logger) {
  pool_->RegisterStatement("tenancy_find_key", std::string("SELECT ") + kKeyColumns +
                                                   " FROM tenancy.api_keys WHERE key_id = $1");
  pool_->RegisterStatement("tenancy_create_project",
                           "INSERT INTO tenancy.projects (project_id, display_name) "
                           "VALUES ($1, $2)");
  pool_->RegisterStatement(
      "tenancy_list_projects",
      "SELECT project_id, display_name, extract(epoch from created_at)::float8 "
      "FROM tenancy.projects ORDER BY project_id");
  pool_->RegisterStatement("tenancy_insert_key",
                           "INSERT INTO tenancy.api_keys (project_id, key_id, kind, scopes, "
                           "secret_sha256, display_name) "
                           "VALUES ($1, $2, $3, $4::text[], $5, $6)");
  pool_->RegisterStatement("tenancy_list_keys", std::string("SELECT ") + kKeyColumns +
                                                    " FROM tenancy.api_keys WHERE project_id = $1 "
                                                    "ORDER BY created_at, key_id");
  pool_->RegisterStatement("tenancy_project_exists",
                           "SELECT 1 FROM tenancy.projects WHERE project_id = $1");
  pool_->RegisterStatement(
      "tenancy_find_service_key",
      std::string("SELECT ") + kServiceKeyColumns + " FROM tenancy.service_keys WHERE key_id = $1");
  pool_->RegisterStatement("tenancy_insert_service_key",
                           "INSERT INTO tenancy.service_keys (key_id, scopes, secret_sha256, "
                           "display_name) VALUES ($1, $2::text[], $3, $4)");
  pool_->RegisterStatement("tenancy_list_service_keys",
                           std::string("SELECT ") + kServiceKeyColumns +
                               " FROM tenancy.service_keys ORDER BY created_at, key_id");
  pool_->RegisterStatement(
      "tenancy_revoke_service_key",
      "UPDATE tenancy.service_keys SET revoked_at = coalesce(revoked_at, now()) "
      "WHERE key_id = $1");
  pool_->RegisterStatement("tenancy_revoke_key",
                           "UPDATE tenancy.api_keys SET revoked_at = coalesce(revoked_at, now()) "
                           "WHERE project_id = $1 AND key_id = $2");
}

absl::StatusOr<std::optional<StoredKey>> PgTenancyStore::FindKey(const std::string& key_id) {
  std::optional<StoredKey> found;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        pqxx::result rows = tx.exec_prepared("tenancy_find_key", key_id);
        found.reset();
        if (!rows.empty()) found = KeyFromRow(rows[0]);
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return found;
}

absl::Status PgTenancyStore::CreateProject(const Project& project) {
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        tx.exec_prepared("tenancy_create_project", project.project_id, project.display_name);
        return absl::OkStatus();
      },
      logger_);
  if (status.code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError("project_id: a project with this id already exists");
  }
  return status;
}

absl::StatusOr<std::vector<Project>> PgTenancyStore::ListProjects() {
  std::vector<Project> projects;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        projects.clear();
        for (const auto& row : tx.exec_prepared("tenancy_list_projects")) {
          projects.push_back(
              Project{row[0].as<std::string>(), row[1].as<std::string>(),
                      absl::FromUnixMicros(static_cast<int64_t>(row[2].as<double>() * 1e6))});
        }
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return projects;
}

absl::Status PgTenancyStore::InsertKey(const StoredKey& key) {
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        pqxx::binarystring hash(key.secret_sha256);
        tx.exec_prepared("tenancy_insert_key", key.project_id, key.key_id, KeyKindName(key.kind),
                         ScopesArray(key.scopes), hash, key.display_name);
        return absl::OkStatus();
      },
      logger_);
  if (status.code() == absl::StatusCode::kFailedPrecondition) {
    return absl::NotFoundError("project_id: no such project");
  }
  return status;
}

absl::StatusOr<std::vector<StoredKey>> PgTenancyStore::ListKeys(const std::string& project_id) {
  std::vector<StoredKey> keys;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        keys.clear();
        for (const auto& row : tx.exec_prepared("tenancy_list_keys", project_id)) {
          keys.push_back(KeyFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return keys;
}

absl::Status PgTenancyStore::RevokeKey(const std::string& project_id, const std::string& key_id) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        pqxx::result result = tx.exec_prepared("tenancy_revoke_key", project_id, key_id);
        if (result.affected_rows() == 0) return absl::NotFoundError("key_id: no such key");
        return absl::OkStatus();
      },
      logger_);
}

absl::StatusOr<bool> PgTenancyStore::ProjectExists(const std::string& project_id) {
  bool exists = false;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        exists = !tx.exec_prepared("tenancy_project_exists", project_id).empty();
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return exists;
}

absl::StatusOr<std::optional<StoredKey>> PgTenancyStore::FindServiceKey(const std::string& key_id) {
  std::optional<StoredKey> found;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        pqxx::result rows = tx.exec_prepared("tenancy_find_service_key", key_id);
        found.reset();
        if (!rows.empty()) found = KeyFromRow(rows[0]);
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return found;
}

absl::Status PgTenancyStore::InsertServiceKey(const StoredKey& key) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        pqxx::binarystring hash(key.secret_sha256);
        tx.exec_prepared("tenancy_insert_service_key", key.key_id, ScopesArray(key.scopes), hash,
                         key.display_name);
        return absl::OkStatus();
      },
      logger_);
}

absl::StatusOr<std::vector<StoredKey>> PgTenancyStore::ListServiceKeys() {
  std::vector<StoredKey> keys;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        keys.clear();
        for (const auto& row : tx.exec_prepared("tenancy_list_service_keys")) {
          keys.push_back(KeyFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return keys;
}

absl::Status PgTenancyStore::RevokeServiceKey(const std::string& key_id) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        pqxx::result result = tx.exec_prepared("tenancy_revoke_service_key", key_id);
        if (result.affected_rows() == 0) return absl::NotFoundError("key_id: no such service key");
        return absl::OkStatus();
      },
      logger_);
}

}  // namespace flywheel::auth
