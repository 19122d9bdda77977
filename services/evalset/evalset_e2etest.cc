// The real flywheel-evalset binary driven by the example Python harness
// (examples/evalset/harness.py): fetch a snapshot, record a run, compare with a baseline.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/auth/tenancy_admin.h"
#include "common/status/status_matchers.h"
#include "flywheel/evalset/v1/evalset.grpc.pb.h"
#include "tests/e2e/service_process.h"
#include "tests/pg/test_database.h"

namespace flywheel::evalset {
namespace {

using ::flywheel::testing::ServiceProcess;
using ::flywheel::testing::TestDatabase;
namespace v1 = ::flywheel::evalset::v1;

// Runs a command; returns its exit status and stdout.
std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, out};
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  return {::pclose(pipe), out};
}

TEST(EvalSetE2eTest, PythonHarnessFetchesRecordsAndComparesAgainstTheRealBinary) {
  if (RunCommand("/usr/bin/python3 -c 'import grpc' 2>/dev/null").first != 0 ||
      RunCommand("command -v grpc_python_plugin >/dev/null").first != 0) {
    GTEST_SKIP() << "python3-grpcio or protobuf-compiler-grpc missing (scripts/install-deps.sh)";
  }
  ASSERT_OK_AND_ASSIGN(auto db, TestDatabase::Create());
  Logger logger("test", Logger::Level::kError);
  db::ConnectionPool pool(db::PoolOptions{db->conninfo(), 2});
  auth::PgTenancyStore tenancy(&pool, &logger);
  auth::TenancyAdmin admin(&tenancy);
  ASSERT_OK(admin.CreateProject("acme", ""));
  ASSERT_OK_AND_ASSIGN(auto key,
                       admin.CreateKey("acme", auth::KeyKind::kSecret,
                                       static_cast<auth::ScopeSet>(auth::Scope::kEval), ""));
  ServiceProcess service("flywheel-evalset",
                         {"--database_url=" + db->conninfo(), "--listen=127.0.0.1:0",
                          "--metrics_listen=", "--log_level=warning"});
  ASSERT_OK(service.Start());
  ASSERT_OK(service.WaitServing(absl::Seconds(60)));
  auto stub = v1::EvalSetService::NewStub(
      grpc::CreateChannel(service.address(), grpc::InsecureChannelCredentials()));
  auto context = [&] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", "Bearer " + key.plaintext);
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return c;
  };

  v1::CreateEvalSetRequest create;
  create.mutable_eval_set()->set_eval_set_id("support");
  create.mutable_eval_set()->set_display_name("Support regressions");
  v1::CreateEvalSetResponse created;
  ASSERT_TRUE(stub->CreateEvalSet(context().get(), create, &created).ok());
  v1::AddCasesRequest add;
  add.set_eval_set_id("support");
  for (int i = 0; i < 8; ++i) {
    v1::Case* c = add.add_cases();
    c->set_case_id(absl::StrCat("c", i));
    const bool refund = i < 5;
    c->mutable_input()->set_prompt(refund ? absl::StrCat("Can I get a refund for order ", i, "?")
                                          : absl::StrCat("What is the weather on day ", i, "?"));
    v1::Assertion* a = c->add_assertions();
    a->set_type(v1::ASSERTION_TYPE_CONTAINS);
    a->set_value(refund ? "[1]" : "sunny");
    c->mutable_theme()->set_theme_id(refund ? "refunds" : "weather");
    c->mutable_theme()->set_name(refund ? "refund citations" : "weather");
  }
  v1::AddCasesResponse added;
  ASSERT_TRUE(stub->AddCases(context().get(), add, &added).ok());

  // A baseline that failed everything.
  v1::CreateRunRequest base;
  base.mutable_run()->set_run_id("base");
  base.mutable_run()->set_eval_set_id("support");
  base.mutable_run()->set_candidate_label("baseline");
  v1::CreateRunResponse base_run;
  ASSERT_TRUE(stub->CreateRun(context().get(), base, &base_run).ok());
  v1::RecordResultsRequest record;
  record.set_run_id("base");
  for (int i = 0; i < 8; ++i) {
    v1::CaseResult* r = record.add_results();
    r->set_case_id(absl::StrCat("c", i));
    r->set_verdict(v1::VERDICT_FAIL);
  }
  v1::RecordResultsResponse recorded;
  ASSERT_TRUE(stub->RecordResults(context().get(), record, &recorded).ok());
  v1::CompleteRunRequest complete;
  complete.set_run_id("base");
  complete.set_state(v1::RUN_STATE_COMPLETED);
  v1::CompleteRunResponse completed;
  ASSERT_TRUE(stub->CompleteRun(context().get(), complete, &completed).ok());

  const std::string command = absl::StrCat(
      "/usr/bin/python3 ", FLYWHEEL_SOURCE_DIR, "/examples/evalset/harness.py --address ",
      service.address(), " --api_key ", key.plaintext,
      " --eval_set_id support --candidate_label 'stand-in model' --run_id cand-1 "
      "--baseline_run_id base --protos ",
      FLYWHEEL_SOURCE_DIR, "/protos");
  auto [status, out] = RunCommand(command + " 2>&1");
  ASSERT_EQ(status, 0) << out << "\n" << service.Log();

  // The run the harness recorded: its stand-in passes the five refund cases.
  v1::GetRunRequest get;
  get.set_run_id("cand-1");
  v1::GetRunResponse run;
  ASSERT_TRUE(stub->GetRun(context().get(), get, &run).ok());
  EXPECT_EQ(run.run().state(), v1::RUN_STATE_COMPLETED);
  EXPECT_EQ(run.run().summary().overall().result_count(), 8);
  EXPECT_EQ(run.run().summary().overall().passed_count(), 5);
  v1::CompareRunsRequest compare;
  compare.set_baseline_run_id("base");
  compare.set_candidate_run_id("cand-1");
  compare.set_release_notes_min_cases(1);
  v1::CompareRunsResponse comparison;
  ASSERT_TRUE(stub->CompareRuns(context().get(), compare, &comparison).ok());
  EXPECT_EQ(comparison.fix_count(), 5);
  // What the harness printed is the service's release notes.
  EXPECT_NE(out.find("regressions: 0, fixes: 5"), std::string::npos) << out;
  EXPECT_NE(out.find("Improved on *refund citations*: 0% → 100%"), std::string::npos) << out;
  ASSERT_OK_AND_ASSIGN(int code, service.Stop(SIGTERM, absl::Seconds(30)));
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace flywheel::evalset
