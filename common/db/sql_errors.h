#pragma once

#include <exception>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace flywheel::db {

// Maps a PostgreSQL SQLSTATE to the status a client should see. The message is generic (it
// never carries SQL or server text): callers log the detail themselves.
//   23505 unique_violation            -> ALREADY_EXISTS
//   23503 foreign_key_violation       -> FAILED_PRECONDITION
//   23502/23514, class 22 (data)      -> INVALID_ARGUMENT
//   40001/40P01 (after retries)       -> ABORTED
//   55P03 lock_not_available          -> ABORTED
//   57014 query_canceled              -> DEADLINE_EXCEEDED
//   class 53 (resources), 54 (limits) -> RESOURCE_EXHAUSTED
//   class 08 (connection), 57P01-3    -> UNAVAILABLE
//   anything else                     -> INTERNAL
absl::Status StatusFromSqlState(absl::string_view sqlstate);

// Maps an exception thrown by libpqxx (or anything else) to a status, as above. Connection
// loss is UNAVAILABLE; a lost commit (pqxx::in_doubt_error) is UNAVAILABLE too, since the
// caller must retry with its idempotency key to learn the outcome.
absl::Status StatusFromException(const std::exception& e);

// True for failures that are safe to retry in a new transaction: serialization failures,
// deadlocks and connection loss before commit.
bool IsRetryable(const std::exception& e);

}  // namespace flywheel::db
