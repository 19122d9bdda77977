// Items: manual enqueue (snapshotting traces from capture, themes from clustering), reads.
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/annotation/annotation_logic.h"
#include "services/annotation/logic_util.h"

namespace flywheel::annotation {
namespace {

using ::flywheel::common::v1::ItemResult;

void Reject(ItemResult* result, absl::StatusCode code, const std::string& field,
            const std::string& reason) {
  result->set_outcome(::flywheel::common::v1::ITEM_OUTCOME_REJECTED);
  result->set_code(static_cast<int>(code));
  result->set_field(field);
  result->set_reason(reason);
}

std::vector<std::string> Assigned(const v1::AddItemEntry& entry) {
  return {entry.assigned_reviewer_ids().begin(), entry.assigned_reviewer_ids().end()};
}

}  // namespace

// Adds the theme of each snapshot from clustering (best effort: a failure leaves it empty).
void FillThemes(ClusteringUpstream* clustering, const CallScope& scope,
                std::vector<NewItem>& items) {
  if (clustering == nullptr) return;
  for (NewItem& item : items) {
    auto assignment = clustering->GetTraceAssignment(scope, item.trace_id);
    if (!assignment.ok()) continue;
    if (assignment->state() == ::flywheel::clustering::v1::ASSIGNMENT_STATE_ASSIGNED) {
      item.snapshot.set_cluster_id(assignment->cluster_id());
      if (!assignment->hidden_by_privacy_threshold()) {
        item.snapshot.set_cluster_name(assignment->cluster_name());
      }
    }
  }
}

absl::StatusOr<v1::AddItemsResponse> AnnotationLogic::AddItems(const Caller& caller,
                                                               const v1::AddItemsRequest& request) {
  RETURN_IF_ERROR(CheckId("queue_id", request.queue_id()));
  if (request.entries().empty() || request.entries_size() > 1000) {
    return absl::InvalidArgumentError("entries: must hold 1..1000 entries");
  }
  ASSIGN_OR_RETURN(QueueRecord queue, repository_->GetQueue(caller.project_id, request.queue_id()));
  if (queue.queue.state() == v1::QUEUE_STATE_ARCHIVED) {
    return absl::FailedPreconditionError("queue is archived");
  }
  const v1::Queue& q = queue.queue;
  const std::set<std::string> queue_reviewers(q.assignment().reviewer_ids().begin(),
                                              q.assignment().reviewer_ids().end());
  v1::AddItemsResponse response;
  // Validation, and duplicates within the request (the first entry of a trace decides).
  std::map<std::string, int> first_entry;
  std::vector<int> to_check;
  for (int i = 0; i < request.entries_size(); ++i) {
    const v1::AddItemEntry& e = request.entries(i);
    ItemResult* result = response.add_results();
    result->set_index(i);
    result->set_id(e.trace_id());
    if (absl::Status s = CheckId("trace_id", e.trace_id()); !s.ok()) {
      Reject(result, s.code(), "trace_id", std::string(s.message()));
      continue;
    }
    if (e.priority() < -100 || e.priority() > 100) {
      Reject(result, absl::StatusCode::kInvalidArgument, "priority", "must be in -100..100");
      continue;
    }
    if (e.assigned_reviewer_ids_size() > q.reviewers_per_item()) {
      Reject(result, absl::StatusCode::kInvalidArgument, "assigned_reviewer_ids",
             "more reviewers than reviewers_per_item");
      continue;
    }
    bool bad = false;
    std::set<std::string> seen;
    for (int j = 0; j < e.assigned_reviewer_ids_size() && !bad; ++j) {
      const std::string field = absl::StrCat("assigned_reviewer_ids[", j, "]");
      const std::string& r = e.assigned_reviewer_ids(j);
      if (absl::Status s = CheckId(field, r); !s.ok()) {
        Reject(result, s.code(), field, std::string(s.message()));
        bad = true;
      } else if (!seen.insert(r).second) {
        Reject(result, absl::StatusCode::kInvalidArgument, field, "duplicate reviewer");
        bad = true;
      } else if (q.assignment().restrict_to_reviewers() && !queue_reviewers.count(r)) {
        Reject(result, absl::StatusCode::kInvalidArgument, field,
               "not a reviewer of this restricted queue");
        bad = true;
      }
    }
    if (bad) continue;
    auto [it, inserted] = first_entry.emplace(e.trace_id(), i);
    if (!inserted) {
      const v1::AddItemEntry& first = request.entries(it->second);
      if (first.priority() == e.priority() && Assigned(first) == Assigned(e)) {
        result->set_outcome(::flywheel::common::v1::ITEM_OUTCOME_DUPLICATE);
      } else {
        Reject(result, absl::StatusCode::kAlreadyExists, "",
               "the trace appears earlier in the request with another priority or assignment");
      }
      continue;
    }
    to_check.push_back(i);
  }
  if (to_check.empty()) return response;

  // Already in the queue?
  std::vector<std::string> ids;
  for (int i : to_check) ids.push_back(request.entries(i).trace_id());
  ASSIGN_OR_RETURN(std::vector<v1::Item> existing,
                   repository_->FindItems(caller.project_id, request.queue_id(), ids));
  std::map<std::string, v1::Item> by_id;
  for (v1::Item& item : existing) by_id[item.trace_id()] = std::move(item);
  std::vector<int> fresh;
  for (int i : to_check) {
    const v1::AddItemEntry& e = request.entries(i);
    auto it = by_id.find(e.trace_id());
    if (it == by_id.end()) {
      fresh.push_back(i);
      continue;
    }
    const std::vector<std::string> have(it->second.assigned_reviewer_ids().begin(),
                                        it->second.assigned_reviewer_ids().end());
    if (it->second.priority() == e.priority() && have == Assigned(e)) {
      response.mutable_results(i)->set_outcome(::flywheel::common::v1::ITEM_OUTCOME_DUPLICATE);
    } else {
      Reject(response.mutable_results(i), absl::StatusCode::kAlreadyExists, "",
             "already in the queue with another priority or assignment");
    }
  }
  if (fresh.empty()) return response;

  // Snapshot the new traces from capture.
  const CallScope scope = ScopeFor(caller);
  std::vector<std::string> fresh_ids;
  for (int i : fresh) fresh_ids.push_back(request.entries(i).trace_id());
  absl::StatusOr<std::vector<FetchedTrace>> fetched =
      capture_ == nullptr ? absl::UnavailableError("capture is not configured")
                          : capture_->GetTraces(scope, fresh_ids);
  std::vector<NewItem> items;
  std::vector<int> item_entry;
  const absl::Duration reservation = ToDuration(q.assignment().reservation());
  for (size_t k = 0; k < fresh.size(); ++k) {
    const int i = fresh[k];
    ItemResult* result = response.mutable_results(i);
    if (!fetched.ok()) {
      Reject(result, absl::StatusCode::kUnavailable, "", "capture unreachable; retry the entry");
      continue;
    }
    if (k >= fetched->size()) {
      Reject(result, absl::StatusCode::kUnavailable, "", "capture answered no trace; retry");
      continue;
    }
    const FetchedTrace& trace = (*fetched)[k];
    if (absl::IsNotFound(trace.status)) {
      Reject(result, absl::StatusCode::kNotFound, "trace_id", "capture has no such trace");
      continue;
    }
    if (!trace.status.ok()) {
      Reject(result, absl::StatusCode::kUnavailable, "", "capture unreachable; retry the entry");
      continue;
    }
    const v1::AddItemEntry& e = request.entries(i);
    NewItem item;
    item.trace_id = e.trace_id();
    item.source = v1::ITEM_SOURCE_MANUAL;
    item.priority = e.priority();
    item.assigned_reviewer_ids = Assigned(e);
    if (reservation != absl::ZeroDuration()) item.reserved_until = absl::Now() + reservation;
    item.snapshot = trace.snapshot;
    item.snapshot.set_trace_id(e.trace_id());
    items.push_back(std::move(item));
    item_entry.push_back(i);
  }
  if (items.empty()) return response;
  FillThemes(clustering_, scope, items);
  ASSIGN_OR_RETURN(std::vector<EnqueueOutcome> outcomes,
                   repository_->EnqueueItems(caller.project_id, request.queue_id(), items));
  for (size_t k = 0; k < outcomes.size() && k < item_entry.size(); ++k) {
    ItemResult* result = response.mutable_results(item_entry[k]);
    switch (outcomes[k]) {
      case EnqueueOutcome::kAccepted:
        result->set_outcome(::flywheel::common::v1::ITEM_OUTCOME_ACCEPTED);
        break;
      case EnqueueOutcome::kDuplicate:
        result->set_outcome(::flywheel::common::v1::ITEM_OUTCOME_DUPLICATE);
        break;
      case EnqueueOutcome::kConflict:
        Reject(result, absl::StatusCode::kAlreadyExists, "",
               "already in the queue with another priority or assignment");
        break;
    }
  }
  return response;
}

absl::StatusOr<v1::GetItemResponse> AnnotationLogic::GetItem(const Caller& caller,
                                                             const v1::GetItemRequest& request) {
  RETURN_IF_ERROR(CheckId("queue_id", request.queue_id()));
  RETURN_IF_ERROR(CheckId("trace_id", request.trace_id()));
  RETURN_IF_ERROR(repository_->GetQueue(caller.project_id, request.queue_id()).status());
  ASSIGN_OR_RETURN(v1::Item item,
                   repository_->GetItem(caller.project_id, request.queue_id(), request.trace_id(),
                                        request.view() == v1::ITEM_VIEW_FULL));
  v1::GetItemResponse response;
  *response.mutable_item() = std::move(item);
  return response;
}

absl::StatusOr<v1::ListItemsResponse> AnnotationLogic::ListItems(
    const Caller& caller, const v1::ListItemsRequest& request) {
  RETURN_IF_ERROR(CheckId("queue_id", request.queue_id()));
  const bool full = request.view() == v1::ITEM_VIEW_FULL;
  ASSIGN_OR_RETURN(const int page_size, PageSize(request.page_size(), full ? 100 : 1000));
  ItemListQuery query;
  query.with_snapshot = full;
  for (int s : request.states()) {
    if (!v1::ItemState_IsValid(s) || s == 0) {
      return absl::InvalidArgumentError("states: unknown value");
    }
    query.states.push_back(static_cast<v1::ItemState>(s));
  }
  for (int s : request.sources()) {
    if (!v1::ItemSource_IsValid(s) || s == 0) {
      return absl::InvalidArgumentError("sources: unknown value");
    }
    query.sources.push_back(static_cast<v1::ItemSource>(s));
  }
  RETURN_IF_ERROR(CheckOptionalId("assigned_reviewer_id", request.assigned_reviewer_id()));
  query.assigned_reviewer_id = request.assigned_reviewer_id();
  if (request.enqueue_time_range().has_start_time()) {
    query.enqueued_from = ToTime(request.enqueue_time_range().start_time());
  }
  if (request.enqueue_time_range().has_end_time()) {
    query.enqueued_before = ToTime(request.enqueue_time_range().end_time());
  }
  ASSIGN_OR_RETURN(std::optional<PagePosition> position,
                   DecodePageToken(request.page_token(), request, options_.page_token_ttl));
  if (position) query.after = {absl::FromUnixMicros(position->micros), position->id};
  query.limit = page_size + 1;
  RETURN_IF_ERROR(repository_->GetQueue(caller.project_id, request.queue_id()).status());
  ASSIGN_OR_RETURN(std::vector<v1::Item> items,
                   repository_->ListItems(caller.project_id, request.queue_id(), query));
  v1::ListItemsResponse response;
  for (int i = 0; i < static_cast<int>(items.size()) && i < page_size; ++i) {
    *response.add_items() = items[i];
  }
  if (static_cast<int>(items.size()) > page_size) {
    const v1::Item& last = items[page_size - 1];
    response.set_next_page_token(EncodePageToken(
        request, {absl::ToUnixMicros(ToTime(last.enqueue_time())), last.trace_id()}));
  }
  return response;
}

}  // namespace flywheel::annotation
