// The migration runner against a real throwaway Postgres.
#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <thread>
#include <vector>

#include "common/db/migrate.h"
#include "common/status/status_matchers.h"
#include "tests/pg/test_database.h"

namespace flywheel::db {
namespace {

using ::flywheel::testing::StatusIs;
using ::flywheel::testing::TestDatabase;

MigrationSet TwoStep() {
  return MigrationSet{"demo",
                      {{1, "items",
                        "CREATE TABLE demo.items (project_id text, id int, "
                        "PRIMARY KEY (project_id, id));"},
                       {2, "seed",
                        "INSERT INTO demo.items VALUES ('p', 1); "
                        "INSERT INTO demo.items VALUES ('p', 2);"}}};
}

int CountItems(const std::string& conninfo) {
  pqxx::connection connection(conninfo);
  pqxx::work tx(connection);
  return tx.exec1("SELECT count(*) FROM demo.items")[0].as<int>();
}

class MigrateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(db_, TestDatabase::Create(TestDatabase::Kind::kEmpty));
  }
  std::unique_ptr<TestDatabase> db_;
  Logger logger_{"test", Logger::Level::kError};
};

TEST_F(MigrateTest, AppliesInOrderOnceAndRecordsChecksums) {
  ASSERT_OK_AND_ASSIGN(MigrationReport first,
                       ApplyMigrations(db_->conninfo(), TwoStep(), &logger_));
  EXPECT_EQ(first.applied_now, 2);
  EXPECT_EQ(first.current_version, 2);
  ASSERT_OK_AND_ASSIGN(MigrationReport again,
                       ApplyMigrations(db_->conninfo(), TwoStep(), &logger_));
  EXPECT_EQ(again.applied_now, 0);
  EXPECT_EQ(CountItems(db_->conninfo()), 2);
  pqxx::connection connection(db_->conninfo());
  pqxx::work tx(connection);
  pqxx::result rows =
      tx.exec("SELECT version, checksum FROM demo.schema_migrations ORDER BY version");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1][1].as<std::string>(), MigrationChecksum(TwoStep().migrations[1].sql));
}

TEST_F(MigrateTest, NewMigrationIsAppliedOnTopOfOldOnes) {
  MigrationSet set = TwoStep();
  set.migrations.pop_back();
  ASSERT_OK(ApplyMigrations(db_->conninfo(), set, &logger_));
  ASSERT_OK_AND_ASSIGN(MigrationReport report,
                       ApplyMigrations(db_->conninfo(), TwoStep(), &logger_));
  EXPECT_EQ(report.applied_now, 1);
  EXPECT_EQ(CountItems(db_->conninfo()), 2);
}

TEST_F(MigrateTest, EditedAppliedMigrationIsRefused) {
  ASSERT_OK(ApplyMigrations(db_->conninfo(), TwoStep(), &logger_));
  MigrationSet edited = TwoStep();
  edited.migrations[1].sql += " INSERT INTO demo.items VALUES ('p', 3);";
  EXPECT_THAT(ApplyMigrations(db_->conninfo(), edited, &logger_),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(CheckMigrations(db_->conninfo(), edited, &logger_),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(CountItems(db_->conninfo()), 2);
}

TEST_F(MigrateTest, FailingMigrationRollsBackAndIsNotRecorded) {
  MigrationSet set = TwoStep();
  set.migrations.push_back({3, "broken", "INSERT INTO demo.items VALUES ('p', 9); SELECT 1/0;"});
  EXPECT_THAT(ApplyMigrations(db_->conninfo(), set, &logger_),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(CountItems(db_->conninfo()), 2);
  set.migrations.pop_back();
  ASSERT_OK_AND_ASSIGN(MigrationReport report, CheckMigrations(db_->conninfo(), set, &logger_));
  EXPECT_EQ(report.current_version, 2);
}

TEST_F(MigrateTest, CheckReportsASchemaThatIsBehind) {
  MigrationSet set = TwoStep();
  set.migrations.pop_back();
  ASSERT_OK(ApplyMigrations(db_->conninfo(), set, &logger_));
  EXPECT_THAT(CheckMigrations(db_->conninfo(), TwoStep(), &logger_),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(ApplyMigrations(db_->conninfo(), TwoStep(), &logger_));
  EXPECT_OK(CheckMigrations(db_->conninfo(), TwoStep(), &logger_));
}

TEST_F(MigrateTest, OutOfOrderVersionsAreRefused) {
  MigrationSet set = TwoStep();
  std::swap(set.migrations[0], set.migrations[1]);
  EXPECT_THAT(ApplyMigrations(db_->conninfo(), set, &logger_),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// Several services start at once against an empty database: the advisory lock serializes them,
// so each migration runs exactly once (a second run of version 2 would insert duplicate keys).
TEST_F(MigrateTest, ConcurrentStartsApplyEachMigrationExactlyOnce) {
  constexpr int kStarters = 8;
  std::vector<std::thread> threads;
  std::vector<absl::StatusOr<MigrationReport>> reports(kStarters, absl::UnknownError("unset"));
  for (int i = 0; i < kStarters; ++i) {
    threads.emplace_back(
        [&, i] { reports[i] = ApplyMigrations(db_->conninfo(), TwoStep(), &logger_); });
  }
  for (auto& thread : threads) thread.join();
  int applied = 0;
  for (const auto& report : reports) {
    ASSERT_OK(report);
    applied += report->applied_now;
  }
  EXPECT_EQ(applied, 2);
  EXPECT_EQ(CountItems(db_->conninfo()), 2);
}

TEST(MigrationFileNameTest, ChecksumIsSha256Hex) {
  EXPECT_EQ(MigrationChecksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace flywheel::db
