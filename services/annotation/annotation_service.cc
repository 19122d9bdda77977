#include "services/annotation/annotation_service.h"

#include <mutex>

#include "common/auth/grpc_auth.h"
#include "common/status/grpc_status.h"

namespace flywheel::annotation {
namespace {

using auth::Requirement;
using auth::Scope;

Requirement Admin() { return Requirement::Of(Scope::kAdmin); }
Requirement Review() { return Requirement::Of(Scope::kReview); }
Requirement ReviewOrAdmin() { return Requirement::AnyOf(Scope::kReview, Scope::kAdmin); }
Requirement Reads() {
  return Requirement{static_cast<auth::ScopeSet>(Scope::kRead) |
                         static_cast<auth::ScopeSet>(Scope::kReview) |
                         static_cast<auth::ScopeSet>(Scope::kAdmin),
                     false};
}

std::string Authorization(const grpc::ServerContextBase& context) {
  auto it = context.client_metadata().find("authorization");
  if (it == context.client_metadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

Caller CallerOf(const auth::Principal& principal, const grpc::ServerContextBase& context) {
  Caller caller;
  caller.project_id = principal.project_id;
  caller.sees_all = (principal.scopes & (static_cast<auth::ScopeSet>(Scope::kRead) |
                                         static_cast<auth::ScopeSet>(Scope::kAdmin))) != 0;
  caller.authorization = Authorization(context);
  return caller;
}

}  // namespace

grpc::Status AnnotationServiceHandler::Fail(const char* name, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kInternal || status.code() == absl::StatusCode::kUnknown) {
    logger_->Error("rpc failed", {{"method", name}, {"status", status.ToString()}});
  }
  return ToGrpcStatus(status);
}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* AnnotationServiceHandler::Unary(
    grpc::CallbackServerContext* context, const Request* request, Response* response,
    const Requirement& requirement, Method<Request, Response> method, const char* name) {
  return RunUnary(context, *executor_, [=, this]() -> grpc::Status {
    absl::StatusOr<auth::Principal> principal =
        auth::AuthenticateCall(*context, *authenticator_, requirement);
    if (!principal.ok()) return ToGrpcStatus(principal.status());
    absl::StatusOr<Response> result = (logic_->*method)(CallerOf(*principal, *context), *request);
    if (!result.ok()) return Fail(name, result.status());
    *response = std::move(*result);
    return grpc::Status::OK;
  });
}

#define FLYWHEEL_ANNOTATION_UNARY(Rpc, requirement)                                             \
  grpc::ServerUnaryReactor* AnnotationServiceHandler::Rpc(grpc::CallbackServerContext* context, \
                                                          const v1::Rpc##Request* request,      \
                                                          v1::Rpc##Response* response) {        \
    return Unary<v1::Rpc##Request, v1::Rpc##Response>(context, request, response, requirement,  \
                                                      &AnnotationLogic::Rpc, #Rpc);             \
  }

FLYWHEEL_ANNOTATION_UNARY(CreateQueue, Admin())
FLYWHEEL_ANNOTATION_UNARY(GetQueue, Reads())
FLYWHEEL_ANNOTATION_UNARY(ListQueues, Reads())
FLYWHEEL_ANNOTATION_UNARY(UpdateQueue, Admin())
FLYWHEEL_ANNOTATION_UNARY(DeleteQueue, Admin())
FLYWHEEL_ANNOTATION_UNARY(AddItems, ReviewOrAdmin())
FLYWHEEL_ANNOTATION_UNARY(GetItem, Reads())
FLYWHEEL_ANNOTATION_UNARY(ListItems, Reads())
FLYWHEEL_ANNOTATION_UNARY(RenewLease, Review())
FLYWHEEL_ANNOTATION_UNARY(ReleaseItem, Review())
FLYWHEEL_ANNOTATION_UNARY(SkipItem, Review())
FLYWHEEL_ANNOTATION_UNARY(SubmitAnnotation, Review())
FLYWHEEL_ANNOTATION_UNARY(UpdateAnnotation, Review())
FLYWHEEL_ANNOTATION_UNARY(GetAnnotation, Reads())
FLYWHEEL_ANNOTATION_UNARY(ListAnnotations, Reads())
FLYWHEEL_ANNOTATION_UNARY(ListAnnotationHistory, Reads())
FLYWHEEL_ANNOTATION_UNARY(GetQueueProgress, Reads())
FLYWHEEL_ANNOTATION_UNARY(GetQueueAgreement, Reads())
FLYWHEEL_ANNOTATION_UNARY(PromoteAnnotation, ReviewOrAdmin())

#undef FLYWHEEL_ANNOTATION_UNARY

// ---- ClaimItem: attempts run one at a time on the executor; between attempts the call waits
// for a notification on its queue or its deadline, holding no thread.
struct AnnotationServiceHandler::ClaimCall {
  grpc::CallbackServerContext* context = nullptr;
  const v1::ClaimItemRequest* request = nullptr;
  v1::ClaimItemResponse* response = nullptr;
  grpc::ServerUnaryReactor* reactor = nullptr;

  std::mutex mu;
  bool authenticated = false;
  Caller caller;
  absl::Time deadline = absl::InfinitePast();
  bool running = false;
  bool again = false;
  bool finished = false;
  bool timer_armed = false;
  uint64_t token = 0;
};

namespace {

// A unary reactor that reports cancellation (client gone, deadline, server shutdown), so a
// waiting claim ends at once instead of at its wait deadline.
class CancellableReactor final : public grpc::ServerUnaryReactor {
 public:
  void set_on_cancel(std::function<void()> on_cancel) { on_cancel_ = std::move(on_cancel); }
  void OnCancel() override {
    if (on_cancel_) on_cancel_();
  }
  void OnDone() override { delete this; }

 private:
  std::function<void()> on_cancel_;
};

}  // namespace

grpc::ServerUnaryReactor* AnnotationServiceHandler::ClaimItem(grpc::CallbackServerContext* context,
                                                              const v1::ClaimItemRequest* request,
                                                              v1::ClaimItemResponse* response) {
  auto call = std::make_shared<ClaimCall>();
  call->context = context;
  call->request = request;
  call->response = response;
  auto* reactor = new CancellableReactor();
  call->reactor = reactor;
  reactor->set_on_cancel([this, weak = std::weak_ptr<ClaimCall>(call)] {
    if (std::shared_ptr<ClaimCall> c = weak.lock()) ScheduleClaimAttempt(std::move(c));
  });
  if (!executor_->TrySubmit([this, call] { ClaimAttempt(call); })) {
    {
      std::lock_guard<std::mutex> lock(call->mu);
      call->finished = true;
    }
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "server busy; retry"));
  }
  return reactor;
}

void AnnotationServiceHandler::ScheduleClaimAttempt(std::shared_ptr<ClaimCall> call) {
  if (!executor_->TrySubmit([this, call] { ClaimAttempt(call); })) {
    // Executor full: try again shortly rather than block the notifying thread.
    scheduler_->RunAfter(absl::Milliseconds(50), [this, call] { ScheduleClaimAttempt(call); });
  }
}

void AnnotationServiceHandler::ClaimAttempt(std::shared_ptr<ClaimCall> call) {
  {
    std::lock_guard<std::mutex> lock(call->mu);
    if (call->finished) return;
    if (call->running) {
      call->again = true;
      return;
    }
    call->running = true;
    call->again = false;
  }
  auto finish = [&](grpc::Status status) {
    uint64_t token = 0;
    {
      std::lock_guard<std::mutex> lock(call->mu);
      call->finished = true;
      call->running = false;
      token = call->token;
    }
    if (token != 0) notifier_->Unsubscribe(token);
    call->reactor->Finish(std::move(status));
  };
  if (!call->authenticated) {
    absl::StatusOr<auth::Principal> principal =
        auth::AuthenticateCall(*call->context, *authenticator_, Review());
    if (!principal.ok()) return finish(ToGrpcStatus(principal.status()));
    const absl::Time call_deadline =
        call->context->deadline() == std::chrono::system_clock::time_point::max()
            ? absl::InfiniteFuture()
            : absl::FromChrono(call->context->deadline());
    absl::StatusOr<absl::Duration> wait = logic_->ClaimWait(*call->request, call_deadline);
    if (!wait.ok()) return finish(Fail("ClaimItem", wait.status()));
    call->caller = CallerOf(*principal, *call->context);
    call->deadline = absl::Now() + *wait;
    call->authenticated = true;
  }
  while (true) {
    if (call->context->IsCancelled()) {
      return finish(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
    }
    // Subscribe before looking, so a slot freed during the attempt still wakes us.
    uint64_t token = 0;
    if (absl::Now() < call->deadline) {
      token = notifier_->Subscribe(call->caller.project_id, call->request->queue_id(),
                                   [this, call] { ScheduleClaimAttempt(call); });
    }
    absl::StatusOr<v1::ClaimItemResponse> result = logic_->ClaimItem(call->caller, *call->request);
    const bool done = !result.ok() || result->has_item() || absl::Now() >= call->deadline ||
                      call->context->IsCancelled();
    if (done) {
      if (token != 0) notifier_->Unsubscribe(token);
      if (!result.ok()) return finish(Fail("ClaimItem", result.status()));
      *call->response = std::move(*result);
      return finish(grpc::Status::OK);
    }
    bool arm_timer = false;
    {
      std::lock_guard<std::mutex> lock(call->mu);
      if (call->token != 0 && call->token != token) notifier_->Unsubscribe(call->token);
      call->token = token;
      if (call->again) {
        call->again = false;
        continue;
      }
      call->running = false;
      if (!call->timer_armed) {
        call->timer_armed = true;
        arm_timer = true;
      }
    }
    if (arm_timer) {
      scheduler_->RunAfter(call->deadline - absl::Now(),
                           [this, call] { ScheduleClaimAttempt(call); });
    }
    return;
  }
}

}  // namespace flywheel::annotation
