#pragma once

// Domain rules of the annotation-queue service: every RPC's semantics (annotation.proto is the
// reference) on top of an AnnotationRepository and the upstream services. Speaks the API's
// protobuf messages as data, returns absl::Status; knows nothing of gRPC or SQL. Thread-safe.
// Split by concept: queues_logic.cc, items_logic.cc, review_logic.cc, insights_logic.cc.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/annotation/v1/annotation.pb.h"
#include "services/annotation/annotation_repository.h"
#include "services/annotation/upstream.h"

namespace flywheel::annotation {

// Who calls: the project of the key, whether the key may see every annotation (`read` or
// `admin` scope; review-only keys get blind views), and its authorization metadata value
// (forwarded upstream when the deployment has no service key).
struct Caller {
  std::string project_id;
  bool sees_all = true;
  std::string authorization;
};

struct LogicOptions {
  int max_queues_per_project = 1000;
  int max_active_leases_per_reviewer = 10;
  // When false, upstream calls made for a request forward the caller's authorization.
  bool have_service_key = false;
  // Page tokens expire after this long.
  absl::Duration page_token_ttl = absl::Hours(24);
};

// Sets each snapshot's theme from clustering GetTraceAssignment (best effort: failures and
// unassigned traces leave it empty). No-op when `clustering` is null.
void FillThemes(ClusteringUpstream* clustering, const CallScope& scope,
                std::vector<NewItem>& items);

class AnnotationLogic {
 public:
  // `clustering` may be null (snapshots then carry no theme).
  AnnotationLogic(AnnotationRepository* repository, CaptureUpstream* capture,
                  ClusteringUpstream* clustering, LogicOptions options = {});

  // ---- queues
  absl::StatusOr<v1::CreateQueueResponse> CreateQueue(const Caller& caller,
                                                      const v1::CreateQueueRequest& request);
  absl::StatusOr<v1::GetQueueResponse> GetQueue(const Caller& caller,
                                                const v1::GetQueueRequest& request);
  absl::StatusOr<v1::ListQueuesResponse> ListQueues(const Caller& caller,
                                                    const v1::ListQueuesRequest& request);
  absl::StatusOr<v1::UpdateQueueResponse> UpdateQueue(const Caller& caller,
                                                      const v1::UpdateQueueRequest& request);
  absl::StatusOr<v1::DeleteQueueResponse> DeleteQueue(const Caller& caller,
                                                      const v1::DeleteQueueRequest& request);

  // ---- items
  absl::StatusOr<v1::AddItemsResponse> AddItems(const Caller& caller,
                                                const v1::AddItemsRequest& request);
  absl::StatusOr<v1::GetItemResponse> GetItem(const Caller& caller,
                                              const v1::GetItemRequest& request);
  absl::StatusOr<v1::ListItemsResponse> ListItems(const Caller& caller,
                                                  const v1::ListItemsRequest& request);

  // ---- reviewer work
  // Validates a claim and returns how long it may wait for an item (0: answer at once);
  // `call_deadline` is the gRPC deadline (InfiniteFuture when none).
  absl::StatusOr<absl::Duration> ClaimWait(const v1::ClaimItemRequest& request,
                                           absl::Time call_deadline);
  // One claim attempt (never waits; the handler waits between attempts).
  absl::StatusOr<v1::ClaimItemResponse> ClaimItem(const Caller& caller,
                                                  const v1::ClaimItemRequest& request);
  absl::StatusOr<v1::RenewLeaseResponse> RenewLease(const Caller& caller,
                                                    const v1::RenewLeaseRequest& request);
  absl::StatusOr<v1::ReleaseItemResponse> ReleaseItem(const Caller& caller,
                                                      const v1::ReleaseItemRequest& request);
  absl::StatusOr<v1::SkipItemResponse> SkipItem(const Caller& caller,
                                                const v1::SkipItemRequest& request);
  absl::StatusOr<v1::SubmitAnnotationResponse> SubmitAnnotation(
      const Caller& caller, const v1::SubmitAnnotationRequest& request);
  absl::StatusOr<v1::UpdateAnnotationResponse> UpdateAnnotation(
      const Caller& caller, const v1::UpdateAnnotationRequest& request);
  absl::StatusOr<v1::GetAnnotationResponse> GetAnnotation(const Caller& caller,
                                                          const v1::GetAnnotationRequest& request);
  absl::StatusOr<v1::ListAnnotationsResponse> ListAnnotations(
      const Caller& caller, const v1::ListAnnotationsRequest& request);
  absl::StatusOr<v1::ListAnnotationHistoryResponse> ListAnnotationHistory(
      const Caller& caller, const v1::ListAnnotationHistoryRequest& request);

  // ---- progress, agreement, promotion
  absl::StatusOr<v1::GetQueueProgressResponse> GetQueueProgress(
      const Caller& caller, const v1::GetQueueProgressRequest& request);
  absl::StatusOr<v1::GetQueueAgreementResponse> GetQueueAgreement(
      const Caller& caller, const v1::GetQueueAgreementRequest& request);
  absl::StatusOr<v1::PromoteAnnotationResponse> PromoteAnnotation(
      const Caller& caller, const v1::PromoteAnnotationRequest& request);

  // Applies defaults to a queue and checks every limit (INVALID_ARGUMENT naming the field under
  // "queue."). Exposed for tests.
  static absl::Status NormalizeQueue(v1::Queue& queue);

 private:
  CallScope ScopeFor(const Caller& caller) const;

  AnnotationRepository* const repository_;
  CaptureUpstream* const capture_;
  ClusteringUpstream* const clustering_;
  const LogicOptions options_;
};

}  // namespace flywheel::annotation
