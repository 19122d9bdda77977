#include "services/evalset/evalset_service.h"

#include "common/auth/grpc_auth.h"
#include "common/status/grpc_status.h"
#include "services/evalset/stream_reactor.h"

namespace flywheel::evalset {
namespace {

using auth::Requirement;
using auth::Scope;

Requirement Eval() { return Requirement::Of(Scope::kEval); }
Requirement ReadOrEval() { return Requirement::AnyOf(Scope::kRead, Scope::kEval); }
Requirement EvalOrReview() { return Requirement::AnyOf(Scope::kEval, Scope::kReview); }
Requirement ReadEvalOrReview() {
  return Requirement{static_cast<auth::ScopeSet>(Scope::kRead) |
                         static_cast<auth::ScopeSet>(Scope::kEval) |
                         static_cast<auth::ScopeSet>(Scope::kReview),
                     false};
}

std::string Authorization(const grpc::ServerContextBase& context) {
  auto it = context.client_metadata().find("authorization");
  if (it == context.client_metadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

grpc::Status EvalSetServiceHandler::Fail(const char* name, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kInternal || status.code() == absl::StatusCode::kUnknown) {
    logger_->Error("rpc failed", {{"method", name}, {"status", status.ToString()}});
  }
  return ToGrpcStatus(status);
}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* EvalSetServiceHandler::Unary(grpc::CallbackServerContext* context,
                                                       const Request* request, Response* response,
                                                       const Requirement& requirement,
                                                       Method<Request, Response> method,
                                                       const char* name) {
  return RunUnary(context, *executor_, [=, this]() -> grpc::Status {
    absl::StatusOr<auth::Principal> principal =
        auth::AuthenticateCall(*context, *authenticator_, requirement);
    if (!principal.ok()) return ToGrpcStatus(principal.status());
    absl::StatusOr<Response> result = (logic_->*method)(principal->project_id, *request);
    if (!result.ok()) return Fail(name, result.status());
    *response = std::move(*result);
    return grpc::Status::OK;
  });
}

#define FLYWHEEL_EVALSET_UNARY(Rpc, requirement)                                               \
  grpc::ServerUnaryReactor* EvalSetServiceHandler::Rpc(grpc::CallbackServerContext* context,   \
                                                       const v1::Rpc##Request* request,        \
                                                       v1::Rpc##Response* response) {          \
    return Unary<v1::Rpc##Request, v1::Rpc##Response>(context, request, response, requirement, \
                                                      &EvalSetLogic::Rpc, #Rpc);               \
  }

FLYWHEEL_EVALSET_UNARY(CreateEvalSet, Eval())
FLYWHEEL_EVALSET_UNARY(GetEvalSet, ReadOrEval())
FLYWHEEL_EVALSET_UNARY(ListEvalSets, ReadOrEval())
FLYWHEEL_EVALSET_UNARY(UpdateEvalSet, Eval())
FLYWHEEL_EVALSET_UNARY(ArchiveEvalSet, Eval())
FLYWHEEL_EVALSET_UNARY(UnarchiveEvalSet, Eval())
FLYWHEEL_EVALSET_UNARY(AddCases, EvalOrReview())
FLYWHEEL_EVALSET_UNARY(UpdateCase, EvalOrReview())
FLYWHEEL_EVALSET_UNARY(RetireCases, EvalOrReview())
FLYWHEEL_EVALSET_UNARY(GetCase, ReadOrEval())
FLYWHEEL_EVALSET_UNARY(ListCases, ReadOrEval())
FLYWHEEL_EVALSET_UNARY(GetVersion, ReadOrEval())
FLYWHEEL_EVALSET_UNARY(ListVersions, ReadOrEval())
FLYWHEEL_EVALSET_UNARY(TagVersion, Eval())
FLYWHEEL_EVALSET_UNARY(UntagVersion, Eval())
FLYWHEEL_EVALSET_UNARY(CreateRun, Eval())
FLYWHEEL_EVALSET_UNARY(RecordResults, Eval())
FLYWHEEL_EVALSET_UNARY(CompleteRun, Eval())
FLYWHEEL_EVALSET_UNARY(GetRun, ReadOrEval())
FLYWHEEL_EVALSET_UNARY(ListRuns, ReadOrEval())
FLYWHEEL_EVALSET_UNARY(ListResults, ReadOrEval())
FLYWHEEL_EVALSET_UNARY(CompareRuns, ReadOrEval())
FLYWHEEL_EVALSET_UNARY(FindNearestCases, ReadEvalOrReview())

#undef FLYWHEEL_EVALSET_UNARY

grpc::ServerWriteReactor<v1::StreamCasesResponse>* EvalSetServiceHandler::StreamCases(
    grpc::CallbackServerContext* context, const v1::StreamCasesRequest* request) {
  return new SourceWriteReactor<v1::StreamCasesResponse>(
      executor_, logger_, "StreamCases",
      [this, context,
       request]() -> absl::StatusOr<std::unique_ptr<MessageSource<v1::StreamCasesResponse>>> {
        absl::StatusOr<auth::Principal> principal =
            auth::AuthenticateCall(*context, *authenticator_, ReadOrEval());
        if (!principal.ok()) return principal.status();
        return logic_->StreamCases(principal->project_id, *request);
      });
}

grpc::ServerWriteReactor<v1::ExportEvalSetResponse>* EvalSetServiceHandler::ExportEvalSet(
    grpc::CallbackServerContext* context, const v1::ExportEvalSetRequest* request) {
  return new SourceWriteReactor<v1::ExportEvalSetResponse>(
      executor_, logger_, "ExportEvalSet",
      [this, context,
       request]() -> absl::StatusOr<std::unique_ptr<MessageSource<v1::ExportEvalSetResponse>>> {
        absl::StatusOr<auth::Principal> principal =
            auth::AuthenticateCall(*context, *authenticator_, ReadOrEval());
        if (!principal.ok()) return principal.status();
        return logic_->ExportEvalSet(principal->project_id, *request, Authorization(*context));
      });
}

}  // namespace flywheel::evalset
