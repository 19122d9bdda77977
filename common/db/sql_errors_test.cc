#include "common/db/sql_errors.h"

#include <gtest/gtest.h>

#include <pqxx/except>

#include "common/status/status_matchers.h"

namespace flywheel::db {
namespace {

using ::flywheel::testing::StatusIs;

TEST(SqlStateTest, MapsEachClassToTheDocumentedCode) {
  EXPECT_THAT(StatusFromSqlState("23505"), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(StatusFromSqlState("23503"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(StatusFromSqlState("23514"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(StatusFromSqlState("22P02"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(StatusFromSqlState("40001"), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(StatusFromSqlState("40P01"), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(StatusFromSqlState("57014"), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(StatusFromSqlState("53300"), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(StatusFromSqlState("08006"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(StatusFromSqlState("57P01"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(StatusFromSqlState("42P01"), StatusIs(absl::StatusCode::kInternal));
}

TEST(SqlStateTest, MessagesNeverCarryServerText) {
  pqxx::sql_error error("ERROR: relation \"secret_table\" does not exist", "SELECT * FROM secret",
                        "42P01");
  absl::Status status = StatusFromException(error);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(std::string(status.message()).find("secret"), std::string::npos);
}

TEST(SqlStateTest, ExceptionsMapAndClassifyForRetry) {
  EXPECT_THAT(StatusFromException(pqxx::broken_connection("gone")),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(IsRetryable(pqxx::broken_connection("gone")));
  EXPECT_THAT(StatusFromException(pqxx::in_doubt_error("commit?")),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(IsRetryable(pqxx::in_doubt_error("commit?")));
  EXPECT_TRUE(IsRetryable(pqxx::serialization_failure("conflict")));
  EXPECT_TRUE(IsRetryable(pqxx::deadlock_detected("deadlock")));
  EXPECT_THAT(StatusFromException(pqxx::serialization_failure("conflict")),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_FALSE(IsRetryable(pqxx::unique_violation("dup", "", "23505")));
  EXPECT_THAT(StatusFromException(pqxx::unique_violation("dup", "", "23505")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(StatusFromException(std::runtime_error("boom")),
              StatusIs(absl::StatusCode::kInternal));
}

}  // namespace
}  // namespace flywheel::db
