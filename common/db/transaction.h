#pragma once

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/db/pool.h"
#include "common/log/logger.h"

namespace pqxx {
class transaction_base;
}

namespace flywheel::db {

enum class Isolation { kReadCommitted, kRepeatableRead, kSerializable };

struct TxOptions {
  Isolation isolation = Isolation::kReadCommitted;
  // Attempts in all, including the first. Serialization failures, deadlocks and connection loss
  // before commit are retried with jittered exponential backoff.
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(5);
  absl::Duration max_backoff = absl::Milliseconds(500);
};

// Body of a transaction. It may run more than once (on retry), so it must not have side effects
// outside the transaction that are unsafe to repeat. Returning a non-OK status rolls back and
// returns that status unchanged. Exceptions thrown by libpqxx are caught by RunInTransaction
// and mapped to statuses (see sql_errors.h); they never escape.
using TxBody = std::function<absl::Status(pqxx::transaction_base& tx)>;

struct TxStats {
  int attempts = 0;
};

// Borrows a connection, runs `body` in a transaction and commits, retrying retryable failures.
// Detailed error text is logged through `logger` (when given), never returned.
absl::Status RunInTransaction(ConnectionPool& pool, const TxOptions& options, const TxBody& body,
                              Logger* logger = nullptr, TxStats* stats = nullptr);

}  // namespace flywheel::db
