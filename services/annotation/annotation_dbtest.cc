// The annotation-queue logic on the real schema: claim order, leases (expiry, reaper, renew,
// release), skips, N-reviewer blindness, edit history, enqueue dedup, promotion outbox retries,
// and 64 concurrent reviewers draining a queue.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status/status_matchers.h"
#include "services/annotation/annotation_logic.h"
#include "services/annotation/logic_util.h"
#include "services/annotation/pg_annotation_repository.h"
#include "services/annotation/upstream_fakes.h"
#include "services/annotation/workers.h"
#include "tests/pg/test_database.h"

namespace flywheel::annotation {
namespace {

using ::flywheel::common::v1::ITEM_OUTCOME_ACCEPTED;
using ::flywheel::common::v1::ITEM_OUTCOME_DUPLICATE;
using ::flywheel::common::v1::ITEM_OUTCOME_REJECTED;
using ::flywheel::testing::StatusIs;
using ::flywheel::testing::TestDatabase;

constexpr char kProject[] = "alpha";

v1::Rubric TestRubric() {
  v1::Rubric rubric;
  v1::RubricField* verdict = rubric.add_fields();
  verdict->set_key("verdict");
  verdict->set_label("Verdict");
  verdict->set_required(true);
  for (const char* v : {"good", "bad"}) {
    verdict->mutable_categorical()->add_options()->set_value(v);
  }
  v1::RubricField* score = rubric.add_fields();
  score->set_key("score");
  score->set_label("Score");
  score->mutable_numeric()->set_min(1);
  score->mutable_numeric()->set_max(5);
  score->mutable_numeric()->set_step(1);
  v1::RubricField* fix = rubric.add_fields();
  fix->set_key("fix");
  fix->set_label("Correct answer");
  fix->mutable_correction();
  return rubric;
}

google::protobuf::Map<std::string, v1::FieldValue> Values(const std::string& verdict,
                                                          double score = 3,
                                                          const std::string& fix = "") {
  google::protobuf::Map<std::string, v1::FieldValue> values;
  values["verdict"].mutable_categorical()->add_values(verdict);
  values["score"].set_numeric(score);
  if (!fix.empty()) values["fix"].set_correction(fix);
  return values;
}

class AnnotationDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(db_, TestDatabase::Create());
    db::PoolOptions pool_options{db_->conninfo(), 24};
    pool_options.acquire_timeout = absl::Seconds(60);
    pool_ = std::make_unique<db::ConnectionPool>(pool_options);
    repository_ = std::make_unique<PgAnnotationRepository>(pool_.get(), &logger_);
    logic_ = std::make_unique<AnnotationLogic>(repository_.get(), &capture_, nullptr);
  }

  void PutTraces(int n, const std::string& prefix = "t") {
    for (int i = 0; i < n; ++i) {
      FetchedTrace trace;
      trace.trace_id = absl::StrFormat("%s%04d", prefix, i);
      trace.snapshot.mutable_input()->set_prompt(absl::StrCat("question ", i));
      trace.snapshot.set_output(absl::StrCat("answer ", i));
      trace.snapshot.set_feature_area("search");
      capture_.PutTrace(kProject, trace);
    }
  }

  v1::Queue CreateQueue(const std::string& id, int reviewers = 1,
                        v1::PromotionMode mode = v1::PROMOTION_MODE_MANUAL, int max_skips = 3) {
    v1::CreateQueueRequest request;
    v1::Queue* q = request.mutable_queue();
    q->set_queue_id(id);
    q->set_display_name("Queue " + id);
    *q->mutable_rubric() = TestRubric();
    q->set_reviewers_per_item(reviewers);
    q->set_max_skips_per_item(max_skips);
    q->mutable_source_rule()->set_source(v1::QUEUE_SOURCE_MANUAL_ONLY);
    q->set_default_eval_set_id("regressions");
    q->mutable_promotion_policy()->set_mode(mode);
    absl::StatusOr<v1::CreateQueueResponse> response = logic_->CreateQueue(caller_, request);
    EXPECT_OK(response);
    return response.ok() ? response->queue() : v1::Queue();
  }

  v1::AddItemsResponse Add(const std::string& queue, const std::vector<std::string>& traces,
                           int priority = 0) {
    v1::AddItemsRequest request;
    request.set_queue_id(queue);
    for (const std::string& t : traces) {
      v1::AddItemEntry* e = request.add_entries();
      e->set_trace_id(t);
      e->set_priority(priority);
    }
    absl::StatusOr<v1::AddItemsResponse> response = logic_->AddItems(caller_, request);
    EXPECT_OK(response);
    return response.ok() ? *response : v1::AddItemsResponse();
  }

  absl::StatusOr<v1::ClaimItemResponse> Claim(const std::string& queue,
                                              const std::string& reviewer) {
    v1::ClaimItemRequest request;
    request.set_queue_id(queue);
    request.set_reviewer_id(reviewer);
    return logic_->ClaimItem(caller_, request);
  }

  absl::StatusOr<v1::SubmitAnnotationResponse> Submit(
      const v1::Lease& lease, const google::protobuf::Map<std::string, v1::FieldValue>& values) {
    v1::SubmitAnnotationRequest request;
    request.set_queue_id(lease.queue_id());
    request.set_lease_id(lease.lease_id());
    request.set_reviewer_id(lease.reviewer_id());
    *request.mutable_values() = values;
    return logic_->SubmitAnnotation(caller_, request);
  }

  void Exec(const std::string& sql) {
    pqxx::connection c(db_->conninfo());
    pqxx::work w(c);
    w.exec(sql);
    w.commit();
  }

  int64_t Count(const std::string& sql) {
    pqxx::connection c(db_->conninfo());
    pqxx::nontransaction w(c);
    return w.exec1(sql)[0].as<int64_t>();
  }

  Logger logger_{"annotation-test", Logger::Level::kWarning};
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<db::ConnectionPool> pool_;
  std::unique_ptr<PgAnnotationRepository> repository_;
  FakeCaptureUpstream capture_;
  std::unique_ptr<AnnotationLogic> logic_;
  Caller caller_{kProject, true, ""};
};

TEST_F(AnnotationDbTest, AddItemsDeduplicatesAndRejectsUnknownTraces) {
  PutTraces(3);
  CreateQueue("q1");
  v1::AddItemsResponse first = Add("q1", {"t0000", "t0001", "t0000", "nope"});
  ASSERT_EQ(first.results_size(), 4);
  EXPECT_EQ(first.results(0).outcome(), ITEM_OUTCOME_ACCEPTED);
  EXPECT_EQ(first.results(1).outcome(), ITEM_OUTCOME_ACCEPTED);
  EXPECT_EQ(first.results(2).outcome(), ITEM_OUTCOME_DUPLICATE);
  EXPECT_EQ(first.results(3).outcome(), ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(first.results(3).code(), static_cast<int>(absl::StatusCode::kNotFound));

  v1::AddItemsResponse again = Add("q1", {"t0000", "t0002"});
  EXPECT_EQ(again.results(0).outcome(), ITEM_OUTCOME_DUPLICATE);
  EXPECT_EQ(again.results(1).outcome(), ITEM_OUTCOME_ACCEPTED);
  v1::AddItemsResponse other_priority = Add("q1", {"t0000"}, 5);
  EXPECT_EQ(other_priority.results(0).outcome(), ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(other_priority.results(0).code(), static_cast<int>(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(Count("SELECT count(*) FROM review.items"), 3);
  // Snapshot calls only for traces not yet in the queue.
  EXPECT_EQ(capture_.Calls("GetTraces"), 2);
}

TEST_F(AnnotationDbTest, UpdateQueueBumpsRubricLowersNAndArchivingEndsLeases) {
  PutTraces(2);
  const v1::Queue created = CreateQueue("q1", 2);
  EXPECT_EQ(created.rubric().revision(), 1);
  Add("q1", {"t0000", "t0001"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  ASSERT_OK(Submit(a.lease(), Values("good")));
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse b, Claim("q1", "bob"));
  ASSERT_EQ(b.item().trace_id(), a.item().trace_id());  // the partially annotated item first

  // A rubric key cannot change type once annotated; adding a key bumps the revision.
  v1::UpdateQueueRequest update;
  update.mutable_queue()->set_queue_id("q1");
  *update.mutable_queue()->mutable_rubric() = TestRubric();
  update.mutable_queue()->mutable_rubric()->mutable_fields(1)->mutable_boolean();
  update.mutable_update_mask()->add_paths("rubric");
  EXPECT_THAT(logic_->UpdateQueue(caller_, update),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  *update.mutable_queue()->mutable_rubric() = TestRubric();
  v1::RubricField* extra = update.mutable_queue()->mutable_rubric()->add_fields();
  extra->set_key("note");
  extra->set_label("Note");
  extra->mutable_free_text();
  update.set_etag("stale");
  EXPECT_THAT(logic_->UpdateQueue(caller_, update), StatusIs(absl::StatusCode::kAborted));
  update.set_etag(created.etag());
  ASSERT_OK_AND_ASSIGN(v1::UpdateQueueResponse updated, logic_->UpdateQueue(caller_, update));
  EXPECT_EQ(updated.queue().rubric().revision(), 2);
  EXPECT_NE(updated.queue().etag(), created.etag());

  // N = 1: the annotated item is complete; DONE items never reopen.
  v1::UpdateQueueRequest lower;
  lower.mutable_queue()->set_queue_id("q1");
  lower.mutable_queue()->set_reviewers_per_item(1);
  lower.mutable_update_mask()->add_paths("reviewers_per_item");
  ASSERT_OK(logic_->UpdateQueue(caller_, lower));
  v1::GetItemRequest get;
  get.set_queue_id("q1");
  get.set_trace_id(a.item().trace_id());
  ASSERT_OK_AND_ASSIGN(v1::GetItemResponse done, logic_->GetItem(caller_, get));
  EXPECT_EQ(done.item().state(), v1::ITEM_STATE_DONE);

  // Archiving ends active leases and refuses claims and submissions.
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse c, Claim("q1", "carol"));
  ASSERT_EQ(c.item().trace_id(), "t0001");
  v1::DeleteQueueRequest archive;
  archive.set_queue_id("q1");
  ASSERT_OK_AND_ASSIGN(v1::DeleteQueueResponse archived, logic_->DeleteQueue(caller_, archive));
  EXPECT_EQ(archived.queue().state(), v1::QUEUE_STATE_ARCHIVED);
  ASSERT_OK(logic_->DeleteQueue(caller_, archive));  // idempotent
  EXPECT_EQ(Count("SELECT count(*) FROM review.leases WHERE state = 1"), 0);
  EXPECT_THAT(Submit(c.lease(), Values("good")), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Claim("q1", "dan"), StatusIs(absl::StatusCode::kFailedPrecondition));
  v1::ListQueuesRequest list;
  ASSERT_OK_AND_ASSIGN(v1::ListQueuesResponse live, logic_->ListQueues(caller_, list));
  EXPECT_EQ(live.queues_size(), 0);
  list.add_states(v1::QUEUE_STATE_ARCHIVED);
  ASSERT_OK_AND_ASSIGN(v1::ListQueuesResponse all, logic_->ListQueues(caller_, list));
  EXPECT_EQ(all.queues_size(), 1);
}

TEST_F(AnnotationDbTest, ListItemsPagesInEnqueueOrderWithFilters) {
  PutTraces(5);
  CreateQueue("q1");
  Add("q1", {"t0000", "t0001", "t0002"});
  Add("q1", {"t0003", "t0004"}, 7);
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  ASSERT_EQ(a.item().trace_id(), "t0003");
  ASSERT_OK(Submit(a.lease(), Values("good")));
  v1::ListItemsRequest list;
  list.set_queue_id("q1");
  list.set_page_size(2);
  std::vector<std::string> seen;
  do {
    ASSERT_OK_AND_ASSIGN(v1::ListItemsResponse page, logic_->ListItems(caller_, list));
    for (const v1::Item& item : page.items()) {
      seen.push_back(item.trace_id());
      EXPECT_FALSE(item.has_snapshot());
    }
    list.set_page_token(page.next_page_token());
  } while (!list.page_token().empty());
  EXPECT_EQ(seen, (std::vector<std::string>{"t0000", "t0001", "t0002", "t0003", "t0004"}));
  list.clear_page_token();
  list.add_states(v1::ITEM_STATE_DONE);
  list.set_view(v1::ITEM_VIEW_FULL);
  ASSERT_OK_AND_ASSIGN(v1::ListItemsResponse done, logic_->ListItems(caller_, list));
  ASSERT_EQ(done.items_size(), 1);
  EXPECT_EQ(done.items(0).trace_id(), "t0003");
  EXPECT_EQ(done.items(0).snapshot().output(), "answer 3");
  EXPECT_TRUE(done.items(0).has_complete_time());
  // A token is bound to its filters.
  list.clear_states();
  list.set_page_size(1);
  ASSERT_OK_AND_ASSIGN(v1::ListItemsResponse first, logic_->ListItems(caller_, list));
  list.add_sources(v1::ITEM_SOURCE_SAMPLED);
  list.set_page_token(first.next_page_token());
  EXPECT_THAT(logic_->ListItems(caller_, list), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::ListItemsRequest unknown;
  unknown.set_queue_id("nope");
  EXPECT_THAT(logic_->ListItems(caller_, unknown), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AnnotationDbTest, ClaimFollowsPriorityThenPartiallyAnnotatedThenEnqueueOrder) {
  PutTraces(4);
  CreateQueue("q1", 2);
  Add("q1", {"t0000"});
  Add("q1", {"t0001"});
  Add("q1", {"t0002"}, 10);
  Add("q1", {"t0003"});
  // Highest priority first.
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  EXPECT_EQ(a.item().trace_id(), "t0002");
  EXPECT_EQ(a.item().snapshot().output(), "answer 2");
  EXPECT_EQ(a.rubric().fields_size(), 3);
  // Bob labels t0000 (oldest of priority 0).
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse b, Claim("q1", "bob"));
  EXPECT_EQ(b.item().trace_id(), "t0002");  // its second slot
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse b2, Claim("q1", "bob"));
  EXPECT_EQ(b2.item().trace_id(), "t0000");
  ASSERT_OK(Submit(b2.lease(), Values("good")));
  // Carol: t0002 is fully leased; t0000 has an annotation so it comes before t0001.
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse c, Claim("q1", "carol"));
  EXPECT_EQ(c.item().trace_id(), "t0000");
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse c2, Claim("q1", "carol"));
  EXPECT_EQ(c2.item().trace_id(), "t0001");
}

TEST_F(AnnotationDbTest, ExpiredLeaseIsRefusedAndReturnedByTheReaper) {
  PutTraces(1);
  CreateQueue("q1");
  Add("q1", {"t0000"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  ASSERT_TRUE(a.has_lease());
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse blocked, Claim("q1", "bob"));
  EXPECT_FALSE(blocked.has_item());
  EXPECT_EQ(blocked.empty_reason(), v1::EMPTY_REASON_ALL_LEASED);
  EXPECT_TRUE(blocked.has_next_lease_expire_time());

  Exec("UPDATE review.leases SET expire_time = now() - interval '1 second'");
  EXPECT_THAT(Submit(a.lease(), Values("good")), StatusIs(absl::StatusCode::kFailedPrecondition));
  LeaseReaper reaper(repository_.get(), &logger_);
  ASSERT_OK_AND_ASSIGN(int64_t reaped, reaper.RunOnce());
  EXPECT_EQ(reaped, 1);
  EXPECT_EQ(Count("SELECT count(*) FROM review.items WHERE state = 1 AND active_lease_count = 0"),
            1);
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse b, Claim("q1", "bob"));
  EXPECT_EQ(b.item().trace_id(), "t0000");
  ASSERT_OK(Submit(b.lease(), Values("bad")));
  // Renewing the expired lease is refused too.
  v1::RenewLeaseRequest renew;
  renew.set_queue_id("q1");
  renew.set_lease_id(a.lease().lease_id());
  renew.set_reviewer_id("ann");
  EXPECT_THAT(logic_->RenewLease(caller_, renew), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(AnnotationDbTest, ClaimTreatsExpiredLeasesAsClaimableWithoutTheReaper) {
  PutTraces(1);
  CreateQueue("q1");
  Add("q1", {"t0000"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  Exec("UPDATE review.leases SET expire_time = now() - interval '1 second'");
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse b, Claim("q1", "bob"));
  EXPECT_EQ(b.item().trace_id(), "t0000");
  EXPECT_EQ(Count("SELECT count(*) FROM review.leases WHERE state = 5"), 1);
}

TEST_F(AnnotationDbTest, RenewExtendsAndReleaseReturnsTheSlotToEveryone) {
  PutTraces(1);
  CreateQueue("q1");
  Add("q1", {"t0000"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  v1::RenewLeaseRequest renew;
  renew.set_queue_id("q1");
  renew.set_lease_id(a.lease().lease_id());
  renew.set_reviewer_id("ann");
  ASSERT_OK_AND_ASSIGN(v1::RenewLeaseResponse renewed, logic_->RenewLease(caller_, renew));
  EXPECT_GE(renewed.lease().expire_time().seconds(), a.lease().expire_time().seconds());
  renew.set_reviewer_id("bob");
  EXPECT_THAT(logic_->RenewLease(caller_, renew), StatusIs(absl::StatusCode::kFailedPrecondition));

  v1::ReleaseItemRequest release;
  release.set_queue_id("q1");
  release.set_lease_id(a.lease().lease_id());
  release.set_reviewer_id("ann");
  ASSERT_OK_AND_ASSIGN(v1::ReleaseItemResponse released, logic_->ReleaseItem(caller_, release));
  EXPECT_EQ(released.item().state(), v1::ITEM_STATE_PENDING);
  ASSERT_OK(logic_->ReleaseItem(caller_, release));  // idempotent
  EXPECT_THAT(Submit(a.lease(), Values("good")), StatusIs(absl::StatusCode::kFailedPrecondition));
  // The releaser may take it again.
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse again, Claim("q1", "ann"));
  EXPECT_EQ(again.item().trace_id(), "t0000");
  ASSERT_OK(Submit(again.lease(), Values("good")));
  release.set_lease_id(again.lease().lease_id());
  EXPECT_THAT(logic_->ReleaseItem(caller_, release),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  v1::ReleaseItemRequest unknown = release;
  unknown.set_lease_id("no-such-lease");
  EXPECT_THAT(logic_->ReleaseItem(caller_, unknown), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AnnotationDbTest, SkippedItemIsNeverOfferedToTheSkipperAgain) {
  PutTraces(1);
  CreateQueue("q1", 1, v1::PROMOTION_MODE_MANUAL, /*max_skips=*/2);
  Add("q1", {"t0000"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  v1::SkipItemRequest skip;
  skip.set_queue_id("q1");
  skip.set_lease_id(a.lease().lease_id());
  skip.set_reviewer_id("ann");
  skip.set_reason("needs legal expertise");
  ASSERT_OK_AND_ASSIGN(v1::SkipItemResponse skipped, logic_->SkipItem(caller_, skip));
  EXPECT_EQ(skipped.item().skip_count(), 1);
  EXPECT_EQ(skipped.item().state(), v1::ITEM_STATE_PENDING);
  ASSERT_OK(logic_->SkipItem(caller_, skip));  // idempotent

  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse ann_again, Claim("q1", "ann"));
  EXPECT_FALSE(ann_again.has_item());
  EXPECT_EQ(ann_again.empty_reason(), v1::EMPTY_REASON_NO_ITEMS);
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse b, Claim("q1", "bob"));
  EXPECT_EQ(b.item().trace_id(), "t0000");
  skip.set_lease_id(b.lease().lease_id());
  skip.set_reviewer_id("bob");
  ASSERT_OK_AND_ASSIGN(v1::SkipItemResponse second, logic_->SkipItem(caller_, skip));
  EXPECT_EQ(second.item().state(), v1::ITEM_STATE_SKIPPED);
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse c, Claim("q1", "carol"));
  EXPECT_FALSE(c.has_item());
}

TEST_F(AnnotationDbTest, RestrictedQueueClosesItemsItsReviewersHaveAllDone) {
  PutTraces(1);
  v1::CreateQueueRequest request;
  v1::Queue* q = request.mutable_queue();
  q->set_queue_id("r1");
  q->set_display_name("restricted");
  *q->mutable_rubric() = TestRubric();
  q->set_reviewers_per_item(3);
  q->mutable_source_rule()->set_source(v1::QUEUE_SOURCE_MANUAL_ONLY);
  q->mutable_assignment()->add_reviewer_ids("ann");
  q->mutable_assignment()->add_reviewer_ids("bob");
  q->mutable_assignment()->set_restrict_to_reviewers(true);
  ASSERT_OK(logic_->CreateQueue(caller_, request));
  Add("r1", {"t0000"});
  EXPECT_THAT(Claim("r1", "carol"), StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("r1", "ann"));
  ASSERT_OK_AND_ASSIGN(v1::SubmitAnnotationResponse first, Submit(a.lease(), Values("good")));
  EXPECT_EQ(first.item().state(), v1::ITEM_STATE_PENDING);
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse b, Claim("r1", "bob"));
  v1::SkipItemRequest skip;
  skip.set_queue_id("r1");
  skip.set_lease_id(b.lease().lease_id());
  skip.set_reviewer_id("bob");
  ASSERT_OK_AND_ASSIGN(v1::SkipItemResponse skipped, logic_->SkipItem(caller_, skip));
  EXPECT_EQ(skipped.item().state(), v1::ITEM_STATE_SKIPPED);
  EXPECT_TRUE(skipped.item().has_complete_time());
}

TEST_F(AnnotationDbTest, ReviewersDoNotSeeEachOthersLabelsUntilTheItemIsDone) {
  PutTraces(1);
  CreateQueue("q1", 2);
  Add("q1", {"t0000"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse b, Claim("q1", "bob"));
  ASSERT_OK_AND_ASSIGN(v1::SubmitAnnotationResponse ann, Submit(a.lease(), Values("good")));
  EXPECT_EQ(ann.item().state(), v1::ITEM_STATE_LEASED);

  const Caller reviewer_key{kProject, false, ""};
  v1::GetAnnotationRequest get;
  get.set_annotation_id(ann.annotation().annotation_id());
  EXPECT_THAT(logic_->GetAnnotation(reviewer_key, get),
              StatusIs(absl::StatusCode::kInvalidArgument));  // viewer required
  get.set_viewer_reviewer_id("bob");
  EXPECT_THAT(logic_->GetAnnotation(reviewer_key, get),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  get.set_viewer_reviewer_id("ann");
  ASSERT_OK(logic_->GetAnnotation(reviewer_key, get));

  v1::ListAnnotationsRequest list;
  list.set_queue_id("q1");
  list.set_trace_id("t0000");
  list.set_viewer_reviewer_id("bob");
  ASSERT_OK_AND_ASSIGN(v1::ListAnnotationsResponse hidden,
                       logic_->ListAnnotations(reviewer_key, list));
  EXPECT_EQ(hidden.annotations_size(), 0);
  EXPECT_EQ(hidden.blinded_count(), 1);

  ASSERT_OK_AND_ASSIGN(v1::SubmitAnnotationResponse bob, Submit(b.lease(), Values("bad")));
  EXPECT_EQ(bob.item().state(), v1::ITEM_STATE_DONE);
  ASSERT_OK_AND_ASSIGN(v1::ListAnnotationsResponse shown,
                       logic_->ListAnnotations(reviewer_key, list));
  EXPECT_EQ(shown.annotations_size(), 2);
  EXPECT_EQ(shown.blinded_count(), 0);
  get.set_viewer_reviewer_id("bob");
  ASSERT_OK(logic_->GetAnnotation(reviewer_key, get));
}

TEST_F(AnnotationDbTest, EditsKeepEveryRevisionInTheHistory) {
  PutTraces(1);
  CreateQueue("q1");
  Add("q1", {"t0000"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  ASSERT_OK_AND_ASSIGN(v1::SubmitAnnotationResponse submitted, Submit(a.lease(), Values("good")));
  const std::string id = submitted.annotation().annotation_id();

  v1::UpdateAnnotationRequest update;
  update.set_annotation_id(id);
  update.set_reviewer_id("ann");
  *update.mutable_values() = Values("bad", 2);
  update.mutable_update_mask()->add_paths("values");
  update.set_edit_reason("misread the output");
  ASSERT_OK_AND_ASSIGN(v1::UpdateAnnotationResponse r2, logic_->UpdateAnnotation(caller_, update));
  EXPECT_EQ(r2.annotation().revision(), 2);
  update.set_expected_revision(1);
  EXPECT_THAT(logic_->UpdateAnnotation(caller_, update), StatusIs(absl::StatusCode::kAborted));
  update.set_expected_revision(2);
  update.mutable_update_mask()->clear_paths();
  update.mutable_update_mask()->add_paths("comment");
  update.set_comment("second thoughts");
  ASSERT_OK_AND_ASSIGN(v1::UpdateAnnotationResponse r3, logic_->UpdateAnnotation(caller_, update));
  EXPECT_EQ(r3.annotation().revision(), 3);
  EXPECT_EQ(r3.annotation().values().at("verdict").categorical().values(0), "bad");
  update.set_reviewer_id("bob");
  update.set_expected_revision(0);
  EXPECT_THAT(logic_->UpdateAnnotation(caller_, update),
              StatusIs(absl::StatusCode::kPermissionDenied));
  *update.mutable_values() = Values("maybe");
  update.set_reviewer_id("ann");
  update.mutable_update_mask()->add_paths("values");
  EXPECT_THAT(logic_->UpdateAnnotation(caller_, update),
              StatusIs(absl::StatusCode::kInvalidArgument));

  v1::ListAnnotationHistoryRequest history;
  history.set_annotation_id(id);
  history.set_page_size(2);
  ASSERT_OK_AND_ASSIGN(v1::ListAnnotationHistoryResponse page1,
                       logic_->ListAnnotationHistory(caller_, history));
  ASSERT_EQ(page1.revisions_size(), 2);
  EXPECT_EQ(page1.revisions(0).revision(), 3);
  EXPECT_EQ(page1.revisions(0).comment(), "second thoughts");
  EXPECT_EQ(page1.revisions(1).revision(), 2);
  EXPECT_EQ(page1.revisions(1).edit_reason(), "misread the output");
  history.set_page_token(page1.next_page_token());
  ASSERT_OK_AND_ASSIGN(v1::ListAnnotationHistoryResponse page2,
                       logic_->ListAnnotationHistory(caller_, history));
  ASSERT_EQ(page2.revisions_size(), 1);
  EXPECT_EQ(page2.revisions(0).revision(), 1);
  EXPECT_EQ(page2.revisions(0).values().at("verdict").categorical().values(0), "good");
}

TEST_F(AnnotationDbTest, SubmitValidatesAgainstTheRubricAndTheLeaseOwner) {
  PutTraces(1);
  CreateQueue("q1");
  Add("q1", {"t0000"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  EXPECT_THAT(Submit(a.lease(), Values("good", 7)), StatusIs(absl::StatusCode::kInvalidArgument));
  google::protobuf::Map<std::string, v1::FieldValue> missing;
  EXPECT_THAT(Submit(a.lease(), missing), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::Lease stolen = a.lease();
  stolen.set_reviewer_id("mallory");
  EXPECT_THAT(Submit(stolen, Values("good")), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(v1::SubmitAnnotationResponse ok, Submit(a.lease(), Values("good")));
  // Resubmitting the same values returns the annotation; other values are refused.
  ASSERT_OK_AND_ASSIGN(v1::SubmitAnnotationResponse same, Submit(a.lease(), Values("good")));
  EXPECT_EQ(same.annotation().annotation_id(), ok.annotation().annotation_id());
  EXPECT_THAT(Submit(a.lease(), Values("bad")), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(AnnotationDbTest, PromotionOutboxRetriesUntilEvalSetAcknowledges) {
  PutTraces(1);
  CreateQueue("q1", 1, v1::PROMOTION_MODE_ON_SUBMIT);
  Add("q1", {"t0000"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  ASSERT_OK_AND_ASSIGN(v1::SubmitAnnotationResponse submitted,
                       Submit(a.lease(), Values("bad", 1, "the right answer")));
  EXPECT_EQ(submitted.annotation().promotion().state(), v1::PROMOTION_STATE_PENDING);
  const std::string id = submitted.annotation().annotation_id();

  FakeEvalSetUpstream evalset;
  evalset.CreateSet(kProject, "regressions");
  evalset.FailNext("AddCases", 2, absl::UnavailableError("evalset: down"));
  BackoffOptions backoff;
  backoff.initial = absl::Milliseconds(20);
  backoff.jitter = 0;
  PromotionDelivery delivery(repository_.get(), &evalset, &logger_, backoff);
  int delivered = 0;
  for (int i = 0; i < 100 && delivered == 0; ++i) {
    ASSERT_OK_AND_ASSIGN(delivered, delivery.RunOnce());
    if (delivered == 0) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(delivered, 1);
  EXPECT_EQ(evalset.Calls("AddCases"), 3);
  std::vector<::flywheel::evalset::v1::Case> cases = evalset.Cases(kProject, "regressions");
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].case_key(), id);
  EXPECT_EQ(cases[0].source_annotation_id(), id);
  EXPECT_EQ(cases[0].source_trace_id(), "t0000");
  EXPECT_EQ(cases[0].expected_output(), "the right answer");
  EXPECT_EQ(cases[0].input().prompt(), "question 0");

  v1::GetAnnotationRequest get;
  get.set_annotation_id(id);
  ASSERT_OK_AND_ASSIGN(v1::GetAnnotationResponse got, logic_->GetAnnotation(caller_, get));
  EXPECT_EQ(got.annotation().promotion().state(), v1::PROMOTION_STATE_DELIVERED);
  EXPECT_EQ(got.annotation().promotion().attempts(), 3);
  EXPECT_EQ(got.annotation().promotion().eval_case_id(), cases[0].case_id());
  EXPECT_EQ(got.annotation().promotion().last_error_code(), 0);
  // Nothing is delivered twice.
  ASSERT_OK_AND_ASSIGN(int again, delivery.RunOnce());
  EXPECT_EQ(again, 0);
  EXPECT_EQ(evalset.Calls("AddCases"), 3);
}

TEST_F(AnnotationDbTest, UnknownEvalSetMakesThePromotionFailed) {
  PutTraces(1);
  CreateQueue("q1");
  Add("q1", {"t0000"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  ASSERT_OK_AND_ASSIGN(v1::SubmitAnnotationResponse submitted, Submit(a.lease(), Values("bad")));
  EXPECT_EQ(submitted.annotation().promotion().state(), v1::PROMOTION_STATE_NOT_PROMOTED);
  v1::PromoteAnnotationRequest promote;
  promote.set_annotation_id(submitted.annotation().annotation_id());
  promote.set_eval_set_id("missing");
  ASSERT_OK_AND_ASSIGN(v1::PromoteAnnotationResponse pending,
                       logic_->PromoteAnnotation(caller_, promote));
  EXPECT_EQ(pending.annotation().promotion().state(), v1::PROMOTION_STATE_PENDING);
  EXPECT_EQ(pending.annotation().promotion().trigger(), v1::PROMOTION_TRIGGER_MANUAL);
  FakeEvalSetUpstream evalset;
  PromotionDelivery delivery(repository_.get(), &evalset, &logger_);
  ASSERT_OK(delivery.RunOnce());
  v1::GetAnnotationRequest get;
  get.set_annotation_id(submitted.annotation().annotation_id());
  ASSERT_OK_AND_ASSIGN(v1::GetAnnotationResponse got, logic_->GetAnnotation(caller_, get));
  EXPECT_EQ(got.annotation().promotion().state(), v1::PROMOTION_STATE_FAILED);
  EXPECT_EQ(got.annotation().promotion().last_error_code(),
            static_cast<int>(absl::StatusCode::kNotFound));
}

TEST_F(AnnotationDbTest, ProgressCountsItemsAndReviewers) {
  PutTraces(3);
  CreateQueue("q1", 2);
  Add("q1", {"t0000", "t0001", "t0002"});
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse a, Claim("q1", "ann"));
  ASSERT_OK(Submit(a.lease(), Values("good")));
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse b, Claim("q1", "bob"));
  ASSERT_OK(Submit(b.lease(), Values("good")));
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse c, Claim("q1", "bob"));
  v1::GetQueueProgressRequest request;
  request.set_queue_id("q1");
  ASSERT_OK_AND_ASSIGN(v1::GetQueueProgressResponse p, logic_->GetQueueProgress(caller_, request));
  EXPECT_EQ(p.total_count(), 3);
  EXPECT_EQ(p.done_count(), 1);
  EXPECT_EQ(p.pending_count(), 2);
  EXPECT_EQ(p.annotations_remaining(), 4);
  EXPECT_EQ(p.annotations_submitted(), 2);
  EXPECT_EQ(p.items_completed(), 1);
  ASSERT_EQ(p.reviewers_size(), 2);
  EXPECT_EQ(p.reviewers(0).reviewer_id(), "ann");  // ties by id
  EXPECT_EQ(p.reviewers(1).reviewer_id(), "bob");
  EXPECT_EQ(p.reviewers(1).claimed_count(), 2);
  EXPECT_EQ(p.reviewers(1).active_lease_count(), 1);

  v1::GetQueueAgreementRequest agreement;
  agreement.set_queue_id("q1");
  ASSERT_OK_AND_ASSIGN(v1::GetQueueAgreementResponse ag,
                       logic_->GetQueueAgreement(caller_, agreement));
  EXPECT_EQ(ag.item_count(), 1);
  ASSERT_EQ(ag.fields_size(), 3);
  EXPECT_EQ(ag.fields(0).field_key(), "verdict");
  EXPECT_EQ(ag.fields(0).items_with_multiple_labels(), 1);
}

TEST_F(AnnotationDbTest, FillerEnqueuesFlaggedTracesByRuleWithBaselineAndAdvancesTheCursor) {
  // 23:00 UTC: most of the day's pro-rata quota is available.
  const absl::Time now = absl::FromCivil(absl::CivilHour(2026, 11, 23, 23), absl::UTCTimeZone());
  for (int i = 0; i < 10; ++i) {
    FetchedTrace trace;
    trace.trace_id = absl::StrFormat("t%04d", i);
    trace.snapshot.mutable_input()->set_prompt(absl::StrCat("question ", i));
    trace.snapshot.set_feature_area(i == 4 ? "billing" : "search");
    trace.signal_kinds = {"regenerate"};
    SetTime(now - absl::Hours(1), trace.snapshot.mutable_trace_create_time());
    capture_.PutTrace(kProject, trace);
  }
  FakeClusteringUpstream clustering;
  clustering.Assign(kProject, "t0000", "c1", "broken citations");
  v1::CreateQueueRequest request;
  v1::Queue* q = request.mutable_queue();
  q->set_queue_id("auto");
  q->set_display_name("auto-filled");
  *q->mutable_rubric() = TestRubric();
  q->mutable_source_rule()->add_feature_areas("search");
  q->mutable_sampling()->set_random_baseline_share(0.2);
  q->mutable_assignment()->add_reviewer_ids("ann");
  q->mutable_assignment()->add_reviewer_ids("bob");
  ASSERT_OK(logic_->CreateQueue(caller_, request));
  for (int i : {0, 1, 2, 3, 4, 0}) {
    ::flywheel::capture::v1::TraceSummary summary;
    summary.set_trace_id(absl::StrFormat("t%04d", i));
    capture_.AppendFlagged(kProject, summary);
  }
  capture_.AppendUnflagged(kProject, "t0005");

  QueueFiller::Options options;
  options.owner = "replica-1";
  QueueFiller filler(repository_.get(), &capture_, &clustering, nullptr, &logger_, options);
  ASSERT_OK_AND_ASSIGN(int64_t enqueued, filler.RunOnce(now));
  // t0..t3 pass the rule (t4 is billing); 4 sampled at share 0.2 add 1 baseline trace.
  EXPECT_EQ(enqueued, 5);
  EXPECT_EQ(Count("SELECT count(*) FROM review.items WHERE source = 2"), 4);
  EXPECT_EQ(Count("SELECT count(*) FROM review.items WHERE source = 3"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM review.items WHERE trace_id = 't0004' AND source = 2"), 0);
  EXPECT_EQ(Count("SELECT fill_cursor FROM review.queues WHERE queue_id = 'auto'"), 7);
  // Round-robin pre-assignment to the queue's reviewers (1 per item).
  EXPECT_EQ(Count("SELECT count(*) FROM review.items WHERE cardinality(assigned_reviewers) = 1"),
            5);
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse claimed, Claim("auto", "ann"));
  EXPECT_FALSE(claimed.item().assigned_reviewer_ids().empty());
  EXPECT_EQ(claimed.item().assigned_reviewer_ids(0), "ann");
  v1::GetItemRequest get;
  get.set_queue_id("auto");
  get.set_trace_id("t0000");
  get.set_view(v1::ITEM_VIEW_FULL);
  ASSERT_OK_AND_ASSIGN(v1::GetItemResponse item, logic_->GetItem(caller_, get));
  EXPECT_EQ(item.item().snapshot().cluster_id(), "c1");
  EXPECT_EQ(item.item().snapshot().cluster_name(), "broken citations");

  // Another replica does not fill a queue this one holds; nothing new means nothing enqueued.
  options.owner = "replica-2";
  QueueFiller other(repository_.get(), &capture_, &clustering, nullptr, &logger_, options);
  ::flywheel::capture::v1::TraceSummary summary;
  summary.set_trace_id("t0006");
  capture_.AppendFlagged(kProject, summary);
  ASSERT_OK_AND_ASSIGN(int64_t by_other, other.RunOnce(now));
  EXPECT_EQ(by_other, 0);
  // Capture down: the cursor stays, and the next fill picks the entry up.
  capture_.FailNext("ReadFlaggedFeed", 1, absl::UnavailableError("capture: down"));
  ASSERT_OK_AND_ASSIGN(int64_t during_outage, filler.RunOnce(now));
  EXPECT_EQ(during_outage, 0);
  EXPECT_EQ(Count("SELECT fill_cursor FROM review.queues WHERE queue_id = 'auto'"), 7);
  ASSERT_OK_AND_ASSIGN(int64_t after, filler.RunOnce(now));
  EXPECT_GE(after, 1);
  EXPECT_EQ(Count("SELECT fill_cursor FROM review.queues WHERE queue_id = 'auto'"), 8);
  EXPECT_EQ(Count("SELECT count(*) FROM review.items WHERE trace_id = 't0006'"), 1);
}

TEST_F(AnnotationDbTest, ThemeQueueWaitsForClusteringInsteadOfDroppingAFreshlyFlaggedTrace) {
  const absl::Time now = absl::FromCivil(absl::CivilHour(2026, 11, 23, 23), absl::UTCTimeZone());
  for (const char* id : {"fresh", "stale"}) {
    FetchedTrace trace;
    trace.trace_id = id;
    trace.snapshot.mutable_input()->set_prompt(absl::StrCat("question ", id));
    SetTime(now - absl::Hours(1), trace.snapshot.mutable_trace_create_time());
    capture_.PutTrace(kProject, trace);
  }
  FakeClusteringUpstream clustering;
  v1::CreateQueueRequest request;
  v1::Queue* q = request.mutable_queue();
  q->set_queue_id("themed");
  q->set_display_name("citations only");
  *q->mutable_rubric() = TestRubric();
  q->mutable_source_rule()->add_cluster_ids("c1");
  ASSERT_OK(logic_->CreateQueue(caller_, request));
  ::flywheel::capture::v1::TraceSummary summary;
  summary.set_trace_id("fresh");
  capture_.AppendFlagged(kProject, summary, now - absl::Seconds(1));

  QueueFiller::Options options;
  options.owner = "replica-1";
  QueueFiller filler(repository_.get(), &capture_, &clustering, nullptr, &logger_, options);
  // Clustering has not seen the trace yet: nothing enqueued, and the cursor stays put.
  ASSERT_OK_AND_ASSIGN(int64_t first, filler.RunOnce(now));
  EXPECT_EQ(first, 0);
  EXPECT_TRUE(filler.waiting_for_clustering());
  EXPECT_EQ(Count("SELECT fill_cursor FROM review.queues WHERE queue_id = 'themed'"), 0);
  // Once clustering assigns it to the queue's theme, the next round enqueues it.
  clustering.Assign(kProject, "fresh", "c1", "broken citations");
  ASSERT_OK_AND_ASSIGN(int64_t second, filler.RunOnce(now));
  EXPECT_EQ(second, 1);
  EXPECT_FALSE(filler.waiting_for_clustering());
  EXPECT_EQ(Count("SELECT count(*) FROM review.items WHERE trace_id = 'fresh'"), 1);
  // A trace clustering never sees is taken as unassigned after the grace period, so a
  // clustering outage cannot stall the queue forever.
  summary.set_trace_id("stale");
  capture_.AppendFlagged(kProject, summary, now - options.clustering_grace - absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(int64_t third, filler.RunOnce(now));
  EXPECT_EQ(third, 0);
  EXPECT_FALSE(filler.waiting_for_clustering());
  EXPECT_EQ(Count("SELECT fill_cursor FROM review.queues WHERE queue_id = 'themed'"), 2);
  EXPECT_EQ(Count("SELECT count(*) FROM review.items WHERE trace_id = 'stale'"), 0);
}

TEST_F(AnnotationDbTest, ConcurrentReviewersDrainTheQueueWithoutDoubleClaims) {
  constexpr int kItems = 300;
  constexpr int kReviewers = 64;
  constexpr int kPerItem = 2;
  PutTraces(kItems);
  CreateQueue("q1", kPerItem);
  std::vector<std::string> ids;
  for (int i = 0; i < kItems; ++i) ids.push_back(absl::StrFormat("t%04d", i));
  v1::AddItemsResponse added = Add("q1", ids);
  for (const auto& r : added.results()) ASSERT_EQ(r.outcome(), ITEM_OUTCOME_ACCEPTED);

  std::mutex mu;
  std::map<std::string, std::set<std::string>> held;  // trace -> reviewers holding a lease now
  std::atomic<int> double_claims{0}, submitted{0}, failures{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < kReviewers; ++r) {
    threads.emplace_back([&, r] {
      const std::string reviewer = absl::StrCat("reviewer-", r);
      while (true) {
        absl::StatusOr<v1::ClaimItemResponse> claim = Claim("q1", reviewer);
        if (!claim.ok()) {
          ++failures;
          return;
        }
        if (!claim->has_item()) {
          if (claim->empty_reason() == v1::EMPTY_REASON_NO_ITEMS) return;
          absl::SleepFor(absl::Milliseconds(5));
          continue;
        }
        const std::string trace = claim->item().trace_id();
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!held[trace].insert(reviewer).second ||
              static_cast<int>(held[trace].size()) > kPerItem) {
            ++double_claims;
          }
        }
        absl::StatusOr<v1::SubmitAnnotationResponse> s =
            Submit(claim->lease(), Values(r % 2 ? "good" : "bad"));
        {
          std::lock_guard<std::mutex> lock(mu);
          held[trace].erase(reviewer);
        }
        if (!s.ok()) {
          ++failures;
          return;
        }
        ++submitted;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(double_claims.load(), 0);
  EXPECT_EQ(submitted.load(), kItems * kPerItem);
  EXPECT_EQ(Count("SELECT count(*) FROM review.items WHERE state = 3 AND annotation_count = 2 AND "
                  "active_lease_count = 0"),
            kItems);
  // Every item labeled exactly N times, by N distinct reviewers; every lease ended in a submit.
  EXPECT_EQ(Count("SELECT count(*) FROM (SELECT trace_id FROM review.annotations GROUP BY "
                  "trace_id HAVING count(*) = 2 AND count(DISTINCT reviewer_id) = 2) x"),
            kItems);
  EXPECT_EQ(Count("SELECT count(*) FROM review.annotations"), kItems * kPerItem);
  EXPECT_EQ(Count("SELECT count(*) FROM review.leases"), kItems * kPerItem);
  EXPECT_EQ(Count("SELECT count(*) FROM review.leases WHERE state <> 2"), 0);
}

}  // namespace
}  // namespace flywheel::annotation
