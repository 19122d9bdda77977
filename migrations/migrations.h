#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/db/migrate.h"

namespace flywheel::migrations {

// Every schema's migrations as embedded at build time, tenancy first.
std::vector<db::MigrationSet> All();

// The migrations of one schema ("tenancy", "capture", "clustering", "review", "evals");
// NOT_FOUND for an unknown schema.
absl::StatusOr<db::MigrationSet> ForSchema(absl::string_view schema);

}  // namespace flywheel::migrations
