#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <pqxx/connection>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace flywheel::db {

struct PoolOptions {
  // libpq connection string or URL, e.g. "host=127.0.0.1 port=54320 dbname=flywheel".
  std::string conninfo;
  // Upper bound on open connections. Callers beyond it wait up to acquire_timeout.
  int max_connections = 8;
  absl::Duration acquire_timeout = absl::Seconds(5);
  // Sent as application_name so connections are attributable in pg_stat_activity.
  std::string application_name = "flywheel";
};

struct PoolStats {
  int max_connections = 0;
  int open = 0;
  int in_use = 0;
  int waiting = 0;
  uint64_t acquired_total = 0;
  uint64_t timeouts_total = 0;
  uint64_t connect_failures_total = 0;
  uint64_t discarded_total = 0;
};

class ConnectionPool;

// A connection borrowed from the pool; returned on destruction. Call MarkBroken() after a
// connection-level failure so it is closed instead of reused.
class PooledConnection {
 public:
  PooledConnection(PooledConnection&& other) noexcept;
  PooledConnection& operator=(PooledConnection&&) = delete;
  PooledConnection(const PooledConnection&) = delete;
  ~PooledConnection();

  pqxx::connection& operator*() const { return *connection_; }
  pqxx::connection* operator->() const { return connection_.get(); }
  void MarkBroken() { broken_ = true; }

 private:
  friend class ConnectionPool;
  PooledConnection(ConnectionPool* pool, std::unique_ptr<pqxx::connection> connection,
                   size_t prepared);

  ConnectionPool* pool_;
  std::unique_ptr<pqxx::connection> connection_;
  // How many of the pool's registered statements this connection has prepared.
  size_t prepared_;
  bool broken_ = false;
};

// A bounded pool of libpqxx connections (libpqxx 6.4 has none). Connections are opened lazily,
// prepared with every registered statement, and replaced when found broken, so the pool recovers
// by itself after a Postgres restart. Thread-safe.
class ConnectionPool {
 public:
  explicit ConnectionPool(PoolOptions options);
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // Registers a named prepared statement on every connection (existing and future); names must be
  // unique per pool. Connections prepare what they miss when next borrowed.
  // Registering the same name again with the same SQL is a no-op; with different SQL it is a
  // programming error and aborts (it would fail on every connection).
  void RegisterStatement(std::string name, std::string sql);

  // Borrows a connection. UNAVAILABLE when Postgres cannot be reached or no connection frees up
  // within acquire_timeout.
  absl::StatusOr<PooledConnection> Acquire();

  PoolStats Stats() const;
  const PoolOptions& options() const { return options_; }

 private:
  friend class PooledConnection;
  // A broken connection usually means Postgres restarted: every idle connection is then stale
  // too, so all of them are dropped and reopened on demand.
  void Release(std::unique_ptr<pqxx::connection> connection, size_t prepared, bool broken);
  absl::StatusOr<std::unique_ptr<pqxx::connection>> Connect();
  void Prepare(pqxx::connection& connection, size_t from);

  const PoolOptions options_;
  mutable std::mutex mu_;
  std::condition_variable released_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  // Number of prepared statements each idle connection already has (parallel to idle_).
  std::vector<size_t> idle_prepared_;
  std::vector<std::pair<std::string, std::string>> statements_;
  int open_ = 0;
  int in_use_ = 0;
  int waiting_ = 0;
  uint64_t acquired_total_ = 0;
  uint64_t timeouts_total_ = 0;
  uint64_t connect_failures_total_ = 0;
  uint64_t discarded_total_ = 0;
};

}  // namespace flywheel::db
