#include "migrations/migrations.h"

#include "absl/strings/str_cat.h"

namespace flywheel::migrations {

absl::StatusOr<db::MigrationSet> ForSchema(absl::string_view schema) {
  for (db::MigrationSet& set : All()) {
    if (set.schema == schema) return std::move(set);
  }
  return absl::NotFoundError(absl::StrCat("no migrations for schema \"", schema, "\""));
}

}  // namespace flywheel::migrations
