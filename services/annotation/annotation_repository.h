#pragma once

// The storage interface of the annotation-queue service and its domain types. The logic layer
// holds the rules (validation, limits, blind views, promotion policy); a repository stores and
// reads, and runs each reviewer operation (claim, submit, skip ...) as one transaction so that no
// item is handed to two reviewers and no label is lost. Queues, items, leases and annotations
// travel as the API's protobuf messages (the logic layer already speaks them).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/annotation/v1/annotation.pb.h"
#include "flywheel/evalset/v1/evalset.pb.h"

namespace flywheel::annotation {

namespace v1 = ::flywheel::annotation::v1;

// Lease states as stored.
enum class LeaseState { kActive = 1, kSubmitted = 2, kSkipped = 3, kReleased = 4, kExpired = 5 };

struct QueueRecord {
  // Complete, with output fields (create/update time, etag, rubric revision).
  v1::Queue queue;
  int64_t etag_seq = 1;
  bool any_annotation = false;
  int64_t fill_cursor = 0;
};

struct QueueListQuery {
  std::vector<v1::QueueState> states;
  // Keyset: strictly after (create_time, queue_id) in newest-first order.
  std::optional<std::pair<absl::Time, std::string>> after;
  int limit = 50;
};

// One trace to enqueue (snapshot already taken).
struct NewItem {
  std::string trace_id;
  v1::ItemSource source = v1::ITEM_SOURCE_MANUAL;
  int32_t priority = 0;
  std::vector<std::string> assigned_reviewer_ids;
  // When assigned: until when the slots are reserved (nullopt: forever).
  std::optional<absl::Time> reserved_until;
  std::string stratum;
  double novelty = 0;
  double sampling_rank = 0;
  v1::TraceSnapshot snapshot;
};

enum class EnqueueOutcome { kAccepted, kDuplicate, kConflict };

struct ItemListQuery {
  std::vector<v1::ItemState> states;
  std::vector<v1::ItemSource> sources;
  std::string assigned_reviewer_id;
  std::optional<absl::Time> enqueued_from;    // inclusive
  std::optional<absl::Time> enqueued_before;  // exclusive
  bool with_snapshot = false;
  // Keyset: strictly after (enqueue_time, trace_id).
  std::optional<std::pair<absl::Time, std::string>> after;
  int limit = 50;
};

struct QueueRecord;

struct ClaimRequest {
  std::string queue_id;
  std::string reviewer_id;
  bool assigned_only = false;
  std::string request_id;  // empty: none
  int max_active_leases = 10;
  // Optional: the caller's checks of the queue (e.g. restricted reviewers), run inside the
  // claim's transaction once the queue is read; an error aborts the claim.
  std::function<absl::Status(const QueueRecord&)> check;
};

struct ClaimResult {
  // Set together when an item was claimed (item in the FULL view).
  std::optional<v1::Item> item;
  std::optional<v1::Lease> lease;
  v1::EmptyReason empty_reason = v1::EMPTY_REASON_UNSPECIFIED;
  std::optional<absl::Time> next_lease_expire_time;
  // The queue as the claim read it (its rubric goes with the item).
  v1::Rubric rubric;
};

struct AnnotationRecord {
  // Current revision, with its promotion status.
  v1::Annotation annotation;
  std::optional<bool> promote;
  std::string lease_id;
};

// An entry for the promotion outbox, decided by the logic layer.
struct PromotionRequest {
  std::string annotation_id;
  std::string eval_set_id;
  v1::PromotionTrigger trigger = v1::PROMOTION_TRIGGER_MANUAL;
  int32_t revision = 1;
  ::flywheel::evalset::v1::Case payload;
  // Non-empty: re-deliver as UpdateCase of this case (a DELIVERED annotation edited since).
  std::string update_case_id;
};

// What the promotion policy sees after a submit or an edit, inside the transaction.
struct PromotionContext {
  const QueueRecord& queue;
  // The item after the change, with its snapshot.
  const v1::Item& item;
  // Every annotation of the item (current revisions), oldest submitted first.
  const std::vector<AnnotationRecord>& annotations;
  // The annotation just submitted or edited.
  const AnnotationRecord& changed;
};

struct PromotionDecision {
  std::vector<PromotionRequest> promotions;
  // ON_AGREEMENT: mark the item (never unmarked).
  bool agreement_reached = false;
  std::string promoted_annotation_id;
};

using PromotionDecider = std::function<PromotionDecision(const PromotionContext&)>;

struct SubmitRequest {
  std::string queue_id;
  std::string lease_id;
  std::string reviewer_id;
  std::string annotation_id;       // the id to use for a new annotation
  v1::AnnotationRevision content;  // values and comment
  int32_t rubric_revision = 1;
  std::optional<bool> promote;
  std::string request_id;  // empty: none
  std::string request_digest;
  // Optional: validation of the submission against the queue (rubric, promotion), run inside
  // the transaction once the lease is known to be the reviewer's and active; returns the rubric
  // revision the values were validated against, or an error that aborts the submit.
  std::function<absl::StatusOr<int32_t>(const QueueRecord&)> validate;
  // Optional: false when the queue's policy cannot promote this submission (the promotion
  // decider is then skipped, saving its reads). Unset: always decide.
  std::function<bool(const QueueRecord&)> may_promote;
};

struct SubmitResult {
  AnnotationRecord annotation;
  v1::Item item;  // BASIC view
};

struct UpdateAnnotationRequest {
  std::string annotation_id;
  std::string reviewer_id;
  // Called with the current record inside the transaction: returns the new content and the rubric
  // revision it was validated against, or an error (validation, expected_revision).
  std::function<absl::StatusOr<std::pair<v1::AnnotationRevision, int32_t>>(
      const QueueRecord& queue, const AnnotationRecord& current)>
      edit;
  std::string edit_reason;
  std::string request_id;
  std::string request_digest;
};

struct AnnotationListQuery {
  std::string queue_id;
  std::string trace_id;     // empty: every item
  std::string reviewer_id;  // empty: every reviewer
  std::vector<v1::PromotionState> promotion_states;
  std::optional<absl::Time> submitted_from;
  std::optional<absl::Time> submitted_before;
  // Blind view for this reviewer (empty: everything).
  std::string viewer_reviewer_id;
  std::optional<std::pair<absl::Time, std::string>> after;  // (submit_time, annotation_id)
  int limit = 50;
};

struct AnnotationList {
  std::vector<AnnotationRecord> annotations;
  int32_t blinded_count = 0;
};

struct ReviewerCounts {
  std::string reviewer_id;
  int64_t claimed = 0, submitted = 0, skipped = 0, released = 0, expired = 0;
  int32_t active_leases = 0;
  std::optional<absl::Duration> median_time_per_item;
  std::optional<absl::Time> last_activity;
};

struct QueueProgress {
  int64_t pending = 0, leased = 0, done = 0, skipped = 0, total = 0;
  int64_t partially_annotated = 0, annotations_remaining = 0;
  std::optional<absl::Time> oldest_pending_enqueue_time;
  int64_t items_completed = 0, annotations_submitted = 0;
  std::vector<ReviewerCounts> reviewers;  // submitted descending; at most max_reviewers + 1
};

// One labeled item's annotation values, for agreement.
struct LabeledValues {
  std::string trace_id;
  std::string reviewer_id;
  v1::AnnotationRevision content;
};

// An outbox entry due for delivery.
struct DuePromotion {
  std::string project_id;
  std::string annotation_id;
  std::string eval_set_id;
  int32_t attempts = 0;  // before this attempt
  ::flywheel::evalset::v1::Case payload;
  std::string update_case_id;
};

struct DeliveryOutcome {
  // DELIVERED, FAILED (permanent) or PENDING (retry at next_attempt_time).
  v1::PromotionState state = v1::PROMOTION_STATE_PENDING;
  std::string eval_case_id;
  int32_t error_code = 0;
  std::string error;
  absl::Time next_attempt_time;
};

// A queue the filler may work on.
struct FillableQueue {
  std::string project_id;
  QueueRecord queue;
};

class AnnotationRepository {
 public:
  virtual ~AnnotationRepository() = default;

  // ---- queues
  // Creates the queue; when a queue with the same id (or request_id) exists, returns it with
  // created = false instead. RESOURCE_EXHAUSTED when the project already has max_queues
  // non-archived queues.
  virtual absl::StatusOr<std::pair<QueueRecord, bool>> CreateQueue(const std::string& project,
                                                                   const v1::Queue& queue,
                                                                   const std::string& request_id,
                                                                   int max_queues) = 0;
  virtual absl::StatusOr<QueueRecord> GetQueue(const std::string& project,
                                               const std::string& queue_id) = 0;
  virtual absl::StatusOr<std::vector<QueueRecord>> ListQueues(const std::string& project,
                                                              const QueueListQuery& query) = 0;
  // Locks the queue, lets `mutate` change it (returning an error aborts), saves it with a new
  // etag, and applies the effects on items: archiving ends active leases; a new
  // reviewers_per_item applies to items not DONE.
  virtual absl::StatusOr<QueueRecord> UpdateQueue(
      const std::string& project, const std::string& queue_id,
      const std::function<absl::Status(QueueRecord&)>& mutate) = 0;

  // ---- items
  // Existing items among `trace_ids` (BASIC view).
  virtual absl::StatusOr<std::vector<v1::Item>> FindItems(
      const std::string& project, const std::string& queue_id,
      const std::vector<std::string>& trace_ids) = 0;
  // Inserts items that are not in the queue yet; one outcome per entry (kDuplicate: present with
  // the same priority and assignment; kConflict: present with different ones). Wakes waiting
  // claimers.
  virtual absl::StatusOr<std::vector<EnqueueOutcome>> EnqueueItems(
      const std::string& project, const std::string& queue_id,
      const std::vector<NewItem>& items) = 0;
  virtual absl::StatusOr<v1::Item> GetItem(const std::string& project, const std::string& queue_id,
                                           const std::string& trace_id, bool with_snapshot) = 0;
  virtual absl::StatusOr<std::vector<v1::Item>> ListItems(const std::string& project,
                                                          const std::string& queue_id,
                                                          const ItemListQuery& query) = 0;

  // ---- reviewer work (each one transaction)
  // Returns expired leases of the queue to the pool, then leases the first claimable slot for the
  // reviewer (FOR UPDATE SKIP LOCKED). FAILED_PRECONDITION when the queue is not ACTIVE;
  // RESOURCE_EXHAUSTED when the reviewer holds max_active_leases leases in the queue.
  virtual absl::StatusOr<ClaimResult> Claim(const std::string& project,
                                            const ClaimRequest& request) = 0;
  virtual absl::StatusOr<v1::Lease> RenewLease(const std::string& project,
                                               const std::string& queue_id,
                                               const std::string& lease_id,
                                               const std::string& reviewer_id,
                                               absl::Duration extension) = 0;
  virtual absl::StatusOr<v1::Item> ReleaseLease(const std::string& project,
                                                const std::string& queue_id,
                                                const std::string& lease_id,
                                                const std::string& reviewer_id) = 0;
  virtual absl::StatusOr<v1::Item> SkipLease(const std::string& project,
                                             const std::string& queue_id,
                                             const std::string& lease_id,
                                             const std::string& reviewer_id,
                                             const std::string& reason) = 0;
  virtual absl::StatusOr<SubmitResult> Submit(const std::string& project,
                                              const SubmitRequest& request,
                                              const PromotionDecider& decide) = 0;
  virtual absl::StatusOr<AnnotationRecord> UpdateAnnotation(const std::string& project,
                                                            const UpdateAnnotationRequest& request,
                                                            const PromotionDecider& decide) = 0;

  // ---- annotations
  // The annotation with the state of its item (for blind rules).
  virtual absl::StatusOr<std::pair<AnnotationRecord, v1::ItemState>> GetAnnotation(
      const std::string& project, const std::string& annotation_id) = 0;
  virtual absl::StatusOr<AnnotationList> ListAnnotations(const std::string& project,
                                                         const AnnotationListQuery& query) = 0;
  // Newest first, revisions below `before_revision` (0: from the newest).
  virtual absl::StatusOr<std::vector<v1::AnnotationRevision>> ListRevisions(
      const std::string& project, const std::string& annotation_id, int32_t before_revision,
      int limit) = 0;

  // ---- progress and agreement
  virtual absl::StatusOr<QueueProgress> GetProgress(const std::string& project,
                                                    const std::string& queue_id, absl::Time start,
                                                    absl::Time end, int max_reviewers) = 0;
  // Annotations of the `max_items` most recently annotated items having >= 2 annotations
  // (latest annotation submitted or updated in [start, end) when given). Sets *truncated.
  virtual absl::StatusOr<std::vector<LabeledValues>> ListAgreementValues(
      const std::string& project, const std::string& queue_id, std::optional<absl::Time> start,
      std::optional<absl::Time> end, int max_items, bool* truncated) = 0;

  // ---- promotion
  // Puts a promotion in the outbox (or returns the current one) for PromoteAnnotation. `decide`
  // runs inside the transaction with the current record and returns the entry to write, nullopt
  // to leave it unchanged, or an error.
  virtual absl::StatusOr<AnnotationRecord> RequestPromotion(
      const std::string& project, const std::string& annotation_id,
      const std::function<absl::StatusOr<std::optional<PromotionRequest>>(
          const QueueRecord&, const v1::Item&, const AnnotationRecord&)>& decide) = 0;
  // Leases up to `limit` due outbox entries (of every project) for `lease` so that concurrent
  // workers do not deliver the same entry at once.
  virtual absl::StatusOr<std::vector<DuePromotion>> ClaimDuePromotions(int limit,
                                                                       absl::Duration lease) = 0;
  virtual absl::Status RecordDelivery(const std::string& project, const std::string& annotation_id,
                                      const DeliveryOutcome& outcome) = 0;

  // ---- background work
  // Returns expired leases (every queue) to the pool; returns how many.
  virtual absl::StatusOr<int64_t> ExpireLeases(int limit) = 0;
  // ACTIVE flagged-feed queues of every project.
  virtual absl::StatusOr<std::vector<FillableQueue>> ListFillableQueues() = 0;
  // Takes (or extends) the fill lease of a queue for `owner`; false when another replica holds it.
  virtual absl::StatusOr<bool> AcquireFillLease(const std::string& project,
                                                const std::string& queue_id,
                                                const std::string& owner, absl::Duration ttl) = 0;
  // Enqueues items and moves the queue's fill cursor from `expected_cursor` to `new_cursor` in one
  // transaction (ABORTED when the cursor moved meanwhile).
  virtual absl::StatusOr<std::vector<EnqueueOutcome>> EnqueueAndAdvance(
      const std::string& project, const std::string& queue_id, const std::vector<NewItem>& items,
      int64_t expected_cursor, int64_t new_cursor) = 0;
  // Items of the queue enqueued in [start, end), by source, and open assignments per reviewer
  // (for sampling quotas and round-robin assignment).
  virtual absl::StatusOr<std::vector<std::pair<v1::ItemSource, std::string>>> ListPeriodItems(
      const std::string& project, const std::string& queue_id, absl::Time start,
      absl::Time end) = 0;
  virtual absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> OpenAssignments(
      const std::string& project, const std::string& queue_id) = 0;
};

}  // namespace flywheel::annotation
