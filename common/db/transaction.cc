#include "common/db/transaction.h"

#include <pqxx/except>
#include <pqxx/transaction>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/db/sql_errors.h"

namespace flywheel::db {
namespace {

absl::Status RunOnce(pqxx::connection& connection, Isolation isolation, const TxBody& body) {
  switch (isolation) {
    case Isolation::kReadCommitted: {
      pqxx::transaction<pqxx::read_committed> tx(connection);
      absl::Status status = body(tx);
      if (status.ok()) tx.commit();
      return status;
    }
    case Isolation::kRepeatableRead: {
      pqxx::transaction<pqxx::repeatable_read> tx(connection);
      absl::Status status = body(tx);
      if (status.ok()) tx.commit();
      return status;
    }
    case Isolation::kSerializable: {
      pqxx::transaction<pqxx::serializable> tx(connection);
      absl::Status status = body(tx);
      if (status.ok()) tx.commit();
      return status;
    }
  }
  return absl::InternalError("unknown isolation level");
}

bool IsConnectionLoss(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) return true;
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) return true;
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e); sql != nullptr) {
    return sql->sqlstate().rfind("08", 0) == 0 || sql->sqlstate().rfind("57P0", 0) == 0;
  }
  return false;
}

}  // namespace

absl::Status RunInTransaction(ConnectionPool& pool, const TxOptions& options, const TxBody& body,
                              Logger* logger, TxStats* stats) {
  std::minstd_rand jitter(std::random_device{}());
  absl::Duration backoff = options.initial_backoff;
  absl::Status last = absl::UnavailableError("no attempt made");
  for (int attempt = 1; attempt <= options.max_attempts; ++attempt) {
    if (stats != nullptr) stats->attempts = attempt;
    {
      // Scoped so the connection goes back to the pool before the backoff sleep.
      absl::StatusOr<PooledConnection> connection = pool.Acquire();
      if (!connection.ok()) return connection.status();
      try {
        return RunOnce(**connection, options.isolation, body);
      } catch (const std::exception& e) {
        if (IsConnectionLoss(e)) connection->MarkBroken();
        last = StatusFromException(e);
        const bool retry = IsRetryable(e) && attempt < options.max_attempts;
        if (logger != nullptr) {
          logger->Log(retry ? Logger::Level::kDebug : Logger::Level::kWarning, "transaction failed",
                      {{"error", e.what()},
                       {"attempt", absl::StrCat(attempt)},
                       {"status", last.ToString()},
                       {"retry", retry ? "true" : "false"}});
        }
        if (!retry) return last;
      }
    }
    const double factor = 0.5 + std::uniform_real_distribution<double>(0, 1)(jitter);
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(backoff * factor));
    backoff = std::min(backoff * 2, options.max_backoff);
  }
  return last;
}

}  // namespace flywheel::db
