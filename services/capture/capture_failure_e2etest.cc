// Failure tests of the real flywheel-capture binary under ingestion load:
// - SIGKILLed twice mid-load and restarted: every acknowledged item is stored exactly once and
//   retried batches come back as duplicates (acknowledge only after commit, idempotent ids).
// - Its Postgres stopped and started again: calls fail with UNAVAILABLE while the database is
//   down, the process stays up, and ingestion recovers by itself once Postgres is back.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/auth/tenancy_admin.h"
#include "common/db/pool.h"
#include "common/log/logger.h"
#include "common/status/status_matchers.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "tests/e2e/service_process.h"
#include "tests/pg/test_database.h"

#ifndef FLYWHEEL_SOURCE_DIR
#error "FLYWHEEL_SOURCE_DIR must name the repository root (see failure_tests.cmake)"
#endif

namespace flywheel::capture {
namespace {

using ::flywheel::testing::ServiceProcess;
using ::flywheel::testing::TestDatabase;

constexpr char kProject[] = "failproj";

// Creates the project and a secret key with ingest,read on `conninfo` (migrated tenancy schema).
absl::StatusOr<std::string> CreateProjectAndKey(const std::string& conninfo) {
  Logger logger("test", Logger::Level::kError);
  db::ConnectionPool pool(db::PoolOptions{conninfo, 2});
  auth::PgTenancyStore store(&pool, &logger);
  auth::TenancyAdmin admin(&store);
  absl::StatusOr<auth::Project> project = admin.CreateProject(kProject, "failure tests");
  if (!project.ok()) return project.status();
  const auto scopes = static_cast<auth::ScopeSet>(auth::Scope::kIngest) |
                      static_cast<auth::ScopeSet>(auth::Scope::kRead);
  absl::StatusOr<auth::CreatedKey> key =
      admin.CreateKey(kProject, auth::KeyKind::kSecret, scopes, "load generator");
  if (!key.ok()) return key.status();
  return key->plaintext;
}

google::protobuf::Timestamp Timestamp(absl::Time time) {
  google::protobuf::Timestamp out;
  const int64_t micros = absl::ToUnixMicros(time);
  out.set_seconds(micros / 1000000);
  out.set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
  return out;
}

// The address of the service currently serving; a restart bumps the generation so that clients
// build a new channel even if the new process happens to get the same port.
class Target {
 public:
  void Set(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    address_ = address;
    ++generation_;
  }
  std::pair<std::string, int> Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {address_, generation_};
  }

 private:
  mutable std::mutex mu_;
  std::string address_;
  int generation_ = 0;
};

struct Attempt {
  absl::Time start;
  absl::Time end;
  grpc::StatusCode code;
  int generation;  // of the address the call went to
};

struct LoadOptions {
  std::string id_prefix;
  int clients = 3;
  int traces_per_batch = 50;
  int signals_per_batch = 50;
  absl::Duration rpc_deadline = absl::Seconds(5);
  absl::Duration retry_pause = absl::Milliseconds(25);
  absl::Duration batch_pause = absl::ZeroDuration();
};

// Client threads sending Ingest batches with deterministic ids and content. A batch that is not
// acknowledged (any non-OK status) is resent unchanged until it is; acknowledged item ids are
// recorded.
class LoadGenerator {
 public:
  LoadGenerator(LoadOptions options, const Target* target, std::string key, absl::Time base)
      : options_(std::move(options)), target_(target), key_(std::move(key)), base_(base) {}
  ~LoadGenerator() { Finish(absl::ZeroDuration()); }

  void Start() {
    for (int c = 0; c < options_.clients; ++c) threads_.emplace_back([this, c] { Client(c); });
  }

  // Stops starting new batches; pending ones are retried for at most `patience`, then given up
  // (counted in abandoned()). Joins the threads.
  void Finish(absl::Duration patience) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stop_new_) give_up_ = absl::Now() + patience;
      stop_new_ = true;
    }
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

  int in_flight() const { return in_flight_.load(); }

  // Snapshot accessors (thread-safe).
  std::vector<Attempt> attempts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return attempts_;
  }
  int acknowledged_batches() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acknowledged_batches_;
  }
  int retried_batches() const {
    std::lock_guard<std::mutex> lock(mu_);
    return retried_batches_;
  }
  int retried_batches_with_duplicates() const {
    std::lock_guard<std::mutex> lock(mu_);
    return retried_batches_with_duplicates_;
  }
  int abandoned() const {
    std::lock_guard<std::mutex> lock(mu_);
    return abandoned_;
  }
  int bad_results() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bad_results_;
  }
  int first_attempt_duplicates() const {
    std::lock_guard<std::mutex> lock(mu_);
    return first_attempt_duplicates_;
  }
  std::set<std::string> sent_traces() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sent_traces_;
  }
  std::set<std::string> sent_signals() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sent_signals_;
  }
  std::set<std::string> acked_traces() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_traces_;
  }
  std::set<std::string> acked_signals() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_signals_;
  }
  // Time at which the first call that started after `after` was acknowledged.
  std::optional<absl::Time> FirstSuccessStartedAfter(absl::Time after) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::optional<absl::Time> first;
    for (const Attempt& attempt : attempts_) {
      if (attempt.code == grpc::StatusCode::OK && attempt.start > after &&
          (!first.has_value() || attempt.end < *first)) {
        first = attempt.end;
      }
    }
    return first;
  }

 private:
  v1::IngestRequest MakeBatch(int client, int64_t batch) const {
    v1::IngestRequest request;
    const std::string stem = absl::StrCat(options_.id_prefix, "-c", client, "-b", batch);
    for (int i = 0; i < options_.traces_per_batch; ++i) {
      v1::Trace* trace = request.add_items()->mutable_trace();
      trace->set_trace_id(absl::StrCat(stem, "-t", i));
      trace->set_session_id(absl::StrCat(stem, "-session"));
      trace->set_user_id(absl::StrCat("user-", client));
      trace->set_feature_area("search");
      trace->set_model("gpt-test");
      trace->mutable_input()->set_prompt(absl::StrCat("question ", i, " of batch ", batch));
      trace->set_output(absl::StrCat("answer ", i, " for client ", client));
      *trace->mutable_start_time() = Timestamp(base_ + absl::Milliseconds(i));
    }
    for (int i = 0; i < options_.signals_per_batch; ++i) {
      v1::Signal* signal = request.add_items()->mutable_signal();
      signal->set_event_id(absl::StrCat(stem, "-s", i));
      signal->set_trace_id(absl::StrCat(stem, "-t", i % std::max(1, options_.traces_per_batch)));
      // One user per batch: a single user's thousands of thumbs would hit the per-user limit.
      signal->set_user_id(absl::StrCat(stem, "-user"));
      *signal->mutable_occur_time() = Timestamp(base_ + absl::Seconds(1) + absl::Milliseconds(i));
      if (i % 2 == 0) {
        signal->mutable_explicit_feedback()->set_thumb(i % 4 == 0 ? v1::THUMB_DOWN : v1::THUMB_UP);
      } else {
        signal->mutable_implicit_signal()->mutable_copy()->set_copied_chars(10 + i);
      }
    }
    return request;
  }

  bool GiveUp() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stop_new_ && absl::Now() > give_up_;
  }
  bool StopNew() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stop_new_;
  }

  void Client(int client) {
    std::unique_ptr<v1::CaptureService::Stub> stub;
    int stub_generation = -1;
    for (int64_t batch = 0; !StopNew(); ++batch) {
      const v1::IngestRequest request = MakeBatch(client, batch);
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& item : request.items()) {
          if (item.has_trace()) sent_traces_.insert(item.trace().trace_id());
          if (item.has_signal()) sent_signals_.insert(item.signal().event_id());
        }
      }
      int tries = 0;
      while (true) {
        if (GiveUp()) {
          std::lock_guard<std::mutex> lock(mu_);
          ++abandoned_;
          break;
        }
        const auto [address, generation] = target_->Get();
        if (generation != stub_generation) {
          stub = v1::CaptureService::NewStub(
              grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
          stub_generation = generation;
        }
        grpc::ClientContext context;
        context.AddMetadata("authorization", "Bearer " + key_);
        context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_deadline));
        v1::IngestResponse response;
        ++in_flight_;
        const absl::Time start = absl::Now();
        const grpc::Status status = stub->Ingest(&context, request, &response);
        const absl::Time end = absl::Now();
        --in_flight_;
        ++tries;
        if (!status.ok()) {
          {
            std::lock_guard<std::mutex> lock(mu_);
            attempts_.push_back(Attempt{start, end, status.error_code(), generation});
          }
          std::this_thread::sleep_for(absl::ToChronoNanoseconds(options_.retry_pause));
          continue;
        }
        std::lock_guard<std::mutex> lock(mu_);
        attempts_.push_back(Attempt{start, end, status.error_code(), generation});
        ++acknowledged_batches_;
        bool any_duplicate = false;
        if (response.results_size() != request.items_size()) ++bad_results_;
        for (int i = 0; i < response.results_size(); ++i) {
          const v1::IngestResult& result = response.results(i);
          const auto outcome = result.result().outcome();
          if (result.result().index() != i || (outcome != common::v1::ITEM_OUTCOME_ACCEPTED &&
                                               outcome != common::v1::ITEM_OUTCOME_DUPLICATE)) {
            ++bad_results_;
            continue;
          }
          if (outcome == common::v1::ITEM_OUTCOME_DUPLICATE) any_duplicate = true;
          const auto& item = request.items(i);
          if (item.has_trace() && result.result().id() == item.trace().trace_id()) {
            acked_traces_.insert(result.result().id());
          } else if (item.has_signal() && result.result().id() == item.signal().event_id()) {
            acked_signals_.insert(result.result().id());
          } else {
            ++bad_results_;
          }
        }
        if (tries > 1) {
          ++retried_batches_;
          if (any_duplicate) ++retried_batches_with_duplicates_;
        } else if (any_duplicate) {
          ++first_attempt_duplicates_;  // fresh ids cannot be duplicates
        }
        break;
      }
      if (options_.batch_pause > absl::ZeroDuration()) {
        std::this_thread::sleep_for(absl::ToChronoNanoseconds(options_.batch_pause));
      }
    }
  }

  const LoadOptions options_;
  const Target* const target_;
  const std::string key_;
  const absl::Time base_;
  std::vector<std::thread> threads_;
  std::atomic<int> in_flight_{0};

  mutable std::mutex mu_;
  bool stop_new_ = false;
  absl::Time give_up_ = absl::InfiniteFuture();
  std::vector<Attempt> attempts_;
  int acknowledged_batches_ = 0;
  int retried_batches_ = 0;
  int retried_batches_with_duplicates_ = 0;
  int first_attempt_duplicates_ = 0;
  int abandoned_ = 0;
  int bad_results_ = 0;
  std::set<std::string> sent_traces_, sent_signals_, acked_traces_, acked_signals_;
};

// Every id of a project in a capture table, with how often it is stored.
std::map<std::string, int> StoredIds(const std::string& conninfo, const std::string& table,
                                     const std::string& column) {
  pqxx::connection connection(conninfo);
  pqxx::read_transaction tx(connection);
  std::map<std::string, int> ids;
  for (const auto& row : tx.exec_params("SELECT " + column + ", count(*) FROM capture." + table +
                                            " WHERE project_id = $1 GROUP BY 1",
                                        kProject)) {
    ids[row[0].as<std::string>()] = row[1].as<int>();
  }
  return ids;
}

// How many of `a` are not in `b`.
size_t Missing(const std::set<std::string>& a, const std::set<std::string>& b) {
  size_t n = 0;
  for (const std::string& id : a) n += b.count(id) == 0 ? 1 : 0;
  return n;
}

// Every acknowledged id is stored exactly once, and nothing else is stored.
void ExpectStoredExactlyOnce(const std::map<std::string, int>& stored,
                             const std::set<std::string>& acknowledged, const char* what) {
  int missing = 0, repeated = 0, unacknowledged = 0;
  for (const std::string& id : acknowledged) {
    auto it = stored.find(id);
    if (it == stored.end()) {
      if (++missing <= 5) ADD_FAILURE() << what << " acknowledged but not stored: " << id;
    } else if (it->second != 1) {
      if (++repeated <= 5) ADD_FAILURE() << what << " stored " << it->second << " times: " << id;
    }
  }
  for (const auto& [id, count] : stored) {
    if (acknowledged.count(id) == 0 && ++unacknowledged <= 5) {
      ADD_FAILURE() << what << " stored but never acknowledged: " << id;
    }
  }
  EXPECT_EQ(missing, 0) << what;
  EXPECT_EQ(repeated, 0) << what;
  EXPECT_EQ(unacknowledged, 0) << what;
  EXPECT_EQ(stored.size(), acknowledged.size()) << what;
}

std::vector<std::string> CaptureArgs(const std::string& conninfo) {
  return {"--database_url=" + conninfo, "--listen=127.0.0.1:0",
          "--metrics_listen=", "--log_level=warning", "--db_acquire_timeout=2s"};
}

// Still running: did not exit within a short wait.
bool StillRunning(ServiceProcess& process) {
  return process.WaitExit(absl::Milliseconds(60)).status().code() ==
         absl::StatusCode::kDeadlineExceeded;
}

// ---------------------------------------------------------------------------------------------

TEST(CaptureFailureE2eTest, KilledWithSigkillUnderLoadLosesNoAcknowledgedEvent) {
  const absl::Time test_start = absl::Now();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDatabase> db, TestDatabase::Create());
  ASSERT_OK_AND_ASSIGN(const std::string key, CreateProjectAndKey(db->conninfo()));

  std::vector<std::unique_ptr<ServiceProcess>> processes;  // every generation, for the logs
  auto start_service = [&]() -> absl::Status {
    processes.push_back(
        std::make_unique<ServiceProcess>("flywheel-capture", CaptureArgs(db->conninfo())));
    if (absl::Status status = processes.back()->Start(); !status.ok()) return status;
    return processes.back()->WaitServing(absl::Seconds(30));
  };
  Target target;
  ASSERT_OK(start_service());
  target.Set(processes.back()->address());

  LoadOptions options;
  options.id_prefix = "kill";
  options.clients = 3;
  options.traces_per_batch = 50;
  options.signals_per_batch = 50;
  options.rpc_deadline = absl::Seconds(5);
  LoadGenerator load(options, &target, key, absl::Now() - absl::Minutes(2));
  const absl::Time load_start = absl::Now();
  load.Start();

  struct Kill {
    int generation;
    absl::Time at;
    int in_flight;
    absl::Duration restart;
  };
  std::vector<Kill> kills;
  for (const absl::Duration kill_at : {absl::Milliseconds(1500), absl::Milliseconds(3500)}) {
    absl::SleepFor(load_start + kill_at - absl::Now());
    // Kill while calls are in flight, so some die mid-request (bounded wait).
    const absl::Time wait_until = absl::Now() + absl::Seconds(2);
    while (load.in_flight() < 2 && absl::Now() < wait_until) absl::SleepFor(absl::Milliseconds(1));
    Kill kill{target.Get().second, absl::Now(), load.in_flight(), absl::ZeroDuration()};
    ASSERT_OK_AND_ASSIGN(int code, processes.back()->Stop(SIGKILL, absl::Seconds(10)));
    EXPECT_EQ(code, 128 + SIGKILL);
    ASSERT_OK(start_service());
    target.Set(processes.back()->address());
    kill.restart = absl::Now() - kill.at;
    kills.push_back(kill);
  }
  absl::SleepFor(load_start + absl::Seconds(6) - absl::Now());
  load.Finish(/*patience=*/absl::Seconds(20));
  ASSERT_TRUE(StillRunning(*processes.back())) << processes.back()->Log();

  // Every batch was acknowledged in the end, with one well-formed result per item.
  EXPECT_EQ(load.abandoned(), 0);
  EXPECT_EQ(load.bad_results(), 0);
  EXPECT_EQ(load.first_attempt_duplicates(), 0);
  EXPECT_EQ(Missing(load.sent_traces(), load.acked_traces()), 0u);
  EXPECT_EQ(load.acked_traces().size(), load.sent_traces().size());
  EXPECT_EQ(Missing(load.sent_signals(), load.acked_signals()), 0u);
  EXPECT_EQ(load.acked_signals().size(), load.sent_signals().size());

  // The kills really interrupted the load: calls to each killed process failed and their
  // batches were retried.
  const std::vector<Attempt> attempts = load.attempts();
  std::map<int, int> failures_by_generation;
  std::map<grpc::StatusCode, int> failure_codes;
  int failed_attempts = 0;
  for (const Attempt& attempt : attempts) {
    if (attempt.code == grpc::StatusCode::OK) continue;
    ++failed_attempts;
    ++failures_by_generation[attempt.generation];
    ++failure_codes[attempt.code];
  }
  for (const Kill& kill : kills) {
    EXPECT_GE(failures_by_generation[kill.generation], 1)
        << "no call failed when generation " << kill.generation << " was killed";
  }
  EXPECT_GE(load.retried_batches(), 1);
  // A dead server answers UNAVAILABLE (or, at worst, the deadline passes); never a server error.
  for (const auto& [code, count] : failure_codes) {
    EXPECT_TRUE(code == grpc::StatusCode::UNAVAILABLE ||
                code == grpc::StatusCode::DEADLINE_EXCEEDED)
        << "unexpected status code " << code << " (" << count << " calls)";
  }

  // Postgres holds every acknowledged item exactly once, and nothing else.
  const std::map<std::string, int> traces = StoredIds(db->conninfo(), "traces", "trace_id");
  const std::map<std::string, int> signals = StoredIds(db->conninfo(), "signals", "event_id");
  ExpectStoredExactlyOnce(traces, load.acked_traces(), "trace");
  ExpectStoredExactlyOnce(signals, load.acked_signals(), "signal");

  std::cout << "[ stats    ] batches acknowledged=" << load.acknowledged_batches()
            << " attempts=" << attempts.size() << " failed_attempts=" << failed_attempts
            << " retried_batches=" << load.retried_batches()
            << " retried_batches_answered_duplicate=" << load.retried_batches_with_duplicates()
            << " traces=" << traces.size() << " signals=" << signals.size() << "\n";
  for (const Kill& kill : kills) {
    std::cout << "[ stats    ] kill of generation " << kill.generation
              << ": in_flight=" << kill.in_flight
              << " failed_calls=" << failures_by_generation[kill.generation]
              << " restart_took=" << kill.restart << "\n";
  }
  for (const auto& [code, count] : failure_codes) {
    std::cout << "[ stats    ] failure code " << code << ": " << count << " calls\n";
  }
  EXPECT_LT(absl::Now() - test_start, absl::Seconds(60));
  if (HasFailure()) {
    for (const auto& process : processes) std::cerr << process->Log();
  }
}

// ---------------------------------------------------------------------------------------------

// A Postgres cluster of this test alone (the shared fixture cluster is never restarted).
class CapturePostgresRestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/flywheel-capfail-pg-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    port_ = 55000 + static_cast<int>(::getpid() % 1000);
    ASSERT_EQ(PgCtl("start"), 0) << "cannot start a Postgres cluster in " << dir_;
    const std::string admin = absl::StrCat("host=", dir_, " port=", port_, " user=postgres");
    {
      pqxx::connection connection(admin + " dbname=postgres");
      pqxx::nontransaction tx(connection);
      tx.exec("CREATE DATABASE capfail");
    }
    conninfo_ = admin + " dbname=capfail";
  }

  void TearDown() override {
    if (service_ != nullptr && HasFailure()) std::cerr << service_->Log();
    service_.reset();  // SIGKILLs it if still running
    if (!dir_.empty()) {
      PgCtl("destroy");
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  int PgCtl(const std::string& command) {
    std::string line =
        absl::StrCat("bash '", FLYWHEEL_SOURCE_DIR, "/scripts/pg.sh' ", command, " '", dir_, "'");
    if (command == "start") absl::StrAppend(&line, " ", port_, " '' --fast");
    const int rc = std::system(line.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }

  std::string dir_;
  int port_ = 0;
  std::string conninfo_;
  std::unique_ptr<ServiceProcess> service_;
};

TEST_F(CapturePostgresRestartTest,
       PostgresRestartUnderLoadIsUnavailableThenRecoversWithoutServiceRestart) {
  const absl::Time test_start = absl::Now();
  // The service migrates the empty database itself; the key is created afterwards.
  service_ = std::make_unique<ServiceProcess>("flywheel-capture", CaptureArgs(conninfo_));
  ASSERT_OK(service_->Start());
  ASSERT_OK(service_->WaitServing(absl::Seconds(30)));
  ASSERT_OK_AND_ASSIGN(const std::string key, CreateProjectAndKey(conninfo_));
  const int port = service_->grpc_port();

  Target target;
  target.Set(service_->address());
  LoadOptions options;
  options.id_prefix = "pgrestart";
  options.clients = 2;
  options.traces_per_batch = 5;
  options.signals_per_batch = 5;
  options.rpc_deadline = absl::Seconds(10);  // longer than any server-side wait for the database
  options.retry_pause = absl::Milliseconds(50);
  options.batch_pause = absl::Milliseconds(20);
  LoadGenerator load(options, &target, key, absl::Now() - absl::Minutes(2));
  load.Start();

  // Healthy first.
  absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (load.acknowledged_batches() < 10 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GE(load.acknowledged_batches(), 10);

  // Postgres goes away.
  const absl::Time stop_begin = absl::Now();
  ASSERT_EQ(PgCtl("stop"), 0);
  const absl::Time stopped = absl::Now();
  // Calls fail while it is down; keep it down until several have failed (and at least 2 s).
  auto failures_since = [&load](absl::Time since) {
    int n = 0;
    for (const Attempt& attempt : load.attempts()) {
      if (attempt.start >= since && attempt.code != grpc::StatusCode::OK) ++n;
    }
    return n;
  };
  deadline = stopped + absl::Seconds(20);
  while ((failures_since(stopped) < 5 || absl::Now() < stopped + absl::Seconds(2)) &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GE(failures_since(stopped), 5);
  ASSERT_TRUE(StillRunning(*service_)) << "the service died with its database";

  // Postgres comes back; the same process recovers by itself.
  const absl::Time restart_begin = absl::Now();
  ASSERT_EQ(PgCtl("start"), 0);
  const absl::Time restarted = absl::Now();
  deadline = restarted + absl::Seconds(20);
  std::optional<absl::Time> recovered;
  while (!(recovered = load.FirstSuccessStartedAfter(restarted)).has_value() &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(recovered.has_value()) << "no call succeeded within 20 s of Postgres restarting";
  // Keep the load going a little on the recovered service.
  absl::SleepFor(absl::Milliseconds(500));
  load.Finish(/*patience=*/absl::Seconds(20));
  EXPECT_TRUE(StillRunning(*service_));
  EXPECT_EQ(service_->grpc_port(), port);

  // While the database was down (stop issued .. start finished), every failed call failed with
  // UNAVAILABLE; no call failed outside that window.
  const std::vector<Attempt> attempts = load.attempts();
  std::map<grpc::StatusCode, int> outage_codes;
  int failed_outside = 0;
  std::optional<absl::Time> first_failure, last_failure;
  for (const Attempt& attempt : attempts) {
    if (attempt.code == grpc::StatusCode::OK) continue;
    if (attempt.end >= stop_begin && attempt.start <= restarted) {
      ++outage_codes[attempt.code];
      if (!first_failure.has_value() || attempt.end < *first_failure) first_failure = attempt.end;
      if (!last_failure.has_value() || attempt.end > *last_failure) last_failure = attempt.end;
    } else {
      ++failed_outside;
    }
  }
  EXPECT_GE(outage_codes[grpc::StatusCode::UNAVAILABLE], 5);
  for (const auto& [code, count] : outage_codes) {
    EXPECT_EQ(code, grpc::StatusCode::UNAVAILABLE) << count << " calls";
  }
  EXPECT_EQ(failed_outside, 0);

  // Every batch was acknowledged in the end, and every acknowledged item is stored.
  EXPECT_EQ(load.abandoned(), 0);
  EXPECT_EQ(load.bad_results(), 0);
  EXPECT_EQ(load.first_attempt_duplicates(), 0);
  EXPECT_GE(load.retried_batches(), 1);
  EXPECT_EQ(Missing(load.sent_traces(), load.acked_traces()), 0u);
  EXPECT_EQ(load.acked_traces().size(), load.sent_traces().size());
  EXPECT_EQ(Missing(load.sent_signals(), load.acked_signals()), 0u);
  EXPECT_EQ(load.acked_signals().size(), load.sent_signals().size());
  ExpectStoredExactlyOnce(StoredIds(conninfo_, "traces", "trace_id"), load.acked_traces(), "trace");
  ExpectStoredExactlyOnce(StoredIds(conninfo_, "signals", "event_id"), load.acked_signals(),
                          "signal");

  std::cout << "[ stats    ] batches acknowledged=" << load.acknowledged_batches()
            << " attempts=" << attempts.size() << " retried_batches=" << load.retried_batches()
            << " retried_batches_answered_duplicate=" << load.retried_batches_with_duplicates()
            << "\n[ stats    ] pg stop took " << (stopped - stop_begin) << ", pg down (stopped .. "
            << "start finished) " << (restarted - stopped) << ", pg start took "
            << (restarted - restart_begin) << "\n";
  if (first_failure.has_value()) {
    std::cout << "[ stats    ] first failure " << (*first_failure - stop_begin)
              << " after stop began; last failure " << (*last_failure - restarted)
              << " relative to start finishing; first success " << (*recovered - restarted)
              << " after start finished; unavailable window " << (*recovered - *first_failure)
              << "\n";
  }
  for (const auto& [code, count] : outage_codes) {
    std::cout << "[ stats    ] outage status code " << code << ": " << count << " calls\n";
  }
  EXPECT_LT(absl::Now() - test_start, absl::Seconds(60));
}

}  // namespace
}  // namespace flywheel::capture
