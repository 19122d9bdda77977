#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace flywheel::testing {

// A fresh PostgreSQL database for one test, dropped (with FORCE) when destroyed.
//
// The throwaway cluster is started by the CTest fixture (scripts/pg.sh, wired in
// tests/CMakeLists.txt), which exports FLYWHEEL_TEST_PG, a libpq connection string to its
// maintenance database, and creates `flywheel_template` with every migration applied. Cloning the
// template takes a few tens of milliseconds, so each test gets its own database.
class TestDatabase {
 public:
  enum class Kind {
    kMigrated,  // clone of flywheel_template: all schemas migrated
    kEmpty,     // clone of template0: nothing but the public schema
  };

  static absl::StatusOr<std::unique_ptr<TestDatabase>> Create(Kind kind = Kind::kMigrated);
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  // libpq keyword/value connection string for this database.
  const std::string& conninfo() const { return conninfo_; }
  const std::string& name() const { return name_; }

  // The maintenance connection string from FLYWHEEL_TEST_PG (UNAVAILABLE when unset).
  static absl::StatusOr<std::string> AdminConninfo();

 private:
  TestDatabase(std::string admin, std::string name);

  const std::string admin_conninfo_;
  const std::string name_;
  const std::string conninfo_;
};

}  // namespace flywheel::testing
