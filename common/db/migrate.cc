#include "common/db/migrate.h"

#include <openssl/sha.h>

#include <map>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/db/sql_errors.h"

namespace flywheel::db {
namespace {

constexpr int kAdvisoryLockClass = 0x464c5957;  // "FLYW"

struct Applied {
  std::string name;
  std::string checksum;
};

absl::Status ValidateSet(const MigrationSet& set) {
  if (set.schema.empty()) return absl::InvalidArgumentError("migration set has no schema");
  int previous = 0;
  for (const Migration& migration : set.migrations) {
    if (migration.version <= previous) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "schema %s: migration versions must be strictly increasing (V%04d after V%04d)",
          set.schema, migration.version, previous));
    }
    previous = migration.version;
  }
  return absl::OkStatus();
}

std::map<int, Applied> ReadApplied(pqxx::connection& connection, const std::string& schema) {
  pqxx::work tx(connection);
  std::map<int, Applied> applied;
  // pg_catalog, not information_schema: the latter hides tables the role has no privilege on.
  pqxx::result exists = tx.exec_params(
      "SELECT to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL", schema);
  if (!exists[0][0].as<bool>()) return applied;
  pqxx::result rows = tx.exec("SELECT version, name, checksum FROM " + tx.quote_name(schema) +
                              ".schema_migrations ORDER BY version");
  for (const auto& row : rows) {
    applied[row[0].as<int>()] = Applied{row[1].as<std::string>(), row[2].as<std::string>()};
  }
  tx.commit();
  return applied;
}

// Compares the database's history with the binary's migrations.
absl::Status Verify(const MigrationSet& set, const std::map<int, Applied>& applied,
                    MigrationReport& report) {
  std::map<int, const Migration*> known;
  for (const Migration& migration : set.migrations) known[migration.version] = &migration;
  for (const auto& [version, row] : applied) {
    auto it = known.find(version);
    if (it == known.end()) {
      ++report.unknown_applied;
      continue;
    }
    if (row.checksum != MigrationChecksum(it->second->sql)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "schema %s: applied migration V%04d__%s was edited afterwards (checksum mismatch); "
          "migrations are forward-only: restore the file and add a new migration",
          set.schema, version, row.name));
    }
    report.current_version = std::max(report.current_version, version);
  }
  for (const Migration& migration : set.migrations) {
    if (applied.count(migration.version) == 0) ++report.pending;
  }
  return absl::OkStatus();
}

class AdvisoryLock {
 public:
  AdvisoryLock(pqxx::connection& connection, const std::string& schema)
      : connection_(connection), schema_(schema) {
    pqxx::nontransaction tx(connection_);
    tx.exec_params("SELECT pg_advisory_lock($1, hashtext($2))", kAdvisoryLockClass, schema_);
  }
  ~AdvisoryLock() {
    if (!connection_.is_open()) return;  // the lock died with the session
    try {
      pqxx::nontransaction tx(connection_);
      tx.exec_params("SELECT pg_advisory_unlock($1, hashtext($2))", kAdvisoryLockClass, schema_);
    } catch (const std::exception&) {
      // The lock is released with the session anyway.
    }
  }

 private:
  pqxx::connection& connection_;
  const std::string schema_;
};

absl::Status LogAndMap(const std::exception& e, const std::string& what, Logger* logger) {
  absl::Status status = StatusFromException(e);
  if (logger != nullptr) {
    logger->Error(what, {{"error", e.what()}, {"status", status.ToString()}});
  }
  return status;
}

}  // namespace

std::string MigrationChecksum(const std::string& sql) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(sql.data()), sql.size(), digest);
  std::string hex;
  hex.reserve(2 * SHA256_DIGEST_LENGTH);
  for (unsigned char byte : digest) absl::StrAppendFormat(&hex, "%02x", byte);
  return hex;
}

absl::StatusOr<MigrationReport> CheckMigrations(const std::string& conninfo,
                                                const MigrationSet& set, Logger* logger) {
  if (absl::Status status = ValidateSet(set); !status.ok()) return status;
  MigrationReport report;
  report.schema = set.schema;
  try {
    pqxx::connection connection(conninfo);
    absl::Status status = Verify(set, ReadApplied(connection, set.schema), report);
    if (!status.ok()) return status;
  } catch (const std::exception& e) {
    return LogAndMap(e, "checking migrations failed", logger);
  }
  if (report.pending > 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "schema %s is behind this binary: %d migration(s) pending (run with --migrate)", set.schema,
        report.pending));
  }
  return report;
}

absl::StatusOr<MigrationReport> ApplyMigrations(const std::string& conninfo,
                                                const MigrationSet& set, Logger* logger) {
  if (absl::Status status = ValidateSet(set); !status.ok()) return status;
  MigrationReport report;
  report.schema = set.schema;
  std::unique_ptr<pqxx::connection> connection;
  try {
    connection = std::make_unique<pqxx::connection>(conninfo);
    connection->inhibit_reactivation(true);
  } catch (const std::exception& e) {
    return LogAndMap(e, "cannot connect to migrate", logger);
  }
  try {
    AdvisoryLock lock(*connection, set.schema);
    {
      pqxx::work tx(*connection);
      tx.exec("CREATE SCHEMA IF NOT EXISTS " + tx.quote_name(set.schema));
      tx.exec("CREATE TABLE IF NOT EXISTS " + tx.quote_name(set.schema) +
              ".schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
              "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
      tx.commit();
    }
    const std::map<int, Applied> applied = ReadApplied(*connection, set.schema);
    if (absl::Status status = Verify(set, applied, report); !status.ok()) return status;
    for (const Migration& migration : set.migrations) {
      if (applied.count(migration.version) > 0) continue;
      try {
        pqxx::work tx(*connection);
        tx.exec("SET LOCAL search_path TO " + tx.quote_name(set.schema) + ", public");
        tx.exec(migration.sql);
        tx.exec_params("INSERT INTO " + tx.quote_name(set.schema) +
                           ".schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                       migration.version, migration.name, MigrationChecksum(migration.sql));
        tx.commit();
      } catch (const pqxx::broken_connection& e) {
        return LogAndMap(e, "connection lost while migrating", logger);
      } catch (const std::exception& e) {
        if (logger != nullptr) {
          logger->Error("migration failed", {{"schema", set.schema},
                                             {"version", absl::StrCat(migration.version)},
                                             {"name", migration.name},
                                             {"error", e.what()}});
        }
        return absl::InternalError(absl::StrFormat("schema %s: migration V%04d__%s failed",
                                                   set.schema, migration.version, migration.name));
      }
      ++report.applied_now;
      report.current_version = migration.version;
      if (logger != nullptr) {
        logger->Info("migration applied", {{"schema", set.schema},
                                           {"version", absl::StrCat(migration.version)},
                                           {"name", migration.name}});
      }
    }
    report.pending = 0;
  } catch (const std::exception& e) {
    return LogAndMap(e, "migrating failed", logger);
  }
  return report;
}

}  // namespace flywheel::db
