#include "common/db/sql_errors.h"

#include <pqxx/except>

namespace flywheel::db {

absl::Status StatusFromSqlState(absl::string_view sqlstate) {
  if (sqlstate == "23505") return absl::AlreadyExistsError("already exists");
  if (sqlstate == "23503") return absl::FailedPreconditionError("referenced row does not exist");
  if (sqlstate == "23502" || sqlstate == "23514") {
    return absl::InvalidArgumentError("value violates a constraint");
  }
  if (sqlstate == "40001" || sqlstate == "40P01") {
    return absl::AbortedError("conflicting concurrent update; retry");
  }
  if (sqlstate == "55P03") return absl::AbortedError("row is locked; retry");
  if (sqlstate == "57014") return absl::DeadlineExceededError("statement cancelled");
  if (sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03") {
    return absl::UnavailableError("database is shutting down or starting; retry");
  }
  absl::string_view sql_class = sqlstate.substr(0, 2);
  if (sql_class == "22") return absl::InvalidArgumentError("invalid value");
  if (sql_class == "53" || sql_class == "54") {
    return absl::ResourceExhaustedError("database resources exhausted");
  }
  if (sql_class == "08") return absl::UnavailableError("database connection failed; retry");
  return absl::InternalError("database error");
}

absl::Status StatusFromException(const std::exception& e) {
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return absl::UnavailableError("database connection lost during commit; retry");
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    return absl::UnavailableError("database unavailable; retry");
  }
  if (dynamic_cast<const pqxx::statement_completion_unknown*>(&e) != nullptr) {
    return absl::UnavailableError("statement outcome unknown; retry");
  }
  // libpqxx 6.4 throws these for 40001/40P01 without an SQLSTATE accessor.
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr) {
    return absl::AbortedError("conflicting concurrent update; retry");
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e); sql != nullptr) {
    return StatusFromSqlState(sql->sqlstate());
  }
  return absl::InternalError("database error");
}

bool IsRetryable(const std::exception& e) {
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) return false;
  if (dynamic_cast<const pqxx::serialization_failure*>(&e) != nullptr) return true;
  if (dynamic_cast<const pqxx::deadlock_detected*>(&e) != nullptr) return true;
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) return true;
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e); sql != nullptr) {
    const std::string& state = sql->sqlstate();
    return state == "40001" || state == "40P01" || state.rfind("57P0", 0) == 0 ||
           state.rfind("08", 0) == 0;
  }
  return false;
}

}  // namespace flywheel::db
