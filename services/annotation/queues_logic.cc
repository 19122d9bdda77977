// Queues: create (idempotent), get, list, update with a field mask, archive.
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/annotation/annotation_logic.h"
#include "services/annotation/ids.h"
#include "services/annotation/logic_util.h"
#include "services/annotation/rubric.h"
#include "services/annotation/sampling.h"

namespace flywheel::annotation {

AnnotationLogic::AnnotationLogic(AnnotationRepository* repository, CaptureUpstream* capture,
                                 ClusteringUpstream* clustering, LogicOptions options)
    : repository_(repository), capture_(capture), clustering_(clustering), options_(options) {}

CallScope AnnotationLogic::ScopeFor(const Caller& caller) const {
  CallScope scope;
  scope.project_id = caller.project_id;
  if (!options_.have_service_key) scope.forwarded_authorization = caller.authorization;
  return scope;
}

absl::Status AnnotationLogic::NormalizeQueue(v1::Queue& q) {
  RETURN_IF_ERROR(CheckOptionalId("queue.queue_id", q.queue_id()));
  RETURN_IF_ERROR(CheckText("queue.display_name", q.display_name(), 1, 200));
  RETURN_IF_ERROR(CheckText("queue.description", q.description(), 0, 4000));
  RETURN_IF_ERROR(ValidateRubric(q.rubric(), "queue.rubric"));
  if (q.reviewers_per_item() == 0) q.set_reviewers_per_item(1);
  if (q.reviewers_per_item() < 1 || q.reviewers_per_item() > 10) {
    return absl::InvalidArgumentError("queue.reviewers_per_item: must be in 1..10");
  }
  if (!q.has_lease_duration()) SetDuration(absl::Minutes(10), q.mutable_lease_duration());
  const absl::Duration lease = ToDuration(q.lease_duration());
  if (lease < absl::Seconds(30) || lease > absl::Hours(2)) {
    return absl::InvalidArgumentError("queue.lease_duration: must be in 30s..2h");
  }
  if (q.max_skips_per_item() == 0) q.set_max_skips_per_item(3);
  if (q.max_skips_per_item() < 1 || q.max_skips_per_item() > 100) {
    return absl::InvalidArgumentError("queue.max_skips_per_item: must be in 1..100");
  }
  if (!q.default_eval_set_id().empty()) {
    RETURN_IF_ERROR(CheckId("queue.default_eval_set_id", q.default_eval_set_id()));
  }
  v1::PromotionPolicy* policy = q.mutable_promotion_policy();
  if (!v1::PromotionMode_IsValid(policy->mode())) {
    return absl::InvalidArgumentError("queue.promotion_policy.mode: unknown value");
  }
  if (policy->mode() == v1::PROMOTION_MODE_UNSPECIFIED) {
    policy->set_mode(v1::PROMOTION_MODE_MANUAL);
  }
  if (policy->mode() != v1::PROMOTION_MODE_MANUAL && q.default_eval_set_id().empty()) {
    return absl::InvalidArgumentError(
        "queue.default_eval_set_id: required by automatic promotion modes");
  }
  if (policy->agreement_min_share() == 0) policy->set_agreement_min_share(1);
  if (!(policy->agreement_min_share() >= 0.5 && policy->agreement_min_share() <= 1)) {
    return absl::InvalidArgumentError(
        "queue.promotion_policy.agreement_min_share: must be in [0.5, 1]");
  }
  RETURN_IF_ERROR(
      ValidateAgreementFieldKeys(q.rubric(),
                                 std::vector<std::string>(policy->agreement_field_keys().begin(),
                                                          policy->agreement_field_keys().end()),
                                 "queue.promotion_policy"));
  if (!v1::QueueState_IsValid(q.state())) {
    return absl::InvalidArgumentError("queue.state: unknown value");
  }
  if (q.state() == v1::QUEUE_STATE_UNSPECIFIED) q.set_state(v1::QUEUE_STATE_ACTIVE);
  if (!v1::QueueSource_IsValid(q.source_rule().source())) {
    return absl::InvalidArgumentError("queue.source_rule.source: unknown value");
  }
  if (q.source_rule().source() == v1::QUEUE_SOURCE_UNSPECIFIED) {
    q.mutable_source_rule()->set_source(v1::QUEUE_SOURCE_FLAGGED_FEED);
  }
  RETURN_IF_ERROR(ValidateSourceRule(q.source_rule(), "queue.source_rule"));
  RETURN_IF_ERROR(ValidateSampling(q.sampling(), "queue.sampling"));
  const v1::QueueAssignment& assignment = q.assignment();
  if (assignment.reviewer_ids_size() > 100) {
    return absl::InvalidArgumentError("queue.assignment.reviewer_ids: at most 100");
  }
  std::set<std::string> reviewers;
  for (int i = 0; i < assignment.reviewer_ids_size(); ++i) {
    const std::string field = absl::StrCat("queue.assignment.reviewer_ids[", i, "]");
    RETURN_IF_ERROR(CheckId(field, assignment.reviewer_ids(i)));
    if (!reviewers.insert(assignment.reviewer_ids(i)).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": duplicate"));
    }
  }
  if (assignment.restrict_to_reviewers() && assignment.reviewer_ids().empty()) {
    return absl::InvalidArgumentError(
        "queue.assignment.restrict_to_reviewers: requires reviewer_ids");
  }
  if (!assignment.has_reservation()) {
    SetDuration(absl::Hours(24), q.mutable_assignment()->mutable_reservation());
  }
  const absl::Duration reservation = ToDuration(q.assignment().reservation());
  if (reservation != absl::ZeroDuration() &&
      (reservation < absl::Minutes(1) || reservation > absl::Hours(24 * 30))) {
    return absl::InvalidArgumentError(
        "queue.assignment.reservation: must be 0 or in 1 min..30 days");
  }
  return absl::OkStatus();
}

namespace {

// The stored settings of a queue (output-only fields cleared), for idempotent creates.
v1::Queue Settings(v1::Queue q) {
  q.clear_create_time();
  q.clear_update_time();
  q.clear_etag();
  q.mutable_rubric()->set_revision(0);
  return q;
}

}  // namespace

absl::StatusOr<v1::CreateQueueResponse> AnnotationLogic::CreateQueue(
    const Caller& caller, const v1::CreateQueueRequest& request) {
  RETURN_IF_ERROR(CheckOptionalId("request_id", request.request_id()));
  v1::Queue queue = Settings(request.queue());
  RETURN_IF_ERROR(NormalizeQueue(queue));
  std::string request_id;
  if (queue.queue_id().empty()) {
    queue.set_queue_id(GenerateId());
    request_id = request.request_id();
  }
  ASSIGN_OR_RETURN(auto created, repository_->CreateQueue(caller.project_id, queue, request_id,
                                                          options_.max_queues_per_project));
  if (!created.second) {
    v1::Queue existing = Settings(created.first.queue);
    v1::Queue wanted = queue;
    wanted.set_queue_id(existing.queue_id());
    if (created.first.queue.state() == v1::QUEUE_STATE_ARCHIVED ||
        !google::protobuf::util::MessageDifferencer::Equals(existing, wanted)) {
      return absl::AlreadyExistsError("a queue with this id exists with other settings");
    }
  }
  v1::CreateQueueResponse response;
  *response.mutable_queue() = created.first.queue;
  return response;
}

absl::StatusOr<v1::GetQueueResponse> AnnotationLogic::GetQueue(const Caller& caller,
                                                               const v1::GetQueueRequest& request) {
  RETURN_IF_ERROR(CheckId("queue_id", request.queue_id()));
  ASSIGN_OR_RETURN(QueueRecord queue, repository_->GetQueue(caller.project_id, request.queue_id()));
  v1::GetQueueResponse response;
  *response.mutable_queue() = std::move(queue.queue);
  return response;
}

absl::StatusOr<v1::ListQueuesResponse> AnnotationLogic::ListQueues(
    const Caller& caller, const v1::ListQueuesRequest& request) {
  ASSIGN_OR_RETURN(const int page_size, PageSize(request.page_size(), 1000));
  QueueListQuery query;
  for (int s : request.states()) {
    if (!v1::QueueState_IsValid(s) || s == v1::QUEUE_STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError("states: unknown value");
    }
    query.states.push_back(static_cast<v1::QueueState>(s));
  }
  if (query.states.empty()) query.states = {v1::QUEUE_STATE_ACTIVE, v1::QUEUE_STATE_PAUSED};
  ASSIGN_OR_RETURN(std::optional<PagePosition> position,
                   DecodePageToken(request.page_token(), request, options_.page_token_ttl));
  if (position) query.after = {absl::FromUnixMicros(position->micros), position->id};
  query.limit = page_size + 1;
  ASSIGN_OR_RETURN(std::vector<QueueRecord> queues,
                   repository_->ListQueues(caller.project_id, query));
  v1::ListQueuesResponse response;
  for (int i = 0; i < static_cast<int>(queues.size()) && i < page_size; ++i) {
    *response.add_queues() = queues[i].queue;
  }
  if (static_cast<int>(queues.size()) > page_size) {
    const v1::Queue& last = queues[page_size - 1].queue;
    response.set_next_page_token(EncodePageToken(
        request, {absl::ToUnixMicros(ToTime(last.create_time())), last.queue_id()}));
  }
  return response;
}

absl::StatusOr<v1::UpdateQueueResponse> AnnotationLogic::UpdateQueue(
    const Caller& caller, const v1::UpdateQueueRequest& request) {
  RETURN_IF_ERROR(CheckId("queue.queue_id", request.queue().queue_id()));
  if (request.update_mask().paths().empty()) {
    return absl::InvalidArgumentError("update_mask: required");
  }
  static const std::set<std::string> kPaths = {
      "display_name",        "description",      "rubric",
      "reviewers_per_item",  "lease_duration",   "max_skips_per_item",
      "default_eval_set_id", "promotion_policy", "state",
      "source_rule",         "sampling",         "assignment"};
  for (int i = 0; i < request.update_mask().paths_size(); ++i) {
    if (!kPaths.count(request.update_mask().paths(i))) {
      return absl::InvalidArgumentError(absl::StrCat("update_mask.paths[", i, "]: unknown path"));
    }
  }
  ASSIGN_OR_RETURN(
      QueueRecord updated,
      repository_->UpdateQueue(
          caller.project_id, request.queue().queue_id(), [&](QueueRecord& record) -> absl::Status {
            if (!request.etag().empty() && request.etag() != record.queue.etag()) {
              return absl::AbortedError("etag mismatch");
            }
            const v1::Queue& in = request.queue();
            v1::Queue next = record.queue;
            const int32_t rubric_revision = record.queue.rubric().revision();
            bool rubric_changed = false;
            for (const std::string& path : request.update_mask().paths()) {
              if (path == "display_name") next.set_display_name(in.display_name());
              if (path == "description") next.set_description(in.description());
              if (path == "rubric") {
                v1::Rubric rubric = in.rubric();
                rubric.set_revision(rubric_revision);
                rubric_changed = !google::protobuf::util::MessageDifferencer::Equals(
                    rubric, record.queue.rubric());
                *next.mutable_rubric() = in.rubric();
              }
              if (path == "reviewers_per_item")
                next.set_reviewers_per_item(in.reviewers_per_item());
              if (path == "lease_duration") *next.mutable_lease_duration() = in.lease_duration();
              if (path == "max_skips_per_item")
                next.set_max_skips_per_item(in.max_skips_per_item());
              if (path == "default_eval_set_id")
                next.set_default_eval_set_id(in.default_eval_set_id());
              if (path == "promotion_policy")
                *next.mutable_promotion_policy() = in.promotion_policy();
              if (path == "state") {
                if (in.state() == v1::QUEUE_STATE_UNSPECIFIED) {
                  return absl::InvalidArgumentError("queue.state: required");
                }
                next.set_state(in.state());
              }
              if (path == "source_rule") *next.mutable_source_rule() = in.source_rule();
              if (path == "sampling") *next.mutable_sampling() = in.sampling();
              if (path == "assignment") *next.mutable_assignment() = in.assignment();
            }
            RETURN_IF_ERROR(NormalizeQueue(next));
            if (rubric_changed) {
              if (record.any_annotation) {
                RETURN_IF_ERROR(CheckRubricChange(record.queue.rubric(), next.rubric()));
              }
              next.mutable_rubric()->set_revision(rubric_revision + 1);
            } else {
              next.mutable_rubric()->set_revision(rubric_revision);
            }
            record.queue = std::move(next);
            return absl::OkStatus();
          }));
  v1::UpdateQueueResponse response;
  *response.mutable_queue() = std::move(updated.queue);
  return response;
}

absl::StatusOr<v1::DeleteQueueResponse> AnnotationLogic::DeleteQueue(
    const Caller& caller, const v1::DeleteQueueRequest& request) {
  RETURN_IF_ERROR(CheckId("queue_id", request.queue_id()));
  ASSIGN_OR_RETURN(QueueRecord current,
                   repository_->GetQueue(caller.project_id, request.queue_id()));
  if (!request.etag().empty() && request.etag() != current.queue.etag()) {
    return absl::AbortedError("etag mismatch");
  }
  v1::DeleteQueueResponse response;
  if (current.queue.state() == v1::QUEUE_STATE_ARCHIVED) {
    *response.mutable_queue() = std::move(current.queue);
    return response;
  }
  ASSIGN_OR_RETURN(
      QueueRecord archived,
      repository_->UpdateQueue(
          caller.project_id, request.queue_id(), [&](QueueRecord& record) -> absl::Status {
            if (!request.etag().empty() && request.etag() != record.queue.etag()) {
              return absl::AbortedError("etag mismatch");
            }
            record.queue.set_state(v1::QUEUE_STATE_ARCHIVED);
            return absl::OkStatus();
          }));
  *response.mutable_queue() = std::move(archived.queue);
  return response;
}

}  // namespace flywheel::annotation
