// The whole loop on the four real binaries and a throwaway Postgres, through public APIs only:
// failures flow capture -> flagged feed -> theme -> queue -> label -> eval case -> run comparison
// (driven by `flywheel demo` at a small scale), and a SIGKILL of the clustering service while
// traffic flows loses no flagged trace.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/demo/scenario.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/auth/tenancy_admin.h"
#include "common/db/pool.h"
#include "common/log/logger.h"
#include "common/status/status_matchers.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "flywheel/clustering/v1/clustering.grpc.pb.h"
#include "tests/e2e/service_process.h"
#include "tests/pg/test_database.h"

namespace flywheel {
namespace {

using ::flywheel::testing::ServiceProcess;
using ::flywheel::testing::TestDatabase;
namespace cv1 = ::flywheel::capture::v1;
namespace clv1 = ::flywheel::clustering::v1;

constexpr char kProject[] = "loop";

std::string WriteFile(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text << "\n";
  return path;
}

// Numbers of a flat JSON object, by key.
std::map<std::string, double> ParseFlatJson(const std::string& json) {
  std::map<std::string, double> out;
  static const std::regex kPair("\"([a-z_]+)\":(-?[0-9.]+)");
  for (auto it = std::sregex_iterator(json.begin(), json.end(), kPair);
       it != std::sregex_iterator(); ++it) {
    out[(*it)[1]] = std::stod((*it)[2]);
  }
  return out;
}

class LoopE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(db_, TestDatabase::Create());
    char dir_template[] = "/tmp/flywheel-loop-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    Logger logger("test", Logger::Level::kError);
    db::ConnectionPool pool(db::PoolOptions{db_->conninfo(), 2});
    auth::PgTenancyStore store(&pool, &logger);
    auth::TenancyAdmin admin(&store);
    ASSERT_OK(admin.CreateProject(kProject, "loop e2e").status());
    auto scope = [](auth::Scope s) { return static_cast<auth::ScopeSet>(s); };
    ASSERT_OK_AND_ASSIGN(auth::CreatedKey key,
                         admin.CreateKey(kProject, auth::KeyKind::kSecret,
                                         scope(auth::Scope::kIngest) | scope(auth::Scope::kRead) |
                                             scope(auth::Scope::kReview) |
                                             scope(auth::Scope::kEval) | scope(auth::Scope::kAdmin),
                                         "loop test"));
    key_ = key.plaintext;
    key_file_ = WriteFile(dir_, "project.key", key_);
    ASSERT_OK_AND_ASSIGN(
        auth::CreatedKey service,
        admin.CreateServiceKey(
            scope(auth::Scope::kRead) | scope(auth::Scope::kReview) | scope(auth::Scope::kEval),
            "loop services"));
    service_key_file_ = WriteFile(dir_, "service.key", service.plaintext);
  }

  void TearDown() override {
    services_.clear();
    if (!dir_.empty()) std::system(("rm -rf " + dir_).c_str());
  }

  std::vector<std::string> CommonArgs() const {
    return {"--database_url",  db_->conninfo(), "--service_key_file",
            service_key_file_, "--log_level",   "warning"};
  }

  ServiceProcess* Start(const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> args = CommonArgs();
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = std::make_unique<ServiceProcess>("flywheel-" + name, args);
    EXPECT_OK(process->Start());
    EXPECT_OK(process->WaitServing(absl::Seconds(60))) << process->Log();
    ServiceProcess* raw = process.get();
    services_[name] = std::move(process);
    return raw;
  }

  void Prepare(grpc::ClientContext& context) const {
    context.AddMetadata("authorization", "Bearer " + key_);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  }

  std::unique_ptr<TestDatabase> db_;
  std::string dir_;
  std::string key_;
  std::string key_file_;
  std::string service_key_file_;
  std::map<std::string, std::unique_ptr<ServiceProcess>> services_;
};

TEST_F(LoopE2eTest, FailuresFlowThroughTheLoopAndAClusteringCrashLosesNothing) {
  ServiceProcess* capture = Start("capture", {});
  ServiceProcess* evalset = Start("evalset", {"--capture_address", capture->address()});
  ServiceProcess* clustering = Start(
      "clustering", {"--capture_address", capture->address(), "--follow_poll_interval", "200ms"});
  const std::string clustering_address = clustering->address();
  ServiceProcess* annotation =
      Start("annotation", {"--capture_address", capture->address(), "--clustering_address",
                           clustering_address, "--evalset_address", evalset->address(),
                           "--fill_interval", "500ms", "--promotion_interval", "500ms"});
  if (HasFailure()) return;

  // Traffic of our own, sent while clustering is killed and restarted on the same port.
  demo::ScenarioOptions scenario_options;
  scenario_options.seed = 3;
  scenario_options.users = 50;
  scenario_options.id_prefix = "crash";
  scenario_options.end = absl::Now() - absl::Hours(1);
  const demo::Scenario scenario = demo::GenerateScenario(scenario_options);
  auto capture_stub = cv1::CaptureService::NewStub(
      grpc::CreateChannel(capture->address(), grpc::InsecureChannelCredentials()));
  const size_t half = scenario.items.size() / 2;
  auto send = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; i += 200) {
      cv1::IngestRequest request;
      for (size_t j = i; j < std::min(end, i + 200); ++j) *request.add_items() = scenario.items[j];
      cv1::IngestResponse response;
      grpc::ClientContext context;
      Prepare(context);
      ASSERT_TRUE(capture_stub->Ingest(&context, request, &response).ok());
      ASSERT_EQ(response.counts().rejected(), 0);
    }
  };
  send(0, half);
  absl::SleepFor(absl::Milliseconds(300));  // the follower is mid-feed
  ASSERT_OK_AND_ASSIGN(int code, clustering->Stop(SIGKILL, absl::Seconds(10)));
  EXPECT_EQ(code, 128 + SIGKILL);
  send(half, scenario.items.size());
  services_.erase("clustering");
  clustering =
      Start("clustering", {"--capture_address", capture->address(), "--follow_poll_interval",
                           "200ms", "--listen", clustering_address});
  if (HasFailure()) return;

  // Every trace capture flagged reaches clustering (seen: assigned or an explicit outlier).
  std::set<std::string> flagged;
  auto clustering_stub = clv1::ClusteringService::NewStub(
      grpc::CreateChannel(clustering->address(), grpc::InsecureChannelCredentials()));
  const absl::Time deadline = absl::Now() + absl::Seconds(90);
  std::vector<std::string> not_seen;
  while (true) {
    flagged.clear();
    std::string token;
    do {
      cv1::ListTracesRequest request;
      request.set_flagged_only(true);
      request.set_page_size(100);
      request.set_page_token(token);
      request.mutable_read_mask()->add_paths("trace_id");
      cv1::ListTracesResponse response;
      grpc::ClientContext context;
      Prepare(context);
      ASSERT_TRUE(capture_stub->ListTraces(&context, request, &response).ok());
      for (const auto& trace : response.traces()) flagged.insert(trace.trace_id());
      token = response.next_page_token();
    } while (!token.empty());
    not_seen.clear();
    for (const std::string& trace_id : flagged) {
      clv1::GetTraceAssignmentRequest request;
      request.set_trace_id(trace_id);
      clv1::GetTraceAssignmentResponse response;
      grpc::ClientContext context;
      Prepare(context);
      grpc::Status status = clustering_stub->GetTraceAssignment(&context, request, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      if (response.state() == clv1::ASSIGNMENT_STATE_NOT_SEEN) not_seen.push_back(trace_id);
    }
    if (!flagged.empty() && not_seen.empty()) break;
    ASSERT_LT(absl::Now(), deadline)
        << not_seen.size() << " of " << flagged.size() << " flagged traces never reached "
        << "clustering, e.g. " << (not_seen.empty() ? "" : not_seen.front()) << "\n"
        << clustering->Log();
    absl::SleepFor(absl::Milliseconds(500));
  }
  EXPECT_GT(flagged.size(), 20u);

  // The whole loop on top, through the public APIs: `flywheel demo` at a small scale.
  const std::string bin_dir = std::getenv("FLYWHEEL_BIN_DIR");
  const std::string json = dir_ + "/demo.json";
  const std::string command = absl::StrCat(
      bin_dir, "/flywheel demo --quiet --users 40 --seed 5 --max_reviews 25 --step_timeout 120s",
      " --key_file ", key_file_, " --capture_address ", capture->address(),
      " --clustering_address ", clustering->address(), " --annotation_address ",
      annotation->address(), " --evalset_address ", evalset->address(), " --json ", json, " > ",
      dir_, "/demo.log 2>&1");
  const int status = std::system(command.c_str());
  std::ifstream log_file(dir_ + "/demo.log");
  const std::string demo_log((std::istreambuf_iterator<char>(log_file)),
                             std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << demo_log << "\nclustering:\n"
      << services_["clustering"]->Log() << "\nannotation:\n"
      << services_["annotation"]->Log();
  std::ifstream json_file(json);
  const std::string text((std::istreambuf_iterator<char>(json_file)),
                         std::istreambuf_iterator<char>());
  const std::map<std::string, double> figures = ParseFlatJson(text);
  ASSERT_EQ(figures.count("traces"), 1u) << text;
  EXPECT_EQ(figures.at("rejected"), 0) << text;
  EXPECT_EQ(figures.at("labeled"), figures.at("traces")) << text;
  // Composite labels find more of the hidden failures than thumbs alone.
  EXPECT_GT(figures.at("composite_recall"), figures.at("thumbs_recall")) << text;
  EXPECT_GE(figures.at("themes"), 2) << text;
  EXPECT_GT(figures.at("reviewed"), 0) << text;
  EXPECT_GT(figures.at("promoted"), 0) << text;
  // Every promoted annotation became exactly one eval case.
  EXPECT_EQ(figures.at("cases"), figures.at("promoted")) << text;
}

}  // namespace
}  // namespace flywheel
