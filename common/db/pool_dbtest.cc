// Pool and transaction helper against a real throwaway Postgres.
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <pqxx/pqxx>
#include <thread>
#include <vector>

#include "common/db/pg_array.h"
#include "common/db/pool.h"
#include "common/db/transaction.h"
#include "common/status/status_matchers.h"
#include "tests/pg/test_database.h"

namespace flywheel::db {
namespace {

using ::flywheel::testing::StatusIs;
using ::flywheel::testing::TestDatabase;

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(db_, TestDatabase::Create(TestDatabase::Kind::kEmpty));
    pqxx::connection connection(db_->conninfo());
    pqxx::work tx(connection);
    tx.exec("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)");
    tx.exec("INSERT INTO counters VALUES (1, 0)");
    tx.commit();
  }
  std::unique_ptr<TestDatabase> db_;
};

TEST_F(PoolTest, NeverOpensMoreThanItsBoundAndTimesOutWhenExhausted) {
  ConnectionPool pool({db_->conninfo(), 2, absl::Milliseconds(200)});
  ASSERT_OK_AND_ASSIGN(auto first, pool.Acquire());
  ASSERT_OK_AND_ASSIGN(auto second, pool.Acquire());
  EXPECT_EQ(pool.Stats().open, 2);
  EXPECT_THAT(pool.Acquire(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(pool.Stats().timeouts_total, 1u);
}

TEST_F(PoolTest, WaiterGetsTheConnectionWhenItIsReleased) {
  ConnectionPool pool({db_->conninfo(), 1, absl::Seconds(5)});
  auto first = pool.Acquire();
  ASSERT_OK(first);
  std::optional<PooledConnection> held(std::move(*first));
  std::atomic<bool> got{false};
  std::thread waiter([&] { got = pool.Acquire().ok(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(got.load());
  EXPECT_EQ(pool.Stats().waiting, 1);
  held.reset();
  waiter.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(pool.Stats().open, 1);
}

TEST_F(PoolTest, BrokenConnectionIsDiscardedNotReused) {
  ConnectionPool pool({db_->conninfo(), 1, absl::Seconds(5)});
  {
    ASSERT_OK_AND_ASSIGN(auto connection, pool.Acquire());
    connection.MarkBroken();
  }
  EXPECT_EQ(pool.Stats().discarded_total, 1u);
  EXPECT_EQ(pool.Stats().open, 0);
  ASSERT_OK(pool.Acquire());
}

TEST_F(PoolTest, PreparedStatementsAreAvailableOnEveryConnection) {
  ConnectionPool pool({db_->conninfo(), 2, absl::Seconds(5)});
  pool.RegisterStatement("get_counter", "SELECT n FROM counters WHERE id = $1");
  ASSERT_OK(RunInTransaction(pool, {}, [](pqxx::transaction_base& tx) {
    EXPECT_EQ(tx.exec_prepared1("get_counter", 1)[0].as<int>(), 0);
    return absl::OkStatus();
  }));
  // A statement registered later reaches connections that were opened before it.
  pool.RegisterStatement("bump", "UPDATE counters SET n = n + 1 WHERE id = $1");
  ASSERT_OK(RunInTransaction(pool, {}, [](pqxx::transaction_base& tx) {
    tx.exec_prepared("bump", 1);
    return absl::OkStatus();
  }));
  ASSERT_OK(RunInTransaction(pool, {}, [](pqxx::transaction_base& tx) {
    EXPECT_EQ(tx.exec_prepared1("get_counter", 1)[0].as<int>(), 1);
    return absl::OkStatus();
  }));
}

TEST_F(PoolTest, UnreachableDatabaseIsUnavailable) {
  ConnectionPool pool({"host=127.0.0.1 port=1 connect_timeout=2", 2, absl::Seconds(1)});
  EXPECT_THAT(pool.Acquire(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(RunInTransaction(pool, {}, [](pqxx::transaction_base&) { return absl::OkStatus(); }),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(pool.Stats().open, 0);
}

TEST_F(PoolTest, BodyErrorRollsBackAndIsReturnedUnchanged) {
  ConnectionPool pool({db_->conninfo(), 2, absl::Seconds(5)});
  absl::Status status = RunInTransaction(pool, {}, [](pqxx::transaction_base& tx) {
    tx.exec("UPDATE counters SET n = 100 WHERE id = 1");
    return absl::FailedPreconditionError("changed my mind");
  });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(RunInTransaction(pool, {}, [](pqxx::transaction_base& tx) {
    EXPECT_EQ(tx.exec1("SELECT n FROM counters WHERE id = 1")[0].as<int>(), 0);
    return absl::OkStatus();
  }));
}

TEST_F(PoolTest, SqlErrorsMapToStatusCodes) {
  ConnectionPool pool({db_->conninfo(), 2, absl::Seconds(5)});
  EXPECT_THAT(RunInTransaction(pool, {},
                               [](pqxx::transaction_base& tx) {
                                 tx.exec("INSERT INTO counters VALUES (1, 5)");
                                 return absl::OkStatus();
                               }),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(RunInTransaction(pool, {},
                               [](pqxx::transaction_base& tx) {
                                 tx.exec("SELECT 'x'::int");
                                 return absl::OkStatus();
                               }),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Concurrent serializable read-modify-write transactions conflict with 40001; the helper retries
// them, so every increment lands exactly once.
TEST_F(PoolTest, SerializationFailuresAreRetriedUntilEveryIncrementLands) {
  ConnectionPool pool({db_->conninfo(), 8, absl::Seconds(10)});
  constexpr int kThreads = 8;
  constexpr int kIncrements = 25;
  std::atomic<int> retried{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  TxOptions options;
  options.isolation = Isolation::kSerializable;
  options.max_attempts = 100;
  options.max_backoff = absl::Milliseconds(20);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        TxStats stats;
        absl::Status status = RunInTransaction(
            pool, options,
            [](pqxx::transaction_base& tx) {
              const int n = tx.exec1("SELECT n FROM counters WHERE id = 1")[0].as<int>();
              tx.exec_params("UPDATE counters SET n = $1 WHERE id = 1", n + 1);
              return absl::OkStatus();
            },
            nullptr, &stats);
        if (!status.ok()) ++failed;
        if (stats.attempts > 1) ++retried;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(retried.load(), 0) << "the test produced no conflicts, so it proved nothing";
  ASSERT_OK(RunInTransaction(pool, {}, [](pqxx::transaction_base& tx) {
    EXPECT_EQ(tx.exec1("SELECT n FROM counters WHERE id = 1")[0].as<int>(), kThreads * kIncrements);
    return absl::OkStatus();
  }));
}

TEST_F(PoolTest, ExhaustedRetriesOfSerializationFailureAreAborted) {
  ConnectionPool pool({db_->conninfo(), 2, absl::Seconds(5)});
  TxOptions options;
  options.max_attempts = 2;
  int calls = 0;
  absl::Status status = RunInTransaction(pool, options, [&](pqxx::transaction_base& tx) {
    ++calls;
    // Raise 40001 from the server, as a real conflict would.
    tx.exec("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$");
    return absl::OkStatus();
  });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(calls, 2);
}

TEST_F(PoolTest, KilledConnectionIsReplacedAndTheTransactionRetried) {
  ConnectionPool pool({db_->conninfo(), 1, absl::Seconds(5)});
  int backend_pid = 0;
  ASSERT_OK(RunInTransaction(pool, {}, [&](pqxx::transaction_base& tx) {
    backend_pid = tx.exec1("SELECT pg_backend_pid()")[0].as<int>();
    return absl::OkStatus();
  }));
  {
    pqxx::connection admin(db_->conninfo());
    pqxx::nontransaction tx(admin);
    tx.exec_params("SELECT pg_terminate_backend($1)", backend_pid);
  }
  int new_pid = 0;
  ASSERT_OK(RunInTransaction(pool, {}, [&](pqxx::transaction_base& tx) {
    new_pid = tx.exec1("SELECT pg_backend_pid()")[0].as<int>();
    return absl::OkStatus();
  }));
  EXPECT_NE(new_pid, backend_pid);
}

}  // namespace
}  // namespace flywheel::db

namespace flywheel::db {
namespace {

TEST_F(PoolTest, ArrayLiteralsRoundTripAwkwardValues) {
  ConnectionPool pool({db_->conninfo(), 1, absl::Seconds(5)});
  const std::vector<std::string> texts = {"plain", "with \"quotes\"", "back\\slash", "NULL",
                                          "",      "comma, {brace}"};
  const std::vector<std::string> bytes = {std::string("\0\x01\xff", 3), "", "abc"};
  ASSERT_OK(RunInTransaction(pool, {}, [&](pqxx::transaction_base& tx) {
    pqxx::result rows = tx.exec_params(
        "SELECT t FROM unnest($1::text[]) WITH ORDINALITY u(t, n) ORDER BY n", TextArray(texts));
    EXPECT_EQ(rows.size(), texts.size());
    for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i][0].as<std::string>(), texts[i]);
    pqxx::result blobs = tx.exec_params(
        "SELECT length(b), encode(b, 'hex') FROM unnest($1::bytea[]) WITH ORDINALITY u(b, n) ORDER "
        "BY n",
        ByteaArray(bytes));
    EXPECT_EQ(blobs[0][0].as<int>(), 3);
    EXPECT_EQ(blobs[0][1].as<std::string>(), "0001ff");
    EXPECT_EQ(blobs[1][0].as<int>(), 0);
    EXPECT_EQ(blobs[2][1].as<std::string>(), "616263");
    pqxx::result sum = tx.exec_params("SELECT sum(x) FROM unnest($1::int8[]) x",
                                      NumberArray(std::vector<int64_t>{1, -2, 40}));
    EXPECT_EQ(sum[0][0].as<int64_t>(), 39);
    pqxx::result precise = tx.exec_params("SELECT x FROM unnest($1::float8[]) x",
                                          NumberArray(std::vector<double>{0.47634019981291326}));
    EXPECT_EQ(precise[0][0].as<double>(), 0.47634019981291326);
    return absl::OkStatus();
  }));
}

}  // namespace
}  // namespace flywheel::db
