#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/log/logger.h"

namespace flywheel::db {

// One forward-only migration: migrations/<schema>/V<version>__<name>.sql.
struct Migration {
  int version = 0;
  std::string name;
  std::string sql;
};

// The ordered migrations of one schema.
struct MigrationSet {
  std::string schema;
  std::vector<Migration> migrations;
};

struct MigrationReport {
  std::string schema;
  int applied_now = 0;      // migrations applied by this call
  int pending = 0;          // migrations not yet applied (Check only)
  int current_version = 0;  // highest applied version after the call
  int unknown_applied = 0;  // versions in the database that this binary does not know
};

// Lowercase hex SHA-256 of a migration's SQL text: what the history table records.
std::string MigrationChecksum(const std::string& sql);

// Applies the pending migrations of `set` in version order, each in its own transaction together
// with its history row in <schema>.schema_migrations. Safe when several processes start at once:
// the whole run holds a session advisory lock per schema. Errors:
//   FAILED_PRECONDITION  an applied migration's checksum differs from the file (edited after it
//                        was applied), or versions are not strictly increasing;
//   UNAVAILABLE          the database cannot be reached;
//   INTERNAL             a migration failed (its transaction is rolled back; detail is logged).
absl::StatusOr<MigrationReport> ApplyMigrations(const std::string& conninfo,
                                                const MigrationSet& set, Logger* logger);

// Verifies without changing anything: FAILED_PRECONDITION when migrations are pending (the
// schema is behind this binary) or an applied migration was edited.
absl::StatusOr<MigrationReport> CheckMigrations(const std::string& conninfo,
                                                const MigrationSet& set, Logger* logger);

}  // namespace flywheel::db
