// Reviewer work: claim, renew, release, skip, submit, edit; annotation reads with blind rules.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/annotation/annotation_logic.h"
#include "services/annotation/ids.h"
#include "services/annotation/logic_util.h"
#include "services/annotation/promotion.h"
#include "services/annotation/rubric.h"

namespace flywheel::annotation {
namespace {

absl::Status CheckLeaseRequest(const std::string& queue_id, const std::string& lease_id,
                               const std::string& reviewer_id) {
  RETURN_IF_ERROR(CheckId("queue_id", queue_id));
  if (lease_id.empty() || lease_id.size() > 128) {
    return absl::InvalidArgumentError("lease_id: required, at most 128 bytes");
  }
  return CheckId("reviewer_id", reviewer_id);
}

bool Complete(v1::ItemState state) {
  return state == v1::ITEM_STATE_DONE || state == v1::ITEM_STATE_SKIPPED;
}

// Review-only keys must name the viewer; others may.
absl::Status CheckViewer(const Caller& caller, const std::string& viewer) {
  if (viewer.empty()) {
    if (!caller.sees_all) {
      return absl::InvalidArgumentError("viewer_reviewer_id: required for review-only keys");
    }
    return absl::OkStatus();
  }
  return CheckId("viewer_reviewer_id", viewer);
}

}  // namespace

absl::StatusOr<absl::Duration> AnnotationLogic::ClaimWait(const v1::ClaimItemRequest& request,
                                                          absl::Time call_deadline) {
  RETURN_IF_ERROR(CheckId("queue_id", request.queue_id()));
  RETURN_IF_ERROR(CheckId("reviewer_id", request.reviewer_id()));
  RETURN_IF_ERROR(CheckOptionalId("request_id", request.request_id()));
  const absl::Duration wait = ToDuration(request.wait_timeout());
  if (wait < absl::ZeroDuration() || wait > absl::Seconds(60)) {
    return absl::InvalidArgumentError("wait_timeout: must be in 0..60 s");
  }
  const absl::Duration until_deadline = call_deadline - absl::Now() - absl::Seconds(1);
  return std::max(absl::ZeroDuration(), std::min(wait, until_deadline));
}

absl::StatusOr<v1::ClaimItemResponse> AnnotationLogic::ClaimItem(
    const Caller& caller, const v1::ClaimItemRequest& request) {
  RETURN_IF_ERROR(ClaimWait(request, absl::InfiniteFuture()).status());
  ClaimRequest claim;
  claim.queue_id = request.queue_id();
  claim.reviewer_id = request.reviewer_id();
  claim.assigned_only = request.assigned_only();
  claim.request_id = request.request_id();
  claim.max_active_leases = options_.max_active_leases_per_reviewer;
  // Checked inside the claim's transaction, so a claim costs one transaction.
  claim.check = [&request](const QueueRecord& queue) -> absl::Status {
    if (queue.queue.state() != v1::QUEUE_STATE_ACTIVE) {
      return absl::FailedPreconditionError(
          queue.queue.state() == v1::QUEUE_STATE_PAUSED ? "queue is paused" : "queue is archived");
    }
    const v1::QueueAssignment& assignment = queue.queue.assignment();
    if (assignment.restrict_to_reviewers() &&
        std::find(assignment.reviewer_ids().begin(), assignment.reviewer_ids().end(),
                  request.reviewer_id()) == assignment.reviewer_ids().end()) {
      return absl::PermissionDeniedError("reviewer_id is not a reviewer of this restricted queue");
    }
    return absl::OkStatus();
  };
  absl::StatusOr<ClaimResult> result = repository_->Claim(caller.project_id, claim);
  if (absl::IsAlreadyExists(result.status())) {
    // The same reviewer claimed the same item concurrently: try once more.
    result = repository_->Claim(caller.project_id, claim);
  }
  if (!result.ok()) return result.status();
  v1::ClaimItemResponse response;
  if (result->item && result->lease) {
    *response.mutable_item() = std::move(*result->item);
    *response.mutable_lease() = std::move(*result->lease);
    *response.mutable_rubric() = std::move(result->rubric);
  } else {
    response.set_empty_reason(result->empty_reason);
    if (result->next_lease_expire_time) {
      SetTime(*result->next_lease_expire_time, response.mutable_next_lease_expire_time());
    }
  }
  return response;
}

absl::StatusOr<v1::RenewLeaseResponse> AnnotationLogic::RenewLease(
    const Caller& caller, const v1::RenewLeaseRequest& request) {
  RETURN_IF_ERROR(CheckLeaseRequest(request.queue_id(), request.lease_id(), request.reviewer_id()));
  ASSIGN_OR_RETURN(QueueRecord queue, repository_->GetQueue(caller.project_id, request.queue_id()));
  const absl::Duration lease = ToDuration(queue.queue.lease_duration());
  absl::Duration extension = lease;
  if (request.has_extension()) {
    extension = ToDuration(request.extension());
    if (extension < absl::Seconds(1) || extension > lease) {
      return absl::InvalidArgumentError("extension: must be in 1 s..lease_duration");
    }
  }
  ASSIGN_OR_RETURN(v1::Lease renewed,
                   repository_->RenewLease(caller.project_id, request.queue_id(),
                                           request.lease_id(), request.reviewer_id(), extension));
  v1::RenewLeaseResponse response;
  *response.mutable_lease() = std::move(renewed);
  return response;
}

absl::StatusOr<v1::ReleaseItemResponse> AnnotationLogic::ReleaseItem(
    const Caller& caller, const v1::ReleaseItemRequest& request) {
  RETURN_IF_ERROR(CheckLeaseRequest(request.queue_id(), request.lease_id(), request.reviewer_id()));
  RETURN_IF_ERROR(repository_->GetQueue(caller.project_id, request.queue_id()).status());
  ASSIGN_OR_RETURN(v1::Item item,
                   repository_->ReleaseLease(caller.project_id, request.queue_id(),
                                             request.lease_id(), request.reviewer_id()));
  v1::ReleaseItemResponse response;
  *response.mutable_item() = std::move(item);
  return response;
}

absl::StatusOr<v1::SkipItemResponse> AnnotationLogic::SkipItem(const Caller& caller,
                                                               const v1::SkipItemRequest& request) {
  RETURN_IF_ERROR(CheckLeaseRequest(request.queue_id(), request.lease_id(), request.reviewer_id()));
  RETURN_IF_ERROR(CheckText("reason", request.reason(), 0, 1000));
  RETURN_IF_ERROR(repository_->GetQueue(caller.project_id, request.queue_id()).status());
  ASSIGN_OR_RETURN(v1::Item item,
                   repository_->SkipLease(caller.project_id, request.queue_id(), request.lease_id(),
                                          request.reviewer_id(), request.reason()));
  v1::SkipItemResponse response;
  *response.mutable_item() = std::move(item);
  return response;
}

absl::StatusOr<v1::SubmitAnnotationResponse> AnnotationLogic::SubmitAnnotation(
    const Caller& caller, const v1::SubmitAnnotationRequest& request) {
  RETURN_IF_ERROR(CheckLeaseRequest(request.queue_id(), request.lease_id(), request.reviewer_id()));
  RETURN_IF_ERROR(CheckText("comment", request.comment(), 0, 4000));
  RETURN_IF_ERROR(CheckOptionalId("request_id", request.request_id()));
  SubmitRequest submit;
  submit.queue_id = request.queue_id();
  submit.lease_id = request.lease_id();
  submit.reviewer_id = request.reviewer_id();
  submit.annotation_id = GenerateId();
  *submit.content.mutable_values() = request.values();
  submit.content.set_comment(request.comment());
  if (request.has_promote()) submit.promote = request.promote();
  submit.request_id = request.request_id();
  if (!submit.request_id.empty()) submit.request_digest = Digest(request);
  // Validated inside the submit's transaction against the queue it reads (one transaction).
  submit.validate = [&request](const QueueRecord& queue) -> absl::StatusOr<int32_t> {
    if (queue.queue.state() == v1::QUEUE_STATE_ARCHIVED) {
      return absl::FailedPreconditionError("queue is archived");
    }
    if (request.has_promote() && request.promote() && queue.queue.default_eval_set_id().empty()) {
      return absl::FailedPreconditionError(
          "promote = true but the queue has no default_eval_set_id");
    }
    RETURN_IF_ERROR(ValidateValues(queue.queue.rubric(), request.values()));
    return queue.queue.rubric().revision();
  };
  submit.may_promote = [&request](const QueueRecord& queue) {
    return (request.has_promote() && request.promote()) ||
           queue.queue.promotion_policy().mode() != v1::PROMOTION_MODE_MANUAL;
  };
  ASSIGN_OR_RETURN(SubmitResult result,
                   repository_->Submit(caller.project_id, submit, AutomaticPromotion(true)));
  v1::SubmitAnnotationResponse response;
  *response.mutable_annotation() = std::move(result.annotation.annotation);
  *response.mutable_item() = std::move(result.item);
  return response;
}

absl::StatusOr<v1::UpdateAnnotationResponse> AnnotationLogic::UpdateAnnotation(
    const Caller& caller, const v1::UpdateAnnotationRequest& request) {
  RETURN_IF_ERROR(CheckId("annotation_id", request.annotation_id()));
  RETURN_IF_ERROR(CheckId("reviewer_id", request.reviewer_id()));
  RETURN_IF_ERROR(CheckText("edit_reason", request.edit_reason(), 0, 1000));
  RETURN_IF_ERROR(CheckOptionalId("request_id", request.request_id()));
  if (request.update_mask().paths().empty()) {
    return absl::InvalidArgumentError("update_mask: required");
  }
  bool values = false, comment = false;
  for (int i = 0; i < request.update_mask().paths_size(); ++i) {
    const std::string& path = request.update_mask().paths(i);
    if (path == "values") {
      values = true;
    } else if (path == "comment") {
      comment = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("update_mask.paths[", i, "]: unknown path"));
    }
  }
  if (comment) RETURN_IF_ERROR(CheckText("comment", request.comment(), 0, 4000));
  UpdateAnnotationRequest update;
  update.annotation_id = request.annotation_id();
  update.reviewer_id = request.reviewer_id();
  update.edit_reason = request.edit_reason();
  update.request_id = request.request_id();
  if (!update.request_id.empty()) update.request_digest = Digest(request);
  update.edit = [&](const QueueRecord& queue, const AnnotationRecord& current)
      -> absl::StatusOr<std::pair<v1::AnnotationRevision, int32_t>> {
    if (request.expected_revision() != 0 &&
        request.expected_revision() != current.annotation.revision()) {
      return absl::AbortedError("expected_revision is not the current revision");
    }
    v1::AnnotationRevision next;
    *next.mutable_values() = values ? request.values() : current.annotation.values();
    next.set_comment(comment ? request.comment() : current.annotation.comment());
    RETURN_IF_ERROR(ValidateValues(queue.queue.rubric(), next.values()));
    return std::make_pair(std::move(next), queue.queue.rubric().revision());
  };
  ASSIGN_OR_RETURN(
      AnnotationRecord updated,
      repository_->UpdateAnnotation(caller.project_id, update, AutomaticPromotion(false)));
  v1::UpdateAnnotationResponse response;
  *response.mutable_annotation() = std::move(updated.annotation);
  return response;
}

absl::StatusOr<v1::GetAnnotationResponse> AnnotationLogic::GetAnnotation(
    const Caller& caller, const v1::GetAnnotationRequest& request) {
  RETURN_IF_ERROR(CheckId("annotation_id", request.annotation_id()));
  RETURN_IF_ERROR(CheckViewer(caller, request.viewer_reviewer_id()));
  ASSIGN_OR_RETURN(auto found,
                   repository_->GetAnnotation(caller.project_id, request.annotation_id()));
  if (!request.viewer_reviewer_id().empty() &&
      found.first.annotation.reviewer_id() != request.viewer_reviewer_id() &&
      !Complete(found.second)) {
    return absl::FailedPreconditionError(
        "blind labeling: another reviewer's annotation of an item not yet complete");
  }
  v1::GetAnnotationResponse response;
  *response.mutable_annotation() = std::move(found.first.annotation);
  return response;
}

absl::StatusOr<v1::ListAnnotationsResponse> AnnotationLogic::ListAnnotations(
    const Caller& caller, const v1::ListAnnotationsRequest& request) {
  RETURN_IF_ERROR(CheckId("queue_id", request.queue_id()));
  RETURN_IF_ERROR(CheckOptionalId("trace_id", request.trace_id()));
  RETURN_IF_ERROR(CheckOptionalId("reviewer_id", request.reviewer_id()));
  RETURN_IF_ERROR(CheckViewer(caller, request.viewer_reviewer_id()));
  ASSIGN_OR_RETURN(const int page_size, PageSize(request.page_size(), 1000));
  AnnotationListQuery query;
  query.queue_id = request.queue_id();
  query.trace_id = request.trace_id();
  query.reviewer_id = request.reviewer_id();
  query.viewer_reviewer_id = request.viewer_reviewer_id();
  for (int s : request.promotion_states()) {
    if (!v1::PromotionState_IsValid(s) || s == 0) {
      return absl::InvalidArgumentError("promotion_states: unknown value");
    }
    query.promotion_states.push_back(static_cast<v1::PromotionState>(s));
  }
  if (request.submit_time_range().has_start_time()) {
    query.submitted_from = ToTime(request.submit_time_range().start_time());
  }
  if (request.submit_time_range().has_end_time()) {
    query.submitted_before = ToTime(request.submit_time_range().end_time());
  }
  ASSIGN_OR_RETURN(std::optional<PagePosition> position,
                   DecodePageToken(request.page_token(), request, options_.page_token_ttl));
  if (position) query.after = {absl::FromUnixMicros(position->micros), position->id};
  query.limit = page_size + 1;
  RETURN_IF_ERROR(repository_->GetQueue(caller.project_id, request.queue_id()).status());
  if (!request.trace_id().empty()) {
    RETURN_IF_ERROR(
        repository_->GetItem(caller.project_id, request.queue_id(), request.trace_id(), false)
            .status());
  }
  ASSIGN_OR_RETURN(AnnotationList list, repository_->ListAnnotations(caller.project_id, query));
  v1::ListAnnotationsResponse response;
  for (int i = 0; i < static_cast<int>(list.annotations.size()) && i < page_size; ++i) {
    *response.add_annotations() = list.annotations[i].annotation;
  }
  if (static_cast<int>(list.annotations.size()) > page_size) {
    const v1::Annotation& last = list.annotations[page_size - 1].annotation;
    response.set_next_page_token(EncodePageToken(
        request, {absl::ToUnixMicros(ToTime(last.submit_time())), last.annotation_id()}));
  }
  response.set_blinded_count(list.blinded_count);
  return response;
}

absl::StatusOr<v1::ListAnnotationHistoryResponse> AnnotationLogic::ListAnnotationHistory(
    const Caller& caller, const v1::ListAnnotationHistoryRequest& request) {
  v1::GetAnnotationRequest get;
  get.set_annotation_id(request.annotation_id());
  get.set_viewer_reviewer_id(request.viewer_reviewer_id());
  RETURN_IF_ERROR(GetAnnotation(caller, get).status());
  ASSIGN_OR_RETURN(const int page_size, PageSize(request.page_size(), 1000));
  ASSIGN_OR_RETURN(std::optional<PagePosition> position,
                   DecodePageToken(request.page_token(), request, options_.page_token_ttl));
  const int32_t before = position ? static_cast<int32_t>(position->micros) : 0;
  ASSIGN_OR_RETURN(std::vector<v1::AnnotationRevision> revisions,
                   repository_->ListRevisions(caller.project_id, request.annotation_id(), before,
                                              page_size + 1));
  v1::ListAnnotationHistoryResponse response;
  for (int i = 0; i < static_cast<int>(revisions.size()) && i < page_size; ++i) {
    *response.add_revisions() = revisions[i];
  }
  if (static_cast<int>(revisions.size()) > page_size) {
    response.set_next_page_token(
        EncodePageToken(request, {revisions[page_size - 1].revision(), ""}));
  }
  return response;
}

}  // namespace flywheel::annotation
