#pragma once

#include <memory>

#include "common/auth/authenticator.h"
#include "common/log/logger.h"
#include "common/server/executor.h"
#include "common/server/scheduler.h"
#include "flywheel/annotation/v1/annotation.grpc.pb.h"
#include "services/annotation/annotation_logic.h"
#include "services/annotation/claim_notifier.h"

namespace flywheel::annotation {

// gRPC handler of flywheel.annotation.v1.AnnotationService: authenticates and authorizes (scopes
// per annotation.proto), hands the work to `executor` (never blocking a reactor), calls the
// logic and maps status codes. ClaimItem with a wait_timeout waits without holding a thread:
// it subscribes to `notifier` (fed by LISTEN/NOTIFY) and arms a `scheduler` timer for its
// deadline, re-trying the claim on the executor when either fires.
class AnnotationServiceHandler final
    : public ::flywheel::annotation::v1::AnnotationService::CallbackService {
 public:
  AnnotationServiceHandler(auth::Authenticator* authenticator, AnnotationLogic* logic,
                           BoundedExecutor* executor, Scheduler* scheduler, ClaimNotifier* notifier,
                           Logger* logger)
      : authenticator_(authenticator),
        logic_(logic),
        executor_(executor),
        scheduler_(scheduler),
        notifier_(notifier),
        logger_(logger) {}

#define FLYWHEEL_ANNOTATION_RPC(Rpc)                                                     \
  grpc::ServerUnaryReactor* Rpc(grpc::CallbackServerContext* context,                    \
                                const ::flywheel::annotation::v1::Rpc##Request* request, \
                                ::flywheel::annotation::v1::Rpc##Response* response) override;
  FLYWHEEL_ANNOTATION_RPC(CreateQueue)
  FLYWHEEL_ANNOTATION_RPC(GetQueue)
  FLYWHEEL_ANNOTATION_RPC(ListQueues)
  FLYWHEEL_ANNOTATION_RPC(UpdateQueue)
  FLYWHEEL_ANNOTATION_RPC(DeleteQueue)
  FLYWHEEL_ANNOTATION_RPC(AddItems)
  FLYWHEEL_ANNOTATION_RPC(GetItem)
  FLYWHEEL_ANNOTATION_RPC(ListItems)
  FLYWHEEL_ANNOTATION_RPC(ClaimItem)
  FLYWHEEL_ANNOTATION_RPC(RenewLease)
  FLYWHEEL_ANNOTATION_RPC(ReleaseItem)
  FLYWHEEL_ANNOTATION_RPC(SkipItem)
  FLYWHEEL_ANNOTATION_RPC(SubmitAnnotation)
  FLYWHEEL_ANNOTATION_RPC(UpdateAnnotation)
  FLYWHEEL_ANNOTATION_RPC(GetAnnotation)
  FLYWHEEL_ANNOTATION_RPC(ListAnnotations)
  FLYWHEEL_ANNOTATION_RPC(ListAnnotationHistory)
  FLYWHEEL_ANNOTATION_RPC(GetQueueProgress)
  FLYWHEEL_ANNOTATION_RPC(GetQueueAgreement)
  FLYWHEEL_ANNOTATION_RPC(PromoteAnnotation)
#undef FLYWHEEL_ANNOTATION_RPC

 private:
  struct ClaimCall;
  template <typename Request, typename Response>
  using Method = absl::StatusOr<Response> (AnnotationLogic::*)(const Caller&, const Request&);
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, const Request* request,
                                  Response* response, const auth::Requirement& requirement,
                                  Method<Request, Response> method, const char* name);
  grpc::Status Fail(const char* name, const absl::Status& status);
  void ScheduleClaimAttempt(std::shared_ptr<ClaimCall> call);
  void ClaimAttempt(std::shared_ptr<ClaimCall> call);

  auth::Authenticator* const authenticator_;
  AnnotationLogic* const logic_;
  BoundedExecutor* const executor_;
  Scheduler* const scheduler_;
  ClaimNotifier* const notifier_;
  Logger* const logger_;
};

}  // namespace flywheel::annotation
