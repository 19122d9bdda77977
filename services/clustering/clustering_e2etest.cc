// The real flywheel-capture and flywheel-clustering binaries: capture labels thumbs-down traces
// as flagged, clustering follows the flagged feed over gRPC with the deployment's service key,
// an on-demand re-clustering names themes, and a later flagged trace is assigned by streaming.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/auth/tenancy_admin.h"
#include "common/status/status_matchers.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "flywheel/clustering/v1/clustering.grpc.pb.h"
#include "tests/e2e/service_process.h"
#include "tests/pg/test_database.h"

namespace flywheel::clustering {
namespace {

using ::flywheel::testing::ServiceProcess;
using ::flywheel::testing::TestDatabase;

const char* const kTopics[3][6] = {
    {"citation", "link", "broken", "source", "reference", "footnote"},
    {"currency", "conversion", "euro", "dollar", "exchange", "rate"},
    {"upload", "pdf", "timeout", "file", "attachment", "document"},
};

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp out;
  out.set_seconds(absl::ToUnixSeconds(t));
  return out;
}

class ClusteringE2eTest : public ::testing::Test {
 protected:
  void AddFlagged(capture::v1::IngestRequest* request, const std::string& trace_id, int topic,
                  int variant, absl::Time when) {
    capture::v1::Trace* trace = request->add_items()->mutable_trace();
    trace->set_trace_id(trace_id);
    trace->set_user_id(absl::StrCat("user-", trace_id));
    trace->set_session_id(absl::StrCat("session-", trace_id));
    trace->set_feature_area("assistant");
    trace->set_model("gpt-test");
    std::string prompt = "why is the";
    for (int i = 0; i < 5; ++i)
      absl::StrAppend(&prompt, " ", kTopics[topic][(variant + i * 2) % 6]);
    trace->mutable_input()->set_prompt(prompt);
    trace->set_output("sorry, here is an answer");
    *trace->mutable_start_time() = Ts(when);
    capture::v1::Signal* signal = request->add_items()->mutable_signal();
    signal->set_event_id(absl::StrCat("down-", trace_id));
    signal->set_trace_id(trace_id);
    signal->set_user_id(absl::StrCat("user-", trace_id));
    *signal->mutable_occur_time() = Ts(when + absl::Seconds(5));
    signal->mutable_explicit_feedback()->set_thumb(capture::v1::THUMB_DOWN);
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& key) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", "Bearer " + key);
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return c;
  }
};

TEST_F(ClusteringE2eTest, FollowsCapturesFeedReclustersAndAssignsNewFailures) {
  ASSERT_OK_AND_ASSIGN(auto db, TestDatabase::Create());
  Logger logger("test", Logger::Level::kError);
  db::ConnectionPool pool(db::PoolOptions{db->conninfo(), 2});
  auth::PgTenancyStore tenancy(&pool, &logger);
  auth::TenancyAdmin admin(&tenancy);
  ASSERT_OK(admin.CreateProject("acme", ""));
  ASSERT_OK_AND_ASSIGN(auto key,
                       admin.CreateKey("acme", auth::KeyKind::kSecret,
                                       static_cast<auth::ScopeSet>(auth::Scope::kAdmin), ""));
  ASSERT_OK_AND_ASSIGN(auto reader,
                       admin.CreateKey("acme", auth::KeyKind::kSecret,
                                       static_cast<auth::ScopeSet>(auth::Scope::kRead), ""));
  ASSERT_OK_AND_ASSIGN(
      auto service_key,
      admin.CreateServiceKey(static_cast<auth::ScopeSet>(auth::Scope::kRead), "clustering"));
  const std::string key_file = ::testing::TempDir() + "/clustering_e2e_service_key";
  std::ofstream(key_file) << service_key.plaintext << "\n";

  ServiceProcess capture("flywheel-capture",
                         {"--database_url=" + db->conninfo(), "--listen=127.0.0.1:0",
                          "--metrics_listen=", "--log_level=warning"});
  ASSERT_OK(capture.Start());
  ASSERT_OK(capture.WaitServing(absl::Seconds(60)));
  ServiceProcess clustering(
      "flywheel-clustering",
      {"--database_url=" + db->conninfo(), "--listen=127.0.0.1:0",
       "--metrics_listen=", "--log_level=warning", "--capture_address=" + capture.address(),
       "--service_key_file=" + key_file, "--follow_poll_interval=200ms",
       "--recluster_check_interval=200ms", "--first_clustering_traces=1000"});
  ASSERT_OK(clustering.Start());
  ASSERT_OK(clustering.WaitServing(absl::Seconds(60)));
  auto capture_stub = capture::v1::CaptureService::NewStub(
      grpc::CreateChannel(capture.address(), grpc::InsecureChannelCredentials()));
  auto stub = v1::ClusteringService::NewStub(
      grpc::CreateChannel(clustering.address(), grpc::InsecureChannelCredentials()));

  const absl::Time base = absl::Now() - absl::Hours(2);
  capture::v1::IngestRequest ingest;
  for (int topic = 0; topic < 3; ++topic) {
    for (int i = 0; i < 12; ++i) {
      AddFlagged(&ingest, absl::StrCat("t", topic, "-", i), topic, i, base + absl::Minutes(i));
    }
  }
  capture::v1::IngestResponse ingested;
  ASSERT_TRUE(capture_stub->Ingest(Context(key.plaintext).get(), ingest, &ingested).ok());

  // Capture labels the traces (flagged) and clustering consumes the feed.
  auto state_of = [&](const std::string& trace_id) {
    v1::GetTraceAssignmentRequest request;
    request.set_trace_id(trace_id);
    v1::GetTraceAssignmentResponse response;
    grpc::Status s = stub->GetTraceAssignment(Context(reader.plaintext).get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (state_of("t2-11").state() == v1::ASSIGNMENT_STATE_NOT_SEEN && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(state_of("t2-11").state(), v1::ASSIGNMENT_STATE_UNASSIGNED)
      << capture.Log() << clustering.Log();

  // A read key may not start jobs.
  v1::TriggerReclusterRequest trigger;
  trigger.set_request_id("e2e-1");
  trigger.set_k(3);
  v1::TriggerReclusterResponse started;
  EXPECT_EQ(stub->TriggerRecluster(Context(reader.plaintext).get(), trigger, &started).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(stub->TriggerRecluster(Context(key.plaintext).get(), trigger, &started).ok());
  v1::GetClusteringRequest get;
  get.set_version(started.clustering().version());
  v1::GetClusteringResponse job;
  for (const absl::Time until = absl::Now() + absl::Seconds(60); absl::Now() < until;) {
    ASSERT_TRUE(stub->GetClustering(Context(reader.plaintext).get(), get, &job).ok());
    if (job.clustering().state() == v1::CLUSTERING_STATE_SUCCEEDED ||
        job.clustering().state() == v1::CLUSTERING_STATE_FAILED) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(job.clustering().state(), v1::CLUSTERING_STATE_SUCCEEDED)
      << job.clustering().error_message() << clustering.Log();
  EXPECT_EQ(job.clustering().theme_count(), 3);

  v1::ListClustersRequest list;
  v1::ListClustersResponse themes;
  ASSERT_TRUE(stub->ListClusters(Context(reader.plaintext).get(), list, &themes).ok());
  EXPECT_EQ(themes.clusters_size(), 3);
  for (const auto& theme : themes.clusters()) {
    EXPECT_FALSE(theme.name().empty());
    EXPECT_GE(theme.distinct_users(), 5);
  }
  EXPECT_EQ(state_of("t0-3").state(), v1::ASSIGNMENT_STATE_ASSIGNED);

  // A new failure about currency is assigned on arrival, to the currency theme.
  const std::string currency_theme = state_of("t1-0").cluster_id();
  capture::v1::IngestRequest more;
  AddFlagged(&more, "late-1", 1, 2, absl::Now() - absl::Minutes(1));
  ASSERT_TRUE(capture_stub->Ingest(Context(key.plaintext).get(), more, &ingested).ok());
  v1::GetTraceAssignmentResponse late;
  for (const absl::Time until = absl::Now() + absl::Seconds(60); absl::Now() < until;) {
    late = state_of("late-1");
    if (late.state() != v1::ASSIGNMENT_STATE_NOT_SEEN) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(late.state(), v1::ASSIGNMENT_STATE_ASSIGNED) << clustering.Log();
  EXPECT_EQ(late.assignment_source(), v1::ASSIGNMENT_SOURCE_STREAMING);
  EXPECT_EQ(late.cluster_id(), currency_theme);

  ASSERT_OK_AND_ASSIGN(int code, clustering.Stop(SIGTERM, absl::Seconds(30)));
  EXPECT_EQ(code, 0);
  ASSERT_OK_AND_ASSIGN(code, capture.Stop(SIGTERM, absl::Seconds(30)));
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace flywheel::clustering
