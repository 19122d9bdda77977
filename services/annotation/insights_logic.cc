// Progress, inter-rater agreement, manual promotion.
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/annotation/agreement.h"
#include "services/annotation/annotation_logic.h"
#include "services/annotation/logic_util.h"
#include "services/annotation/promotion.h"

namespace flywheel::annotation {

absl::StatusOr<v1::GetQueueProgressResponse> AnnotationLogic::GetQueueProgress(
    const Caller& caller, const v1::GetQueueProgressRequest& request) {
  RETURN_IF_ERROR(CheckId("queue_id", request.queue_id()));
  const absl::Time now = absl::Now();
  const absl::Time end =
      request.time_range().has_end_time() ? ToTime(request.time_range().end_time()) : now;
  const absl::Time start = request.time_range().has_start_time()
                               ? ToTime(request.time_range().start_time())
                               : end - absl::Hours(24);
  if (end < start) return absl::InvalidArgumentError("time_range: end before start");
  if (end - start > absl::Hours(24 * 90)) {
    return absl::InvalidArgumentError("time_range: longer than 90 days");
  }
  RETURN_IF_ERROR(repository_->GetQueue(caller.project_id, request.queue_id()).status());
  constexpr int kMaxReviewers = 1000;
  ASSIGN_OR_RETURN(QueueProgress p, repository_->GetProgress(caller.project_id, request.queue_id(),
                                                             start, end, kMaxReviewers));
  v1::GetQueueProgressResponse response;
  response.set_queue_id(request.queue_id());
  response.set_pending_count(p.pending);
  response.set_leased_count(p.leased);
  response.set_done_count(p.done);
  response.set_skipped_count(p.skipped);
  response.set_total_count(p.total);
  response.set_partially_annotated_count(p.partially_annotated);
  response.set_annotations_remaining(p.annotations_remaining);
  if (p.oldest_pending_enqueue_time) {
    SetTime(*p.oldest_pending_enqueue_time, response.mutable_oldest_pending_enqueue_time());
  }
  response.set_items_completed(p.items_completed);
  response.set_annotations_submitted(p.annotations_submitted);
  const double hours = std::max(absl::ToDoubleHours(end - start), 1e-9);
  response.set_items_completed_per_hour(end > start ? p.items_completed / hours : 0);
  response.set_annotations_per_hour(end > start ? p.annotations_submitted / hours : 0);
  for (size_t i = 0; i < p.reviewers.size() && i < kMaxReviewers; ++i) {
    const ReviewerCounts& c = p.reviewers[i];
    v1::ReviewerProgress* r = response.add_reviewers();
    r->set_reviewer_id(c.reviewer_id);
    r->set_claimed_count(c.claimed);
    r->set_submitted_count(c.submitted);
    r->set_skipped_count(c.skipped);
    r->set_released_count(c.released);
    r->set_expired_count(c.expired);
    r->set_active_lease_count(c.active_leases);
    if (c.median_time_per_item) {
      SetDuration(*c.median_time_per_item, r->mutable_median_time_per_item());
    }
    if (c.last_activity) SetTime(*c.last_activity, r->mutable_last_activity_time());
  }
  response.set_reviewers_truncated(p.reviewers.size() > kMaxReviewers);
  SetTime(start, response.mutable_time_range()->mutable_start_time());
  SetTime(end, response.mutable_time_range()->mutable_end_time());
  return response;
}

absl::StatusOr<v1::GetQueueAgreementResponse> AnnotationLogic::GetQueueAgreement(
    const Caller& caller, const v1::GetQueueAgreementRequest& request) {
  RETURN_IF_ERROR(CheckId("queue_id", request.queue_id()));
  std::optional<absl::Time> start, end;
  if (request.time_range().has_start_time()) start = ToTime(request.time_range().start_time());
  if (request.time_range().has_end_time()) end = ToTime(request.time_range().end_time());
  if (start && end && *end < *start) {
    return absl::InvalidArgumentError("time_range: end before start");
  }
  ASSIGN_OR_RETURN(QueueRecord queue, repository_->GetQueue(caller.project_id, request.queue_id()));
  const std::vector<std::string> keys(request.field_keys().begin(), request.field_keys().end());
  // Unknown keys are refused before reading any annotation.
  RETURN_IF_ERROR(ComputeAgreement(queue.queue.rubric(), keys, {}).status());
  constexpr int kMaxItems = 10000;
  bool truncated = false;
  ASSIGN_OR_RETURN(std::vector<LabeledValues> values,
                   repository_->ListAgreementValues(caller.project_id, request.queue_id(), start,
                                                    end, kMaxItems, &truncated));
  std::vector<AnnotationRow> rows;
  std::set<std::string> items;
  rows.reserve(values.size());
  for (LabeledValues& v : values) {
    items.insert(v.trace_id);
    rows.push_back(AnnotationRow{v.trace_id, v.reviewer_id, v.content.values()});
  }
  ASSIGN_OR_RETURN(std::vector<v1::FieldAgreement> fields,
                   ComputeAgreement(queue.queue.rubric(), keys, rows));
  v1::GetQueueAgreementResponse response;
  for (v1::FieldAgreement& f : fields) *response.add_fields() = std::move(f);
  response.set_item_count(static_cast<int64_t>(items.size()));
  response.set_truncated(truncated);
  SetTime(absl::Now(), response.mutable_compute_time());
  return response;
}

absl::StatusOr<v1::PromoteAnnotationResponse> AnnotationLogic::PromoteAnnotation(
    const Caller& caller, const v1::PromoteAnnotationRequest& request) {
  RETURN_IF_ERROR(CheckId("annotation_id", request.annotation_id()));
  RETURN_IF_ERROR(CheckOptionalId("eval_set_id", request.eval_set_id()));
  ASSIGN_OR_RETURN(
      AnnotationRecord record,
      repository_->RequestPromotion(
          caller.project_id, request.annotation_id(),
          [&](const QueueRecord& queue, const v1::Item& item, const AnnotationRecord& current) {
            return ManualPromotion(request.eval_set_id(), queue, item, current);
          }));
  v1::PromoteAnnotationResponse response;
  *response.mutable_annotation() = std::move(record.annotation);
  return response;
}

}  // namespace flywheel::annotation
