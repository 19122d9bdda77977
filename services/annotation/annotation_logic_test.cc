// The annotation logic's rules against a mock repository and fake upstreams: validation before
// any storage, queue defaults, idempotent creates, claim preconditions, blind reads, AddItems
// per-entry outcomes, the promotion policy, delivery classification, the claim notifier and page
// tokens.
#include "services/annotation/annotation_logic.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/status/status_macros.h"
#include "common/status/status_matchers.h"
#include "services/annotation/claim_notifier.h"
#include "services/annotation/logic_util.h"
#include "services/annotation/promotion.h"
#include "services/annotation/upstream_fakes.h"

namespace flywheel::annotation {
namespace {

using ::flywheel::testing::StatusIs;
using ::testing::_;
using ::testing::Invoke;
using ::testing::Return;

class MockRepository : public AnnotationRepository {
 public:
  MOCK_METHOD((absl::StatusOr<std::pair<QueueRecord, bool>>), CreateQueue,
              (const std::string&, const v1::Queue&, const std::string&, int), (override));
  MOCK_METHOD(absl::StatusOr<QueueRecord>, GetQueue, (const std::string&, const std::string&),
              (override));
  MOCK_METHOD(absl::StatusOr<std::vector<QueueRecord>>, ListQueues,
              (const std::string&, const QueueListQuery&), (override));
  MOCK_METHOD(absl::StatusOr<QueueRecord>, UpdateQueue,
              (const std::string&, const std::string&,
               const std::function<absl::Status(QueueRecord&)>&),
              (override));
  MOCK_METHOD(absl::StatusOr<std::vector<v1::Item>>, FindItems,
              (const std::string&, const std::string&, const std::vector<std::string>&),
              (override));
  MOCK_METHOD(absl::StatusOr<std::vector<EnqueueOutcome>>, EnqueueItems,
              (const std::string&, const std::string&, const std::vector<NewItem>&), (override));
  MOCK_METHOD(absl::StatusOr<v1::Item>, GetItem,
              (const std::string&, const std::string&, const std::string&, bool), (override));
  MOCK_METHOD(absl::StatusOr<std::vector<v1::Item>>, ListItems,
              (const std::string&, const std::string&, const ItemListQuery&), (override));
  MOCK_METHOD(absl::StatusOr<ClaimResult>, Claim, (const std::string&, const ClaimRequest&),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::Lease>, RenewLease,
              (const std::string&, const std::string&, const std::string&, const std::string&,
               absl::Duration),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::Item>, ReleaseLease,
              (const std::string&, const std::string&, const std::string&, const std::string&),
              (override));
  MOCK_METHOD(absl::StatusOr<v1::Item>, SkipLease,
              (const std::string&, const std::string&, const std::string&, const std::string&,
               const std::string&),
              (override));
  MOCK_METHOD(absl::StatusOr<SubmitResult>, Submit,
              (const std::string&, const SubmitRequest&, const PromotionDecider&), (override));
  MOCK_METHOD(absl::StatusOr<AnnotationRecord>, UpdateAnnotation,
              (const std::string&, const UpdateAnnotationRequest&, const PromotionDecider&),
              (override));
  MOCK_METHOD((absl::StatusOr<std::pair<AnnotationRecord, v1::ItemState>>), GetAnnotation,
              (const std::string&, const std::string&), (override));
  MOCK_METHOD(absl::StatusOr<AnnotationList>, ListAnnotations,
              (const std::string&, const AnnotationListQuery&), (override));
  MOCK_METHOD(absl::StatusOr<std::vector<v1::AnnotationRevision>>, ListRevisions,
              (const std::string&, const std::string&, int32_t, int), (override));
  MOCK_METHOD(absl::StatusOr<QueueProgress>, GetProgress,
              (const std::string&, const std::string&, absl::Time, absl::Time, int), (override));
  MOCK_METHOD(absl::StatusOr<std::vector<LabeledValues>>, ListAgreementValues,
              (const std::string&, const std::string&, std::optional<absl::Time>,
               std::optional<absl::Time>, int, bool*),
              (override));
  MOCK_METHOD(absl::StatusOr<AnnotationRecord>, RequestPromotion,
              (const std::string&, const std::string&,
               (const std::function<absl::StatusOr<std::optional<PromotionRequest>>(
                    const QueueRecord&, const v1::Item&, const AnnotationRecord&)>&)),
              (override));
  MOCK_METHOD(absl::StatusOr<std::vector<DuePromotion>>, ClaimDuePromotions, (int, absl::Duration),
              (override));
  MOCK_METHOD(absl::Status, RecordDelivery,
              (const std::string&, const std::string&, const DeliveryOutcome&), (override));
  MOCK_METHOD(absl::StatusOr<int64_t>, ExpireLeases, (int), (override));
  MOCK_METHOD(absl::StatusOr<std::vector<FillableQueue>>, ListFillableQueues, (), (override));
  MOCK_METHOD(absl::StatusOr<bool>, AcquireFillLease,
              (const std::string&, const std::string&, const std::string&, absl::Duration),
              (override));
  MOCK_METHOD(absl::StatusOr<std::vector<EnqueueOutcome>>, EnqueueAndAdvance,
              (const std::string&, const std::string&, const std::vector<NewItem>&, int64_t,
               int64_t),
              (override));
  MOCK_METHOD((absl::StatusOr<std::vector<std::pair<v1::ItemSource, std::string>>>),
              ListPeriodItems, (const std::string&, const std::string&, absl::Time, absl::Time),
              (override));
  MOCK_METHOD((absl::StatusOr<std::vector<std::pair<std::string, int64_t>>>), OpenAssignments,
              (const std::string&, const std::string&), (override));
};

v1::Queue ValidQueue() {
  v1::Queue q;
  q.set_queue_id("q1");
  q.set_display_name("triage");
  v1::RubricField* verdict = q.mutable_rubric()->add_fields();
  verdict->set_key("verdict");
  verdict->set_label("Verdict");
  verdict->set_required(true);
  verdict->mutable_categorical()->add_options()->set_value("good");
  verdict->mutable_categorical()->add_options()->set_value("bad");
  v1::RubricField* fix = q.mutable_rubric()->add_fields();
  fix->set_key("fix");
  fix->set_label("Fix");
  fix->mutable_correction();
  return q;
}

QueueRecord Record(v1::Queue q) {
  EXPECT_OK(AnnotationLogic::NormalizeQueue(q));
  q.mutable_rubric()->set_revision(1);
  QueueRecord r;
  r.queue = std::move(q);
  return r;
}

class AnnotationLogicTest : public ::testing::Test {
 protected:
  MockRepository repository_;
  FakeCaptureUpstream capture_;
  AnnotationLogic logic_{&repository_, &capture_, nullptr};
  Caller caller_{"alpha", true, ""};
};

TEST_F(AnnotationLogicTest, CreateQueueRefusesABadRubricBeforeStoringAnything) {
  v1::CreateQueueRequest request;
  *request.mutable_queue() = ValidQueue();
  request.mutable_queue()->mutable_rubric()->mutable_fields(1)->set_key("verdict");
  EXPECT_CALL(repository_, CreateQueue).Times(0);
  EXPECT_THAT(logic_.CreateQueue(caller_, request), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AnnotationLogicTest, AutomaticPromotionNeedsADefaultEvalSet) {
  v1::CreateQueueRequest request;
  *request.mutable_queue() = ValidQueue();
  request.mutable_queue()->mutable_promotion_policy()->set_mode(v1::PROMOTION_MODE_ON_SUBMIT);
  EXPECT_CALL(repository_, CreateQueue).Times(0);
  EXPECT_THAT(logic_.CreateQueue(caller_, request), StatusIs(absl::StatusCode::kInvalidArgument));
  request.mutable_queue()->set_reviewers_per_item(11);
  request.mutable_queue()->set_default_eval_set_id("regressions");
  EXPECT_THAT(logic_.CreateQueue(caller_, request), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AnnotationLogicTest, CreateQueueAppliesDefaultsAndIsIdempotentOnContent) {
  v1::CreateQueueRequest request;
  *request.mutable_queue() = ValidQueue();
  v1::Queue stored;
  EXPECT_CALL(repository_, CreateQueue("alpha", _, "", 1000))
      .WillOnce(Invoke([&](const std::string&, const v1::Queue& q, const std::string&, int) {
        stored = q;
        return std::make_pair(Record(q), true);
      }));
  ASSERT_OK_AND_ASSIGN(v1::CreateQueueResponse created, logic_.CreateQueue(caller_, request));
  EXPECT_EQ(stored.reviewers_per_item(), 1);
  EXPECT_EQ(ToDuration(stored.lease_duration()), absl::Minutes(10));
  EXPECT_EQ(stored.max_skips_per_item(), 3);
  EXPECT_EQ(stored.state(), v1::QUEUE_STATE_ACTIVE);
  EXPECT_EQ(stored.source_rule().source(), v1::QUEUE_SOURCE_FLAGGED_FEED);
  EXPECT_EQ(ToDuration(stored.assignment().reservation()), absl::Hours(24));

  // Same id, same content: the existing queue. Other content: ALREADY_EXISTS.
  EXPECT_CALL(repository_, CreateQueue)
      .WillRepeatedly(Return(std::make_pair(Record(stored), false)));
  ASSERT_OK(logic_.CreateQueue(caller_, request));
  request.mutable_queue()->set_description("different");
  EXPECT_THAT(logic_.CreateQueue(caller_, request), StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST_F(AnnotationLogicTest, ClaimChecksQueueStateAndRestrictedReviewers) {
  v1::Queue q = ValidQueue();
  q.mutable_assignment()->add_reviewer_ids("ann");
  q.mutable_assignment()->set_restrict_to_reviewers(true);
  QueueRecord active = Record(q);
  q.set_state(v1::QUEUE_STATE_PAUSED);
  QueueRecord paused = Record(q);
  // The repository runs the logic's checks on the queue it reads inside the claim.
  EXPECT_CALL(repository_, Claim("alpha", _))
      .WillRepeatedly(
          Invoke([&](const std::string&, const ClaimRequest& claim) -> absl::StatusOr<ClaimResult> {
            RETURN_IF_ERROR(claim.check(claim.queue_id == "paused" ? paused : active));
            ClaimResult result;
            result.empty_reason = v1::EMPTY_REASON_NO_ITEMS;
            return result;
          }));
  v1::ClaimItemRequest request;
  request.set_queue_id("q1");
  request.set_reviewer_id("bob");
  EXPECT_THAT(logic_.ClaimItem(caller_, request), StatusIs(absl::StatusCode::kPermissionDenied));
  request.set_reviewer_id("ann");
  ASSERT_OK_AND_ASSIGN(v1::ClaimItemResponse empty, logic_.ClaimItem(caller_, request));
  EXPECT_EQ(empty.empty_reason(), v1::EMPTY_REASON_NO_ITEMS);
  request.set_queue_id("paused");
  EXPECT_THAT(logic_.ClaimItem(caller_, request), StatusIs(absl::StatusCode::kFailedPrecondition));
  // Malformed requests never reach the repository.
  request.set_reviewer_id("bad id!");
  EXPECT_THAT(logic_.ClaimItem(caller_, request), StatusIs(absl::StatusCode::kInvalidArgument));
  request.set_reviewer_id("ann");
  request.mutable_wait_timeout()->set_seconds(61);
  EXPECT_THAT(logic_.ClaimItem(caller_, request), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AnnotationLogicTest, ClaimWaitIsCappedByTheCallDeadline) {
  v1::ClaimItemRequest request;
  request.set_queue_id("q1");
  request.set_reviewer_id("ann");
  request.mutable_wait_timeout()->set_seconds(30);
  ASSERT_OK_AND_ASSIGN(absl::Duration wait,
                       logic_.ClaimWait(request, absl::Now() + absl::Seconds(5)));
  EXPECT_LE(wait, absl::Seconds(4));
  ASSERT_OK_AND_ASSIGN(wait, logic_.ClaimWait(request, absl::InfiniteFuture()));
  EXPECT_EQ(wait, absl::Seconds(30));
}

TEST_F(AnnotationLogicTest, SubmitValidatesValuesAndPromotionBeforeStoring) {
  const QueueRecord queue = Record(ValidQueue());
  int stored = 0;
  EXPECT_CALL(repository_, Submit("alpha", _, _))
      .WillRepeatedly(Invoke([&](const std::string&, const SubmitRequest& submit,
                                 const PromotionDecider&) -> absl::StatusOr<SubmitResult> {
        ASSIGN_OR_RETURN(int32_t revision, submit.validate(queue));
        EXPECT_EQ(revision, 1);
        ++stored;
        return SubmitResult{};
      }));
  v1::SubmitAnnotationRequest request;
  request.set_queue_id("q1");
  request.set_lease_id("lease");
  request.set_reviewer_id("ann");
  (*request.mutable_values())["verdict"].mutable_categorical()->add_values("meh");
  EXPECT_THAT(logic_.SubmitAnnotation(caller_, request),
              StatusIs(absl::StatusCode::kInvalidArgument));
  (*request.mutable_values())["verdict"].mutable_categorical()->set_values(0, "good");
  request.set_promote(true);
  EXPECT_THAT(logic_.SubmitAnnotation(caller_, request),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(stored, 0);
  request.clear_promote();
  ASSERT_OK(logic_.SubmitAnnotation(caller_, request));
  EXPECT_EQ(stored, 1);
}

TEST_F(AnnotationLogicTest, BlindReadsHideOtherReviewersUntilTheItemIsComplete) {
  AnnotationRecord record;
  record.annotation.set_annotation_id("a1");
  record.annotation.set_reviewer_id("ann");
  EXPECT_CALL(repository_, GetAnnotation("alpha", "a1"))
      .WillOnce(Return(std::make_pair(record, v1::ITEM_STATE_LEASED)))
      .WillOnce(Return(std::make_pair(record, v1::ITEM_STATE_DONE)));
  const Caller review_only{"alpha", false, ""};
  v1::GetAnnotationRequest request;
  request.set_annotation_id("a1");
  EXPECT_THAT(logic_.GetAnnotation(review_only, request),
              StatusIs(absl::StatusCode::kInvalidArgument));
  request.set_viewer_reviewer_id("bob");
  EXPECT_THAT(logic_.GetAnnotation(review_only, request),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(logic_.GetAnnotation(review_only, request));
}

TEST_F(AnnotationLogicTest, AddItemsReportsEachEntry) {
  EXPECT_CALL(repository_, GetQueue).WillRepeatedly(Return(Record(ValidQueue())));
  EXPECT_CALL(repository_, FindItems).WillRepeatedly(Return(std::vector<v1::Item>{}));
  EXPECT_CALL(repository_, EnqueueItems).Times(0);
  v1::AddItemsRequest request;
  request.set_queue_id("q1");
  request.add_entries()->set_trace_id("t1");
  v1::AddItemEntry* bad = request.add_entries();
  bad->set_trace_id("t2");
  bad->set_priority(101);
  capture_.FailNext("GetTraces", 1, absl::UnavailableError("capture: down"));
  ASSERT_OK_AND_ASSIGN(v1::AddItemsResponse response, logic_.AddItems(caller_, request));
  ASSERT_EQ(response.results_size(), 2);
  EXPECT_EQ(response.results(0).code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(response.results(1).code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(response.results(1).field(), "priority");
  request.clear_entries();
  EXPECT_THAT(logic_.AddItems(caller_, request), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AnnotationLogicTest, OnAgreementPromotesTheEarliestAgreeingAnnotationOnce) {
  v1::Queue q = ValidQueue();
  q.set_reviewers_per_item(3);
  q.set_default_eval_set_id("regressions");
  q.mutable_promotion_policy()->set_mode(v1::PROMOTION_MODE_ON_AGREEMENT);
  q.mutable_promotion_policy()->set_agreement_min_share(0.6);
  QueueRecord queue = Record(q);
  v1::Item item;
  item.set_state(v1::ITEM_STATE_DONE);
  item.mutable_snapshot()->mutable_input()->set_prompt("why?");
  item.mutable_snapshot()->set_cluster_id("c1");
  item.mutable_snapshot()->set_cluster_name("citations");
  std::vector<AnnotationRecord> annotations(3);
  const char* verdicts[] = {"bad", "good", "good"};
  for (int i = 0; i < 3; ++i) {
    v1::Annotation& a = annotations[i].annotation;
    a.set_annotation_id(absl::StrCat("a", i));
    a.set_trace_id("t1");
    a.set_revision(1);
    (*a.mutable_values())["verdict"].mutable_categorical()->add_values(verdicts[i]);
    (*a.mutable_values())["fix"].set_correction(absl::StrCat("fix ", i));
    a.mutable_submit_time()->set_seconds(100 + i);
    a.mutable_promotion()->set_state(v1::PROMOTION_STATE_NOT_PROMOTED);
  }
  PromotionDecision decision =
      AutomaticPromotion(true)(PromotionContext{queue, item, annotations, annotations[2]});
  EXPECT_TRUE(decision.agreement_reached);
  EXPECT_EQ(decision.promoted_annotation_id, "a1");
  ASSERT_EQ(decision.promotions.size(), 1u);
  const PromotionRequest& p = decision.promotions[0];
  EXPECT_EQ(p.trigger, v1::PROMOTION_TRIGGER_ON_AGREEMENT);
  EXPECT_EQ(p.eval_set_id, "regressions");
  EXPECT_EQ(p.payload.case_key(), "a1");
  EXPECT_EQ(p.payload.expected_output(), "fix 1");
  EXPECT_EQ(p.payload.theme().theme_id(), "c1");
  EXPECT_EQ(p.payload.input().prompt(), "why?");

  item.set_agreement_reached(true);
  EXPECT_TRUE(AutomaticPromotion(false)(PromotionContext{queue, item, annotations, annotations[2]})
                  .promotions.empty());
}

TEST_F(AnnotationLogicTest, OnSubmitHonoursPromoteFalse) {
  v1::Queue q = ValidQueue();
  q.set_default_eval_set_id("regressions");
  q.mutable_promotion_policy()->set_mode(v1::PROMOTION_MODE_ON_SUBMIT);
  QueueRecord queue = Record(q);
  v1::Item item;
  std::vector<AnnotationRecord> annotations(1);
  annotations[0].annotation.set_annotation_id("a0");
  annotations[0].promote = false;
  EXPECT_TRUE(AutomaticPromotion(true)(PromotionContext{queue, item, annotations, annotations[0]})
                  .promotions.empty());
  annotations[0].promote.reset();
  EXPECT_EQ(AutomaticPromotion(true)(PromotionContext{queue, item, annotations, annotations[0]})
                .promotions.size(),
            1u);
  // Edits never promote on submit.
  EXPECT_TRUE(AutomaticPromotion(false)(PromotionContext{queue, item, annotations, annotations[0]})
                  .promotions.empty());
}

TEST(DeliveryTest, ClassifiesAcknowledgementsRefusalsAndRetries) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  BackoffOptions backoff;
  backoff.jitter = 0;
  ::flywheel::common::v1::ItemResult accepted;
  accepted.set_outcome(::flywheel::common::v1::ITEM_OUTCOME_DUPLICATE);
  accepted.set_id("case-7");
  DeliveryOutcome ok = ClassifyDelivery(absl::OkStatus(), &accepted, 0, now, backoff);
  EXPECT_EQ(ok.state, v1::PROMOTION_STATE_DELIVERED);
  EXPECT_EQ(ok.eval_case_id, "case-7");
  DeliveryOutcome down = ClassifyDelivery(absl::UnavailableError("x"), nullptr, 3, now, backoff);
  EXPECT_EQ(down.state, v1::PROMOTION_STATE_PENDING);
  EXPECT_EQ(down.next_attempt_time, now + absl::Seconds(8));
  DeliveryOutcome capped = ClassifyDelivery(absl::AbortedError("x"), nullptr, 20, now, backoff);
  EXPECT_EQ(capped.next_attempt_time, now + absl::Minutes(10));
  DeliveryOutcome refused = ClassifyDelivery(absl::NotFoundError("x"), nullptr, 0, now, backoff);
  EXPECT_EQ(refused.state, v1::PROMOTION_STATE_FAILED);
  ::flywheel::common::v1::ItemResult rejected;
  rejected.set_outcome(::flywheel::common::v1::ITEM_OUTCOME_REJECTED);
  rejected.set_code(3);
  EXPECT_EQ(ClassifyDelivery(absl::OkStatus(), &rejected, 0, now, backoff).state,
            v1::PROMOTION_STATE_FAILED);
}

TEST(ClaimNotifierTest, FiresOnlyTheQueuesSubscribersOnce) {
  ClaimNotifier notifier;
  int a = 0, b = 0;
  notifier.Subscribe("p", "q1", [&] { ++a; });
  const uint64_t token = notifier.Subscribe("p", "q2", [&] { ++b; });
  notifier.Notify("p", "q1");
  notifier.Notify("p", "q1");
  notifier.Notify("other", "q2");
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 0);
  EXPECT_TRUE(notifier.Unsubscribe(token));
  EXPECT_FALSE(notifier.Unsubscribe(token));
  notifier.Notify("p", "q2");
  EXPECT_EQ(b, 0);
  EXPECT_EQ(notifier.waiting(), 0u);
}

TEST(PageTokenTest, RoundTripsAndRejectsOtherFilters) {
  v1::ListItemsRequest request;
  request.set_queue_id("q1");
  request.add_states(v1::ITEM_STATE_PENDING);
  const std::string token = EncodePageToken(request, {42, "t9"});
  request.set_page_token(token);
  request.set_page_size(7);
  ASSERT_OK_AND_ASSIGN(std::optional<PagePosition> position,
                       DecodePageToken(token, request, absl::Hours(24)));
  ASSERT_TRUE(position.has_value());
  EXPECT_EQ(position->micros, 42);
  EXPECT_EQ(position->id, "t9");
  request.add_states(v1::ITEM_STATE_DONE);
  EXPECT_THAT(DecodePageToken(token, request, absl::Hours(24)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodePageToken("garbage!", request, absl::Hours(24)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace flywheel::annotation
