#include "tests/pg/test_database.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <pqxx/pqxx>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"

namespace flywheel::testing {

absl::StatusOr<std::string> TestDatabase::AdminConninfo() {
  const char* admin = std::getenv("FLYWHEEL_TEST_PG");
  if (admin == nullptr || *admin == '\0') {
    return absl::UnavailableError(
        "FLYWHEEL_TEST_PG is not set: run db tests through ctest, which starts the throwaway "
        "Postgres fixture");
  }
  return std::string(admin);
}

TestDatabase::TestDatabase(std::string admin, std::string name)
    : admin_conninfo_(std::move(admin)),
      name_(std::move(name)),
      conninfo_(absl::StrCat(admin_conninfo_, " dbname=", name_)) {}

absl::StatusOr<std::unique_ptr<TestDatabase>> TestDatabase::Create(Kind kind) {
  absl::StatusOr<std::string> admin = AdminConninfo();
  if (!admin.ok()) return admin.status();
  static std::atomic<int> counter{0};
  std::random_device random;
  std::string name = absl::StrCat("t_", getpid(), "_", counter++, "_", random() % 1000000);
  const std::string source = kind == Kind::kMigrated ? "flywheel_template" : "template0";
  // A concurrent clone of the same template can fail with 55006 (source in use): retry.
  for (int attempt = 0;; ++attempt) {
    try {
      pqxx::connection connection(*admin);
      pqxx::nontransaction tx(connection);
      tx.exec("CREATE DATABASE " + tx.quote_name(name) + " TEMPLATE " + tx.quote_name(source));
      break;
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() != "55006" || attempt >= 50) {
        return absl::InternalError(absl::StrCat("creating test database: ", e.what()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("creating test database: ", e.what()));
    }
  }
  return std::unique_ptr<TestDatabase>(new TestDatabase(*admin, name));
}

TestDatabase::~TestDatabase() {
  try {
    pqxx::connection connection(admin_conninfo_);
    pqxx::nontransaction tx(connection);
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (const std::exception&) {
    // The whole throwaway cluster is deleted after the run anyway.
  }
}

}  // namespace flywheel::testing
