#pragma once

// Promotion of annotations to eval sets: the eval case an annotation becomes, the queue's
// automatic promotion policy (ON_SUBMIT, ON_AGREEMENT, SubmitAnnotation.promote), manual
// PromoteAnnotation, and how a delivery attempt's outcome is classified (outbox retries).

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/evalset/v1/evalset.pb.h"
#include "services/annotation/annotation_repository.h"

namespace flywheel::annotation {

// The case: input = the trace input; expected_output = the correction field's value (empty
// without one); theme = the item's theme (omitted when unassigned or hidden); case_key =
// source_annotation_id = the annotation id; source_trace_id; metadata = {queue_id, reviewer_id,
// annotation_revision, values, original_output}.
::flywheel::evalset::v1::Case BuildCase(const v1::Queue& queue, const v1::Item& item,
                                        const v1::Annotation& annotation);

// The queue's automatic policy after a submission (`is_submit`) or an edit of an annotation.
PromotionDecider AutomaticPromotion(bool is_submit);

// PromoteAnnotation's decision for `eval_set_id` (empty: the queue's default): a new outbox
// entry, nullopt to keep the current one, or FAILED_PRECONDITION.
absl::StatusOr<std::optional<PromotionRequest>> ManualPromotion(const std::string& eval_set_id,
                                                                const QueueRecord& queue,
                                                                const v1::Item& item,
                                                                const AnnotationRecord& current);

// A delivery attempt's outcome from eval-set's answer (`status` of the whole call, `result` the
// case's ItemResult when the call succeeded). attempts_before counts earlier attempts.
struct BackoffOptions {
  absl::Duration initial = absl::Seconds(1);
  absl::Duration max = absl::Minutes(10);
  double jitter = 0.2;
};
DeliveryOutcome ClassifyDelivery(const absl::Status& status,
                                 const ::flywheel::common::v1::ItemResult* result,
                                 int32_t attempts_before, absl::Time now,
                                 const BackoffOptions& backoff);

}  // namespace flywheel::annotation
