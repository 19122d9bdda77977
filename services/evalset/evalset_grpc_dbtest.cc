// The eval-set gRPC handler in-process on a real Postgres with real API keys: scopes, tenancy,
// the case stream, and DPO exports through a fake capture service.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/auth/tenancy_admin.h"
#include "common/status/status_matchers.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "services/evalset/capture_client.h"
#include "services/evalset/evalset_service.h"
#include "services/evalset/ids.h"
#include "services/evalset/pg_evalset_repository.h"
#include "tests/pg/test_database.h"

namespace flywheel::evalset {
namespace {

using ::flywheel::testing::TestDatabase;
namespace capture_v1 = ::flywheel::capture::v1;

// Serves two pages of preference pairs and remembers the authorization it was called with.
class FakeCapture final : public capture_v1::CaptureService::Service {
 public:
  grpc::Status ListPreferencePairs(grpc::ServerContext* context,
                                   const capture_v1::ListPreferencePairsRequest* request,
                                   capture_v1::ListPreferencePairsResponse* response) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = context->client_metadata().find("authorization");
      if (it != context->client_metadata().end()) {
        authorization_ = std::string(it->second.data(), it->second.size());
      }
      ++calls_;
    }
    auto add = [&](const std::string& id, const std::string& rejected_trace) {
      capture_v1::PreferencePair* pair = response->add_pairs();
      pair->set_pair_id(id);
      pair->set_rejected_trace_id(rejected_trace);
      pair->set_chosen_trace_id(rejected_trace + "-final");
      pair->mutable_prompt()->set_prompt("prompt of " + rejected_trace);
      pair->set_chosen_output("chosen " + id);
      pair->set_rejected_output("rejected " + id);
    };
    if (request->page_token().empty()) {
      add("p1", "tr-a");
      add("p2", "tr-a");
      response->set_next_page_token("page2");
    } else {
      add("p3", "tr-b");
      add("p4", "tr-unrelated");
    }
    return grpc::Status::OK;
  }
  std::string authorization() {
    std::lock_guard<std::mutex> lock(mu_);
    return authorization_;
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::string authorization_;
  int calls_ = 0;
};

class EvalSetGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(db_, TestDatabase::Create());
    pool_ = std::make_unique<db::ConnectionPool>(db::PoolOptions{db_->conninfo(), 8});
    tenancy_ = std::make_unique<auth::PgTenancyStore>(pool_.get(), &logger_);
    auth::TenancyAdmin admin(tenancy_.get());
    ASSERT_OK(admin.CreateProject("alpha", ""));
    ASSERT_OK(admin.CreateProject("beta", ""));
    auto key = [&](const std::string& project, auth::Scope scope) {
      absl::StatusOr<auth::CreatedKey> created =
          admin.CreateKey(project, auth::KeyKind::kSecret, static_cast<auth::ScopeSet>(scope), "");
      EXPECT_OK(created);
      return created.ok() ? created->plaintext : "";
    };
    alpha_eval_ = key("alpha", auth::Scope::kEval);
    alpha_read_ = key("alpha", auth::Scope::kRead);
    alpha_review_ = key("alpha", auth::Scope::kReview);
    beta_eval_ = key("beta", auth::Scope::kEval);
    authenticator_ = std::make_unique<auth::Authenticator>(tenancy_.get());

    // The fake capture service, on its own port.
    grpc::ServerBuilder capture_builder;
    int capture_port = 0;
    capture_builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                                     &capture_port);
    capture_builder.RegisterService(&capture_);
    capture_server_ = capture_builder.BuildAndStart();
    ASSERT_NE(capture_server_, nullptr);
    pairs_ = std::make_unique<GrpcPreferencePairSource>(absl::StrCat("127.0.0.1:", capture_port));

    repository_ = std::make_unique<PgEvalSetRepository>(pool_.get(), &logger_);
    logic_ = std::make_unique<EvalSetLogic>(repository_.get(), pairs_.get());
    executor_ = std::make_unique<BoundedExecutor>(4, 64);
    handler_ = std::make_unique<EvalSetServiceHandler>(authenticator_.get(), logic_.get(),
                                                       executor_.get(), &logger_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(handler_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::EvalSetService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (capture_server_) capture_server_->Shutdown();
    executor_.reset();
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& key) {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!key.empty()) context->AddMetadata("authorization", "Bearer " + key);
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return context;
  }

  grpc::StatusCode CreateSet(const std::string& key, const std::string& id) {
    v1::CreateEvalSetRequest request;
    request.mutable_eval_set()->set_eval_set_id(id);
    request.mutable_eval_set()->set_display_name("Set " + id);
    v1::CreateEvalSetResponse response;
    return stub_->CreateEvalSet(Context(key).get(), request, &response).error_code();
  }

  // Adds `n` cases c00000.. in batches of 500; case i has source trace "tr-a" for i == 0 and
  // "tr-b" for i == 1.
  void AddCases(int n) {
    for (int start = 0; start < n; start += 500) {
      v1::AddCasesRequest request;
      request.set_eval_set_id("s1");
      for (int i = start; i < std::min(n, start + 500); ++i) {
        v1::Case* c = request.add_cases();
        c->set_case_id(absl::StrFormat("c%05d", i));
        c->mutable_input()->set_prompt(absl::StrCat("question number ", i));
        c->set_expected_output(absl::StrCat("answer ", i));
        if (i == 0) c->set_source_trace_id("tr-a");
        if (i == 1) c->set_source_trace_id("tr-b");
      }
      v1::AddCasesResponse response;
      ASSERT_TRUE(stub_->AddCases(Context(alpha_eval_).get(), request, &response).ok());
    }
  }

  Logger logger_{"test", Logger::Level::kError};
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<db::ConnectionPool> pool_;
  std::unique_ptr<auth::PgTenancyStore> tenancy_;
  std::unique_ptr<auth::Authenticator> authenticator_;
  FakeCapture capture_;
  std::unique_ptr<grpc::Server> capture_server_;
  std::unique_ptr<GrpcPreferencePairSource> pairs_;
  std::unique_ptr<PgEvalSetRepository> repository_;
  std::unique_ptr<EvalSetLogic> logic_;
  std::unique_ptr<BoundedExecutor> executor_;
  std::unique_ptr<EvalSetServiceHandler> handler_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::EvalSetService::Stub> stub_;
  std::string alpha_eval_, alpha_read_, alpha_review_, beta_eval_;
};

TEST_F(EvalSetGrpcTest, ScopesAndProjectsDecideWhatACallMaySee) {
  EXPECT_EQ(CreateSet("", "s1"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CreateSet(alpha_read_, "s1"), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(CreateSet(alpha_eval_, "s1"), grpc::StatusCode::OK);
  // Review keys may promote cases but not start runs.
  v1::AddCasesRequest add;
  add.set_eval_set_id("s1");
  add.add_cases()->mutable_input()->set_prompt("promoted");
  add.mutable_cases(0)->set_case_key("annotation-1");
  v1::AddCasesResponse added;
  ASSERT_TRUE(stub_->AddCases(Context(alpha_review_).get(), add, &added).ok());
  EXPECT_EQ(added.version(), 1);
  v1::CreateRunRequest run;
  run.mutable_run()->set_eval_set_id("s1");
  run.mutable_run()->set_candidate_label("m");
  v1::CreateRunResponse run_response;
  EXPECT_EQ(stub_->CreateRun(Context(alpha_review_).get(), run, &run_response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Read keys read; other projects do not see the set.
  v1::GetEvalSetRequest get;
  get.set_eval_set_id("s1");
  v1::GetEvalSetResponse got;
  EXPECT_TRUE(stub_->GetEvalSet(Context(alpha_read_).get(), get, &got).ok());
  EXPECT_EQ(got.eval_set().case_count(), 1);
  EXPECT_EQ(stub_->GetEvalSet(Context(beta_eval_).get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::FindNearestCasesRequest nearest;
  nearest.add_texts("promoted");
  v1::FindNearestCasesResponse found;
  ASSERT_TRUE(stub_->FindNearestCases(Context(alpha_review_).get(), nearest, &found).ok());
  ASSERT_EQ(found.results(0).matches_size(), 1);
  EXPECT_NEAR(found.results(0).matches(0).similarity(), 1.0, 1e-6);
}

TEST_F(EvalSetGrpcTest, StreamCasesDeliversTheWholeSnapshotInOrderAndResumes) {
  ASSERT_EQ(CreateSet(alpha_eval_, "s1"), grpc::StatusCode::OK);
  AddCases(2600);
  v1::StreamCasesRequest request;
  request.set_eval_set_id("s1");
  request.set_max_cases_per_message(1000);
  auto context = Context(alpha_read_);
  auto reader = stub_->StreamCases(context.get(), request);
  v1::StreamCasesResponse message;
  ASSERT_TRUE(reader->Read(&message));
  ASSERT_TRUE(message.has_header());
  EXPECT_EQ(message.header().case_count(), 2600);
  EXPECT_EQ(message.header().stream_case_count(), 2600);
  const int64_t version = message.header().version().version();
  std::vector<std::string> ids;
  int messages = 0;
  while (reader->Read(&message)) {
    ++messages;
    EXPECT_FALSE(message.has_header());
    EXPECT_LE(message.cases_size(), 1000);
    for (const auto& c : message.cases()) ids.push_back(c.case_id());
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(ids.size(), 2600u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(ids.front(), "c00000");
  EXPECT_LE(messages, 6);  // many cases per message, not one message per case

  // Resume after the 2000th case of the same version.
  request.mutable_version()->set_number(version);
  request.set_after_case_id(ids[1999]);
  auto resume_context = Context(alpha_read_);
  auto resumed = stub_->StreamCases(resume_context.get(), request);
  ASSERT_TRUE(resumed->Read(&message));
  EXPECT_EQ(message.header().stream_case_count(), 600);
  int count = 0;
  std::string first;
  while (resumed->Read(&message)) {
    for (const auto& c : message.cases()) {
      if (count++ == 0) first = c.case_id();
    }
  }
  EXPECT_TRUE(resumed->Finish().ok());
  EXPECT_EQ(count, 600);
  EXPECT_EQ(first, ids[2000]);

  // Another project's key gets NOT_FOUND as the stream status.
  auto beta_context = Context(beta_eval_);
  auto denied = stub_->StreamCases(beta_context.get(), request);
  while (denied->Read(&message)) {
  }
  EXPECT_EQ(denied->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(EvalSetGrpcTest, DpoExportReadsCapturePairsWithTheCallersKey) {
  ASSERT_EQ(CreateSet(alpha_eval_, "s1"), grpc::StatusCode::OK);
  AddCases(3);  // c00000 <- tr-a (2 pairs), c00001 <- tr-b (1 pair), c00002 (none)
  v1::ExportEvalSetRequest request;
  request.set_eval_set_id("s1");
  request.set_format(v1::EXPORT_FORMAT_DPO_PAIRS);
  auto context = Context(alpha_read_);
  auto reader = stub_->ExportEvalSet(context.get(), request);
  v1::ExportEvalSetResponse message;
  std::string data;
  v1::ExportHeader header;
  v1::ExportTrailer trailer;
  while (reader->Read(&message)) {
    if (message.has_header()) header = message.header();
    data += message.data();
    if (message.has_trailer()) trailer = message.trailer();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(capture_.authorization(), "Bearer " + alpha_read_);
  EXPECT_EQ(capture_.calls(), 2);  // both pages
  EXPECT_EQ(header.case_count(), 3);
  EXPECT_EQ(header.file_name(), "s1@v1.dpo.jsonl");
  std::vector<std::string> lines = absl::StrSplit(data, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  std::vector<std::string> pair_ids;
  for (const std::string& line : lines) {
    google::protobuf::Struct record;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &record).ok()) << line;
    const auto& flywheel =
        record.fields().at("metadata").struct_value().fields().at("flywheel").struct_value();
    pair_ids.push_back(flywheel.fields().at("pair_id").string_value());
    EXPECT_EQ(flywheel.fields().at("version").number_value(), 1);
    EXPECT_EQ(record.fields().at("chosen").string_value(),
              "chosen " + flywheel.fields().at("pair_id").string_value());
  }
  EXPECT_EQ(pair_ids, (std::vector<std::string>{"p1", "p2", "p3"}));
  EXPECT_EQ(trailer.record_count(), 3);
  EXPECT_EQ(trailer.skipped_case_count(), 1);
  EXPECT_EQ(trailer.data_sha256(), Sha256Digest(data));
}

TEST_F(EvalSetGrpcTest, DpoExportIsUnavailableWhenCaptureIsDown) {
  ASSERT_EQ(CreateSet(alpha_eval_, "s1"), grpc::StatusCode::OK);
  AddCases(1);
  capture_server_->Shutdown();
  v1::ExportEvalSetRequest request;
  request.set_eval_set_id("s1");
  request.set_format(v1::EXPORT_FORMAT_DPO_PAIRS);
  auto context = Context(alpha_eval_);
  auto reader = stub_->ExportEvalSet(context.get(), request);
  v1::ExportEvalSetResponse message;
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  // Other formats need no capture.
  request.set_format(v1::EXPORT_FORMAT_PROMPTFOO);
  auto context2 = Context(alpha_eval_);
  auto promptfoo = stub_->ExportEvalSet(context2.get(), request);
  int data_messages = 0;
  while (promptfoo->Read(&message)) data_messages += !message.data().empty();
  EXPECT_TRUE(promptfoo->Finish().ok());
  EXPECT_EQ(data_messages, 1);
}

}  // namespace
}  // namespace flywheel::evalset
