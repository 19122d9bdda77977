// The annotation gRPC handler in-process on a real Postgres with real API keys: scopes, tenancy,
// and ClaimItem waiting for an item through LISTEN/NOTIFY (no polling).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/auth/tenancy_admin.h"
#include "common/status/status_matchers.h"
#include "services/annotation/annotation_service.h"
#include "services/annotation/pg_annotation_repository.h"
#include "services/annotation/pg_claim_listener.h"
#include "services/annotation/upstream_fakes.h"
#include "tests/pg/test_database.h"

namespace flywheel::annotation {
namespace {

using ::flywheel::testing::TestDatabase;

class AnnotationGrpcTest : public ::testing::Test {
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
    alpha_admin_ = key("alpha", auth::Scope::kAdmin);
    alpha_review_ = key("alpha", auth::Scope::kReview);
    alpha_read_ = key("alpha", auth::Scope::kRead);
    beta_admin_ = key("beta", auth::Scope::kAdmin);
    authenticator_ = std::make_unique<auth::Authenticator>(tenancy_.get());

    for (int i = 0; i < 3; ++i) {
      FetchedTrace trace;
      trace.trace_id = absl::StrCat("t", i);
      trace.snapshot.mutable_input()->set_prompt("why?");
      trace.snapshot.set_output("because");
      capture_.PutTrace("alpha", trace);
    }
    repository_ = std::make_unique<PgAnnotationRepository>(pool_.get(), &logger_);
    logic_ = std::make_unique<AnnotationLogic>(repository_.get(), &capture_, nullptr);
    executor_ = std::make_unique<BoundedExecutor>(4, 64);
    listener_ = std::make_unique<PgClaimListener>(db_->conninfo(), &notifier_, &logger_);
    handler_ = std::make_unique<AnnotationServiceHandler>(
        authenticator_.get(), logic_.get(), executor_.get(), &scheduler_, &notifier_, &logger_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(handler_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::AnnotationService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    for (int i = 0; i < 200 && !listener_->listening(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(listener_->listening());
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
    listener_.reset();
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& key,
                                               absl::Duration deadline = absl::Seconds(30)) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + key);
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(absl::ToInt64Milliseconds(deadline)));
    return context;
  }

  grpc::Status CreateQueue(const std::string& key, const std::string& id) {
    v1::CreateQueueRequest request;
    request.mutable_queue()->set_queue_id(id);
    request.mutable_queue()->set_display_name("triage");
    v1::RubricField* f = request.mutable_queue()->mutable_rubric()->add_fields();
    f->set_key("ok");
    f->set_label("OK?");
    f->set_required(true);
    f->mutable_boolean();
    request.mutable_queue()->mutable_source_rule()->set_source(v1::QUEUE_SOURCE_MANUAL_ONLY);
    v1::CreateQueueResponse response;
    return stub_->CreateQueue(Context(key).get(), request, &response);
  }

  grpc::Status AddItem(const std::string& trace) {
    v1::AddItemsRequest request;
    request.set_queue_id("q1");
    request.add_entries()->set_trace_id(trace);
    v1::AddItemsResponse response;
    grpc::Status status = stub_->AddItems(Context(alpha_admin_).get(), request, &response);
    EXPECT_EQ(response.results(0).outcome(), ::flywheel::common::v1::ITEM_OUTCOME_ACCEPTED);
    return status;
  }

  // Active leases in the database.
  int64_t Count() {
    pqxx::connection c(db_->conninfo());
    pqxx::nontransaction w(c);
    return w.exec1("SELECT count(*) FROM review.leases WHERE state = 1")[0].as<int64_t>();
  }

  Logger logger_{"annotation-test", Logger::Level::kWarning};
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<db::ConnectionPool> pool_;
  std::unique_ptr<auth::PgTenancyStore> tenancy_;
  std::unique_ptr<auth::Authenticator> authenticator_;
  std::string alpha_admin_, alpha_review_, alpha_read_, beta_admin_;
  FakeCaptureUpstream capture_;
  ClaimNotifier notifier_;
  Scheduler scheduler_;
  std::unique_ptr<PgAnnotationRepository> repository_;
  std::unique_ptr<AnnotationLogic> logic_;
  std::unique_ptr<BoundedExecutor> executor_;
  std::unique_ptr<PgClaimListener> listener_;
  std::unique_ptr<AnnotationServiceHandler> handler_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::AnnotationService::Stub> stub_;
};

TEST_F(AnnotationGrpcTest, ScopesAndTenancyAreEnforced) {
  EXPECT_EQ(CreateQueue(alpha_review_, "q1").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(CreateQueue(alpha_admin_, "q1").ok());
  v1::GetQueueRequest get;
  get.set_queue_id("q1");
  v1::GetQueueResponse got;
  EXPECT_TRUE(stub_->GetQueue(Context(alpha_read_).get(), get, &got).ok());
  EXPECT_EQ(got.queue().rubric().revision(), 1);
  EXPECT_EQ(stub_->GetQueue(Context(beta_admin_).get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::ClaimItemRequest claim;
  claim.set_queue_id("q1");
  claim.set_reviewer_id("ann");
  v1::ClaimItemResponse claimed;
  EXPECT_EQ(stub_->ClaimItem(Context(alpha_read_).get(), claim, &claimed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stub_->ClaimItem(Context("fw_sk_bogus").get(), claim, &claimed).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  claim.set_reviewer_id("not a valid id");
  EXPECT_EQ(stub_->ClaimItem(Context(alpha_review_).get(), claim, &claimed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AnnotationGrpcTest, EmptyQueueAnswersAtOnceWithoutWait) {
  ASSERT_TRUE(CreateQueue(alpha_admin_, "q1").ok());
  v1::ClaimItemRequest claim;
  claim.set_queue_id("q1");
  claim.set_reviewer_id("ann");
  v1::ClaimItemResponse claimed;
  ASSERT_TRUE(stub_->ClaimItem(Context(alpha_review_).get(), claim, &claimed).ok());
  EXPECT_FALSE(claimed.has_item());
  EXPECT_EQ(claimed.empty_reason(), v1::EMPTY_REASON_NO_ITEMS);
}

TEST_F(AnnotationGrpcTest, WaitingClaimIsWokenByANewItem) {
  ASSERT_TRUE(CreateQueue(alpha_admin_, "q1").ok());
  v1::ClaimItemRequest claim;
  claim.set_queue_id("q1");
  claim.set_reviewer_id("ann");
  claim.mutable_wait_timeout()->set_seconds(60);
  auto claimed = std::async(std::launch::async, [&] {
    v1::ClaimItemResponse response;
    grpc::Status status =
        stub_->ClaimItem(Context(alpha_review_, absl::Seconds(90)).get(), claim, &response);
    return std::make_pair(status, response);
  });
  // The claim subscribes instead of holding a thread or polling.
  for (int i = 0; i < 500 && notifier_.waiting() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(notifier_.waiting(), 1u);
  ASSERT_TRUE(AddItem("t1").ok());
  // Liveness, not speed: woken by the notification, long before its 60 s wait would end.
  ASSERT_EQ(claimed.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  auto [status, response] = claimed.get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.item().trace_id(), "t1");
  EXPECT_EQ(response.item().snapshot().output(), "because");
  EXPECT_FALSE(response.lease().lease_id().empty());
  EXPECT_EQ(notifier_.waiting(), 0u);
}

TEST_F(AnnotationGrpcTest, WaitingClaimIsWokenByARelease) {
  ASSERT_TRUE(CreateQueue(alpha_admin_, "q1").ok());
  ASSERT_TRUE(AddItem("t1").ok());
  v1::ClaimItemRequest claim;
  claim.set_queue_id("q1");
  claim.set_reviewer_id("ann");
  v1::ClaimItemResponse ann;
  ASSERT_TRUE(stub_->ClaimItem(Context(alpha_review_).get(), claim, &ann).ok());
  ASSERT_TRUE(ann.has_lease());
  claim.set_reviewer_id("bob");
  claim.mutable_wait_timeout()->set_seconds(60);
  auto claimed = std::async(std::launch::async, [&] {
    v1::ClaimItemResponse response;
    grpc::Status status =
        stub_->ClaimItem(Context(alpha_review_, absl::Seconds(90)).get(), claim, &response);
    return std::make_pair(status, response);
  });
  for (int i = 0; i < 500 && notifier_.waiting() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(notifier_.waiting(), 1u);
  v1::ReleaseItemRequest release;
  release.set_queue_id("q1");
  release.set_lease_id(ann.lease().lease_id());
  release.set_reviewer_id("ann");
  v1::ReleaseItemResponse released;
  ASSERT_TRUE(stub_->ReleaseItem(Context(alpha_review_).get(), release, &released).ok());
  ASSERT_EQ(claimed.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  auto [status, response] = claimed.get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.lease().reviewer_id(), "bob");
  EXPECT_EQ(response.item().trace_id(), "t1");
}

TEST_F(AnnotationGrpcTest, CancellingAWaitingClaimEndsItAtOnce) {
  ASSERT_TRUE(CreateQueue(alpha_admin_, "q1").ok());
  v1::ClaimItemRequest claim;
  claim.set_queue_id("q1");
  claim.set_reviewer_id("ann");
  claim.mutable_wait_timeout()->set_seconds(60);
  std::unique_ptr<grpc::ClientContext> context = Context(alpha_review_, absl::Seconds(90));
  auto claimed = std::async(std::launch::async, [&] {
    v1::ClaimItemResponse response;
    return stub_->ClaimItem(context.get(), claim, &response);
  });
  for (int i = 0; i < 500 && notifier_.waiting() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(notifier_.waiting(), 1u);
  context->TryCancel();
  ASSERT_EQ(claimed.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(claimed.get().error_code(), grpc::StatusCode::CANCELLED);
  // The server side ended too: it no longer waits for a notification.
  for (int i = 0; i < 500 && notifier_.waiting() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(notifier_.waiting(), 0u);
  ASSERT_TRUE(AddItem("t1").ok());
  EXPECT_EQ(Count(), 0);  // nothing was claimed for the cancelled call
}

TEST_F(AnnotationGrpcTest, WaitEndsEmptyAtItsTimeout) {
  ASSERT_TRUE(CreateQueue(alpha_admin_, "q1").ok());
  v1::ClaimItemRequest claim;
  claim.set_queue_id("q1");
  claim.set_reviewer_id("ann");
  claim.mutable_wait_timeout()->set_nanos(300000000);
  v1::ClaimItemResponse response;
  ASSERT_TRUE(stub_->ClaimItem(Context(alpha_review_).get(), claim, &response).ok());
  EXPECT_FALSE(response.has_item());
  EXPECT_EQ(response.empty_reason(), v1::EMPTY_REASON_NO_ITEMS);
  EXPECT_EQ(notifier_.waiting(), 0u);
  claim.mutable_wait_timeout()->set_seconds(61);
  EXPECT_EQ(stub_->ClaimItem(Context(alpha_review_).get(), claim, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace flywheel::annotation
