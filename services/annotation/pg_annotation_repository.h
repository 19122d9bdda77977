#pragma once

#include <string>

#include "common/db/pool.h"
#include "common/log/logger.h"
#include "services/annotation/annotation_repository.h"

namespace flywheel::annotation {

// The notification channel that wakes waiting claimers: payload "<project_id>\t<queue_id>".
inline constexpr char kClaimableChannel[] = "review_claimable";

// AnnotationRepository on PostgreSQL (schema `review`). Every statement is a named prepared
// statement registered on the pool; every query filters on project_id; libpqxx exceptions end
// here (mapped to statuses by RunInTransaction). Operations that make a slot claimable (enqueue,
// release, skip, expiry, reactivation) send pg_notify on kClaimableChannel, delivered at commit.
class PgAnnotationRepository final : public AnnotationRepository {
 public:
  PgAnnotationRepository(db::ConnectionPool* pool, Logger* logger);

  absl::StatusOr<std::pair<QueueRecord, bool>> CreateQueue(const std::string& project,
                                                           const v1::Queue& queue,
                                                           const std::string& request_id,
                                                           int max_queues) override;
  absl::StatusOr<QueueRecord> GetQueue(const std::string& project,
                                       const std::string& queue_id) override;
  absl::StatusOr<std::vector<QueueRecord>> ListQueues(const std::string& project,
                                                      const QueueListQuery& query) override;
  absl::StatusOr<QueueRecord> UpdateQueue(
      const std::string& project, const std::string& queue_id,
      const std::function<absl::Status(QueueRecord&)>& mutate) override;

  absl::StatusOr<std::vector<v1::Item>> FindItems(
      const std::string& project, const std::string& queue_id,
      const std::vector<std::string>& trace_ids) override;
  absl::StatusOr<std::vector<EnqueueOutcome>> EnqueueItems(
      const std::string& project, const std::string& queue_id,
      const std::vector<NewItem>& items) override;
  absl::StatusOr<v1::Item> GetItem(const std::string& project, const std::string& queue_id,
                                   const std::string& trace_id, bool with_snapshot) override;
  absl::StatusOr<std::vector<v1::Item>> ListItems(const std::string& project,
                                                  const std::string& queue_id,
                                                  const ItemListQuery& query) override;

  absl::StatusOr<ClaimResult> Claim(const std::string& project,
                                    const ClaimRequest& request) override;
  absl::StatusOr<v1::Lease> RenewLease(const std::string& project, const std::string& queue_id,
                                       const std::string& lease_id, const std::string& reviewer_id,
                                       absl::Duration extension) override;
  absl::StatusOr<v1::Item> ReleaseLease(const std::string& project, const std::string& queue_id,
                                        const std::string& lease_id,
                                        const std::string& reviewer_id) override;
  absl::StatusOr<v1::Item> SkipLease(const std::string& project, const std::string& queue_id,
                                     const std::string& lease_id, const std::string& reviewer_id,
                                     const std::string& reason) override;
  absl::StatusOr<SubmitResult> Submit(const std::string& project, const SubmitRequest& request,
                                      const PromotionDecider& decide) override;
  absl::StatusOr<AnnotationRecord> UpdateAnnotation(const std::string& project,
                                                    const UpdateAnnotationRequest& request,
                                                    const PromotionDecider& decide) override;

  absl::StatusOr<std::pair<AnnotationRecord, v1::ItemState>> GetAnnotation(
      const std::string& project, const std::string& annotation_id) override;
  absl::StatusOr<AnnotationList> ListAnnotations(const std::string& project,
                                                 const AnnotationListQuery& query) override;
  absl::StatusOr<std::vector<v1::AnnotationRevision>> ListRevisions(
      const std::string& project, const std::string& annotation_id, int32_t before_revision,
      int limit) override;

  absl::StatusOr<QueueProgress> GetProgress(const std::string& project, const std::string& queue_id,
                                            absl::Time start, absl::Time end,
                                            int max_reviewers) override;
  absl::StatusOr<std::vector<LabeledValues>> ListAgreementValues(
      const std::string& project, const std::string& queue_id, std::optional<absl::Time> start,
      std::optional<absl::Time> end, int max_items, bool* truncated) override;

  absl::StatusOr<AnnotationRecord> RequestPromotion(
      const std::string& project, const std::string& annotation_id,
      const std::function<absl::StatusOr<std::optional<PromotionRequest>>(
          const QueueRecord&, const v1::Item&, const AnnotationRecord&)>& decide) override;
  absl::StatusOr<std::vector<DuePromotion>> ClaimDuePromotions(int limit,
                                                               absl::Duration lease) override;
  absl::Status RecordDelivery(const std::string& project, const std::string& annotation_id,
                              const DeliveryOutcome& outcome) override;

  absl::StatusOr<int64_t> ExpireLeases(int limit) override;
  absl::StatusOr<std::vector<FillableQueue>> ListFillableQueues() override;
  absl::StatusOr<bool> AcquireFillLease(const std::string& project, const std::string& queue_id,
                                        const std::string& owner, absl::Duration ttl) override;
  absl::StatusOr<std::vector<EnqueueOutcome>> EnqueueAndAdvance(const std::string& project,
                                                                const std::string& queue_id,
                                                                const std::vector<NewItem>& items,
                                                                int64_t expected_cursor,
                                                                int64_t new_cursor) override;
  absl::StatusOr<std::vector<std::pair<v1::ItemSource, std::string>>> ListPeriodItems(
      const std::string& project, const std::string& queue_id, absl::Time start,
      absl::Time end) override;
  absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> OpenAssignments(
      const std::string& project, const std::string& queue_id) override;

 private:
  void RegisterStatements();

  db::ConnectionPool* const pool_;
  Logger* const logger_;
};

}  // namespace flywheel::annotation
