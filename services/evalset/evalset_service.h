#pragma once

#include "common/auth/authenticator.h"
#include "common/log/logger.h"
#include "common/server/executor.h"
#include "flywheel/evalset/v1/evalset.grpc.pb.h"
#include "services/evalset/evalset_logic.h"

namespace flywheel::evalset {

// gRPC handler of flywheel.evalset.v1.EvalSetService: authenticates and authorizes each call
// (the key's project scopes everything), hands the work to the logic on the executor (so no
// reactor thread ever blocks on the database), and maps statuses for the client.
class EvalSetServiceHandler final : public v1::EvalSetService::CallbackService {
 public:
  EvalSetServiceHandler(auth::Authenticator* authenticator, EvalSetLogic* logic,
                        BoundedExecutor* executor, Logger* logger)
      : authenticator_(authenticator), logic_(logic), executor_(executor), logger_(logger) {}

  grpc::ServerUnaryReactor* CreateEvalSet(grpc::CallbackServerContext* context,
                                          const v1::CreateEvalSetRequest* request,
                                          v1::CreateEvalSetResponse* response) override;
  grpc::ServerUnaryReactor* GetEvalSet(grpc::CallbackServerContext* context,
                                       const v1::GetEvalSetRequest* request,
                                       v1::GetEvalSetResponse* response) override;
  grpc::ServerUnaryReactor* ListEvalSets(grpc::CallbackServerContext* context,
                                         const v1::ListEvalSetsRequest* request,
                                         v1::ListEvalSetsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateEvalSet(grpc::CallbackServerContext* context,
                                          const v1::UpdateEvalSetRequest* request,
                                          v1::UpdateEvalSetResponse* response) override;
  grpc::ServerUnaryReactor* ArchiveEvalSet(grpc::CallbackServerContext* context,
                                           const v1::ArchiveEvalSetRequest* request,
                                           v1::ArchiveEvalSetResponse* response) override;
  grpc::ServerUnaryReactor* UnarchiveEvalSet(grpc::CallbackServerContext* context,
                                             const v1::UnarchiveEvalSetRequest* request,
                                             v1::UnarchiveEvalSetResponse* response) override;
  grpc::ServerUnaryReactor* AddCases(grpc::CallbackServerContext* context,
                                     const v1::AddCasesRequest* request,
                                     v1::AddCasesResponse* response) override;
  grpc::ServerUnaryReactor* UpdateCase(grpc::CallbackServerContext* context,
                                       const v1::UpdateCaseRequest* request,
                                       v1::UpdateCaseResponse* response) override;
  grpc::ServerUnaryReactor* RetireCases(grpc::CallbackServerContext* context,
                                        const v1::RetireCasesRequest* request,
                                        v1::RetireCasesResponse* response) override;
  grpc::ServerUnaryReactor* GetCase(grpc::CallbackServerContext* context,
                                    const v1::GetCaseRequest* request,
                                    v1::GetCaseResponse* response) override;
  grpc::ServerUnaryReactor* ListCases(grpc::CallbackServerContext* context,
                                      const v1::ListCasesRequest* request,
                                      v1::ListCasesResponse* response) override;
  grpc::ServerWriteReactor<v1::StreamCasesResponse>* StreamCases(
      grpc::CallbackServerContext* context, const v1::StreamCasesRequest* request) override;
  grpc::ServerUnaryReactor* GetVersion(grpc::CallbackServerContext* context,
                                       const v1::GetVersionRequest* request,
                                       v1::GetVersionResponse* response) override;
  grpc::ServerUnaryReactor* ListVersions(grpc::CallbackServerContext* context,
                                         const v1::ListVersionsRequest* request,
                                         v1::ListVersionsResponse* response) override;
  grpc::ServerUnaryReactor* TagVersion(grpc::CallbackServerContext* context,
                                       const v1::TagVersionRequest* request,
                                       v1::TagVersionResponse* response) override;
  grpc::ServerUnaryReactor* UntagVersion(grpc::CallbackServerContext* context,
                                         const v1::UntagVersionRequest* request,
                                         v1::UntagVersionResponse* response) override;
  grpc::ServerUnaryReactor* CreateRun(grpc::CallbackServerContext* context,
                                      const v1::CreateRunRequest* request,
                                      v1::CreateRunResponse* response) override;
  grpc::ServerUnaryReactor* RecordResults(grpc::CallbackServerContext* context,
                                          const v1::RecordResultsRequest* request,
                                          v1::RecordResultsResponse* response) override;
  grpc::ServerUnaryReactor* CompleteRun(grpc::CallbackServerContext* context,
                                        const v1::CompleteRunRequest* request,
                                        v1::CompleteRunResponse* response) override;
  grpc::ServerUnaryReactor* GetRun(grpc::CallbackServerContext* context,
                                   const v1::GetRunRequest* request,
                                   v1::GetRunResponse* response) override;
  grpc::ServerUnaryReactor* ListRuns(grpc::CallbackServerContext* context,
                                     const v1::ListRunsRequest* request,
                                     v1::ListRunsResponse* response) override;
  grpc::ServerUnaryReactor* ListResults(grpc::CallbackServerContext* context,
                                        const v1::ListResultsRequest* request,
                                        v1::ListResultsResponse* response) override;
  grpc::ServerUnaryReactor* CompareRuns(grpc::CallbackServerContext* context,
                                        const v1::CompareRunsRequest* request,
                                        v1::CompareRunsResponse* response) override;
  grpc::ServerWriteReactor<v1::ExportEvalSetResponse>* ExportEvalSet(
      grpc::CallbackServerContext* context, const v1::ExportEvalSetRequest* request) override;
  grpc::ServerUnaryReactor* FindNearestCases(grpc::CallbackServerContext* context,
                                             const v1::FindNearestCasesRequest* request,
                                             v1::FindNearestCasesResponse* response) override;

 private:
  template <typename Request, typename Response>
  using Method = absl::StatusOr<Response> (EvalSetLogic::*)(const std::string&, const Request&);

  // Authenticates, runs `method` on the executor and finishes the call.
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, const Request* request,
                                  Response* response, const auth::Requirement& requirement,
                                  Method<Request, Response> method, const char* name);
  grpc::Status Fail(const char* name, const absl::Status& status);

  auth::Authenticator* const authenticator_;
  EvalSetLogic* const logic_;
  BoundedExecutor* const executor_;
  Logger* const logger_;
};

}  // namespace flywheel::evalset
