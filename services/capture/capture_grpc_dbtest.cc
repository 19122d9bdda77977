// The capture gRPC handler in-process on a real Postgres, with real API keys: authorization,
// single-item status mapping, streaming ingestion and the feed watch.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/auth/tenancy_admin.h"
#include "common/status/status_matchers.h"
#include "services/capture/capture_service.h"
#include "services/capture/labeler.h"
#include "services/capture/labeling.h"
#include "services/capture/pg_capture_repository.h"
#include "tests/pg/test_database.h"

namespace flywheel::capture {
namespace {

using ::flywheel::testing::TestDatabase;

class CaptureGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(db_, TestDatabase::Create());
    pool_ = std::make_unique<db::ConnectionPool>(db::PoolOptions{db_->conninfo(), 8});
    tenancy_ = std::make_unique<auth::PgTenancyStore>(pool_.get(), &logger_);
    auth::TenancyAdmin admin(tenancy_.get());
    ASSERT_OK(admin.CreateProject("alpha", ""));
    ASSERT_OK(admin.CreateProject("beta", ""));
    auto key = [&](const std::string& project, auth::KeyKind kind, auth::ScopeSet scopes) {
      absl::StatusOr<auth::CreatedKey> created = admin.CreateKey(project, kind, scopes, "");
      EXPECT_OK(created);
      return created.ok() ? created->plaintext : "";
    };
    const auto scopes = static_cast<auth::ScopeSet>(auth::Scope::kIngest) |
                        static_cast<auth::ScopeSet>(auth::Scope::kRead);
    alpha_secret_ = key("alpha", auth::KeyKind::kSecret, scopes);
    alpha_public_ = key("alpha", auth::KeyKind::kPublic, 0);
    beta_secret_ = key("beta", auth::KeyKind::kSecret, scopes);
    authenticator_ = std::make_unique<auth::Authenticator>(tenancy_.get());
    repository_ = std::make_unique<PgCaptureRepository>(pool_.get(), &logger_);
    logic_ = std::make_unique<CaptureLogic>(repository_.get());
    labeler_ =
        std::make_unique<Labeler>(repository_.get(), &logger_,
                                  LabelerOptions{absl::Milliseconds(20), 500, absl::Seconds(10)});
    labeler_->Start();
    handler_ = std::make_unique<CaptureServiceHandler>(
        authenticator_.get(), logic_.get(), &logger_, [this] { labeler_->Notify(); },
        CaptureHandlerOptions{4, 64, 1000, absl::Seconds(1), 10000, absl::Minutes(10),
                              absl::Milliseconds(50), absl::Hours(1), 16});
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(handler_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::CaptureService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    handler_.reset();
    labeler_.reset();
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& key) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + key);
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return context;
  }

  v1::Trace MakeTrace(const std::string& id) {
    v1::Trace trace;
    trace.set_trace_id(id);
    trace.set_model("gpt-test");
    trace.mutable_input()->set_prompt("summarize the attached report");
    trace.set_output("The report says revenue grew.");
    *trace.mutable_start_time() = ToProto(base_ - absl::Minutes(1));
    return trace;
  }

  grpc::StatusCode CreateTrace(const std::string& key, const v1::Trace& trace) {
    v1::CreateTraceRequest request;
    *request.mutable_trace() = trace;
    v1::CreateTraceResponse response;
    return stub_->CreateTrace(Context(key).get(), request, &response).error_code();
  }

  Logger logger_{"test", Logger::Level::kError};
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<db::ConnectionPool> pool_;
  std::unique_ptr<auth::PgTenancyStore> tenancy_;
  std::unique_ptr<auth::Authenticator> authenticator_;
  std::unique_ptr<PgCaptureRepository> repository_;
  std::unique_ptr<CaptureLogic> logic_;
  std::unique_ptr<Labeler> labeler_;
  std::unique_ptr<CaptureServiceHandler> handler_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::CaptureService::Stub> stub_;
  std::string alpha_secret_, alpha_public_, beta_secret_;
  const absl::Time base_ = absl::Now();
};

TEST_F(CaptureGrpcTest, KeysDecideWhatACallMayDo) {
  EXPECT_EQ(CreateTrace(alpha_secret_, MakeTrace("t1")), grpc::StatusCode::OK);
  EXPECT_EQ(CreateTrace(alpha_public_, MakeTrace("t2")), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(CreateTrace("fw_sk_0000000000000000_" + std::string(64, '0'), MakeTrace("t3")),
            grpc::StatusCode::UNAUTHENTICATED);

  // A browser key may send a thumb for a trace of its project.
  v1::CreateSignalRequest signal;
  signal.mutable_signal()->set_event_id("e1");
  signal.mutable_signal()->set_trace_id("t1");
  signal.mutable_signal()->set_user_id("u1");
  signal.mutable_signal()->mutable_explicit_feedback()->set_thumb(v1::THUMB_DOWN);
  v1::CreateSignalResponse signal_response;
  ASSERT_TRUE(stub_->CreateSignal(Context(alpha_public_).get(), signal, &signal_response).ok());
  EXPECT_TRUE(signal_response.trace_received());

  // ...but not read anything.
  v1::GetTraceRequest get;
  get.set_trace_id("t1");
  v1::GetTraceResponse trace;
  EXPECT_EQ(stub_->GetTrace(Context(alpha_public_).get(), get, &trace).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Another project's key does not see the trace.
  EXPECT_EQ(stub_->GetTrace(Context(beta_secret_).get(), get, &trace).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(stub_->GetTrace(Context(alpha_secret_).get(), get, &trace).error_code(),
            grpc::StatusCode::OK);
}

TEST_F(CaptureGrpcTest, SingleItemErrorsMapToStatusCodes) {
  v1::Trace bad = MakeTrace("t1");
  bad.clear_model();
  EXPECT_EQ(CreateTrace(alpha_secret_, bad), grpc::StatusCode::INVALID_ARGUMENT);
  v1::Trace huge = MakeTrace("t2");
  huge.set_output(std::string(300 * 1024, 'x'));
  EXPECT_EQ(CreateTrace(alpha_secret_, huge), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(CreateTrace(alpha_secret_, MakeTrace("t3")), grpc::StatusCode::OK);
  v1::Trace changed = MakeTrace("t3");
  changed.set_output("different");
  EXPECT_EQ(CreateTrace(alpha_secret_, changed), grpc::StatusCode::ALREADY_EXISTS);
  v1::BatchCreateTracesRequest empty;
  v1::BatchCreateTracesResponse response;
  EXPECT_EQ(stub_->BatchCreateTraces(Context(alpha_secret_).get(), empty, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(CaptureGrpcTest, MalformedUtf8IsInvalidArgumentForTheWholeRequest) {
  v1::Trace trace = MakeTrace("t1");
  trace.mutable_input()->set_prompt("caf\xc3 broken");
  EXPECT_EQ(CreateTrace(alpha_secret_, trace), grpc::StatusCode::INVALID_ARGUMENT);
  v1::BatchCreateTracesRequest batch;
  *batch.add_traces() = MakeTrace("t2");
  *batch.add_traces() = trace;
  v1::BatchCreateTracesResponse response;
  grpc::Status batch_status =
      stub_->BatchCreateTraces(Context(alpha_secret_).get(), batch, &response);
  EXPECT_EQ(batch_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << batch_status.error_message();
  v1::GetTraceRequest get;
  get.set_trace_id("t2");
  v1::GetTraceResponse stored;
  EXPECT_EQ(stub_->GetTrace(Context(alpha_secret_).get(), get, &stored).error_code(),
            grpc::StatusCode::NOT_FOUND);  // nothing from the message was stored
}

TEST_F(CaptureGrpcTest, StreamIngestCommitsInWindowsAndAnswersOncePerItem) {
  v1::StreamIngestResponse response;
  auto context = Context(alpha_secret_);
  auto writer = stub_->StreamIngest(context.get(), &response);
  int sent = 0;
  for (int message = 0; message < 3; ++message) {
    v1::StreamIngestRequest request;
    for (int i = 0; i < 900; ++i, ++sent) {
      *request.add_items()->mutable_trace() = MakeTrace(absl::StrCat("s", sent));
    }
    ASSERT_TRUE(writer->Write(request));
  }
  v1::StreamIngestRequest last;
  *last.add_items()->mutable_trace() = MakeTrace("s0");  // a repeat: duplicate
  ASSERT_TRUE(writer->Write(last));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  ASSERT_EQ(response.results_size(), sent + 1);
  EXPECT_EQ(response.counts().accepted(), sent);
  EXPECT_EQ(response.counts().duplicate(), 1);
  EXPECT_GE(response.commits(), 3);
  for (int i = 0; i < response.results_size(); ++i) {
    EXPECT_EQ(response.results(i).result().index(), i);
  }
}

TEST_F(CaptureGrpcTest, WatchReplaysThenTailsFlaggedTracesWithHeartbeats) {
  ASSERT_EQ(CreateTrace(alpha_secret_, MakeTrace("t1")), grpc::StatusCode::OK);
  auto context = Context(alpha_secret_);
  v1::WatchFlaggedFeedRequest request;
  request.mutable_heartbeat_interval()->set_seconds(1);
  auto reader = stub_->WatchFlaggedFeed(context.get(), request);
  v1::WatchFlaggedFeedResponse message;
  ASSERT_TRUE(reader->Read(&message));
  EXPECT_TRUE(message.has_heartbeat());

  v1::CreateSignalRequest signal;
  signal.mutable_signal()->set_event_id("e1");
  signal.mutable_signal()->set_trace_id("t1");
  signal.mutable_signal()->set_user_id("u1");
  signal.mutable_signal()->mutable_explicit_feedback()->set_thumb(v1::THUMB_DOWN);
  signal.mutable_signal()->mutable_explicit_feedback()->set_comment("wrong numbers");
  v1::CreateSignalResponse ack;
  ASSERT_TRUE(stub_->CreateSignal(Context(alpha_secret_).get(), signal, &ack).ok());

  bool got_entry = false;
  for (int i = 0; i < 20 && !got_entry; ++i) {
    ASSERT_TRUE(reader->Read(&message));
    if (message.has_entry()) {
      got_entry = true;
      EXPECT_EQ(message.entry().sequence(), 1);
      EXPECT_EQ(message.entry().trace_id(), "t1");
      ASSERT_EQ(message.entry().trace().comments_size(), 1);
      EXPECT_EQ(message.entry().trace().comments(0), "wrong numbers");
    }
  }
  EXPECT_TRUE(got_entry);
  context->TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

}  // namespace
}  // namespace flywheel::capture
