#include "common/db/pool.h"

#include <cstdio>
#include <cstdlib>
#include <pqxx/connection>
#include <pqxx/except>

#include "absl/strings/str_cat.h"

namespace flywheel::db {

PooledConnection::PooledConnection(ConnectionPool* pool,
                                   std::unique_ptr<pqxx::connection> connection, size_t prepared)
    : pool_(pool), connection_(std::move(connection)), prepared_(prepared) {}

PooledConnection::PooledConnection(PooledConnection&& other) noexcept
    : pool_(other.pool_),
      connection_(std::move(other.connection_)),
      prepared_(other.prepared_),
      broken_(other.broken_) {
  other.pool_ = nullptr;
}

PooledConnection::~PooledConnection() {
  if (pool_ != nullptr && connection_ != nullptr) {
    const bool broken = broken_ || !connection_->is_open();
    pool_->Release(std::move(connection_), prepared_, broken);
  }
}

ConnectionPool::ConnectionPool(PoolOptions options) : options_(std::move(options)) {}

ConnectionPool::~ConnectionPool() = default;

void ConnectionPool::RegisterStatement(std::string name, std::string sql) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [existing, existing_sql] : statements_) {
    if (existing != name) continue;
    if (existing_sql == sql) return;
    std::fprintf(stderr, "prepared statement %s registered twice with different SQL\n",
                 name.c_str());
    std::abort();
  }
  statements_.emplace_back(std::move(name), std::move(sql));
}

void ConnectionPool::Prepare(pqxx::connection& connection, size_t from) {
  // libpqxx 6 prepares lazily on first use, so this costs no round trip.
  std::vector<std::pair<std::string, std::string>> statements;
  {
    std::lock_guard<std::mutex> lock(mu_);
    statements.assign(statements_.begin() + static_cast<long>(from), statements_.end());
  }
  for (const auto& [name, sql] : statements) connection.prepare(name, sql);
}

absl::StatusOr<std::unique_ptr<pqxx::connection>> ConnectionPool::Connect() {
  try {
    // A bounded connect and TCP keepalives, so a vanished host fails fast instead of hanging.
    const int connect_seconds =
        std::max(1, static_cast<int>(absl::ToInt64Seconds(options_.acquire_timeout)));
    std::string conninfo =
        absl::StrCat(options_.conninfo, " application_name=", options_.application_name,
                     " connect_timeout=", connect_seconds, " keepalives=1 keepalives_idle=30");
    if (options_.conninfo.find("://") != std::string::npos) {
      conninfo = absl::StrCat(options_.conninfo,
                              options_.conninfo.find('?') == std::string::npos ? "?" : "&",
                              "application_name=", options_.application_name,
                              "&connect_timeout=", connect_seconds, "&keepalives=1");
    }
    auto connection = std::make_unique<pqxx::connection>(conninfo);
    // The pool replaces broken connections itself; a silent libpqxx reconnect would hide it.
    connection->inhibit_reactivation(true);
    return connection;
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot connect to the database: ", e.what()));
  }
}

absl::StatusOr<PooledConnection> ConnectionPool::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  const absl::Time deadline = absl::Now() + options_.acquire_timeout;
  ++waiting_;
  while (idle_.empty() && open_ >= options_.max_connections) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration() ||
        released_.wait_for(lock, absl::ToChronoNanoseconds(left)) == std::cv_status::timeout) {
      if (!idle_.empty() || open_ < options_.max_connections) break;
      --waiting_;
      ++timeouts_total_;
      return absl::UnavailableError("all database connections are busy; retry");
    }
  }
  --waiting_;
  if (!idle_.empty()) {
    auto connection = std::move(idle_.back());
    size_t prepared = idle_prepared_.back();
    idle_.pop_back();
    idle_prepared_.pop_back();
    ++in_use_;
    ++acquired_total_;
    const size_t registered = statements_.size();
    lock.unlock();
    PooledConnection pooled(this, std::move(connection), prepared);
    if (prepared < registered) {
      try {
        Prepare(*pooled, prepared);
      } catch (const std::exception& e) {
        pooled.MarkBroken();
        return absl::InternalError(absl::StrCat("preparing statements: ", e.what()));
      }
      pooled.prepared_ = registered;
    }
    return pooled;
  }
  // Reserve a slot, then connect without holding the lock.
  ++open_;
  ++in_use_;
  const size_t registered = statements_.size();
  lock.unlock();
  auto connection = Connect();
  if (connection.ok()) {
    try {
      Prepare(**connection, 0);
    } catch (const std::exception& e) {
      connection = absl::InternalError(absl::StrCat("preparing statements: ", e.what()));
    }
  }
  lock.lock();
  if (!connection.ok()) {
    --open_;
    --in_use_;
    ++connect_failures_total_;
    released_.notify_one();
    return connection.status();
  }
  ++acquired_total_;
  return PooledConnection(this, std::move(*connection), registered);
}

void ConnectionPool::Release(std::unique_ptr<pqxx::connection> connection, size_t prepared,
                             bool broken) {
  std::vector<std::unique_ptr<pqxx::connection>> stale;
  std::lock_guard<std::mutex> lock(mu_);
  --in_use_;
  if (broken) {
    stale.push_back(std::move(connection));
    for (auto& idle : idle_) stale.push_back(std::move(idle));
    idle_.clear();
    idle_prepared_.clear();
    open_ -= static_cast<int>(stale.size());
    discarded_total_ += stale.size();
    released_.notify_all();
  } else {
    idle_.push_back(std::move(connection));
    idle_prepared_.push_back(prepared);
    released_.notify_one();
  }
}

PoolStats ConnectionPool::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  PoolStats stats;
  stats.max_connections = options_.max_connections;
  stats.open = open_;
  stats.in_use = in_use_;
  stats.waiting = waiting_;
  stats.acquired_total = acquired_total_;
  stats.timeouts_total = timeouts_total_;
  stats.connect_failures_total = connect_failures_total_;
  stats.discarded_total = discarded_total_;
  return stats;
}

}  // namespace flywheel::db
