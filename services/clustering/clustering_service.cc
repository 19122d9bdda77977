#include "services/clustering/clustering_service.h"

#include "common/auth/grpc_auth.h"
#include "common/status/grpc_status.h"

namespace flywheel::clustering {
namespace {

using auth::Requirement;
using auth::Scope;

// Reads: read, review or admin (admin implies every scope).
Requirement Read() {
  return Requirement{
      static_cast<auth::ScopeSet>(Scope::kRead) | static_cast<auth::ScopeSet>(Scope::kReview),
      false};
}
// Curation: review or admin.
Requirement Review() { return Requirement::Of(Scope::kReview); }
// Jobs and settings: admin only.
Requirement Admin() { return Requirement::Of(Scope::kAdmin); }

}  // namespace

grpc::Status ClusteringServiceHandler::Fail(const char* name, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kInternal || status.code() == absl::StatusCode::kUnknown) {
    logger_->Error("rpc failed", {{"method", name}, {"status", status.ToString()}});
  }
  return ToGrpcStatus(status);
}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* ClusteringServiceHandler::Unary(
    grpc::CallbackServerContext* context, const Request* request, Response* response,
    const Requirement& requirement, Method<Request, Response> method, const char* name) {
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

#define FLYWHEEL_CLUSTERING_UNARY(Rpc, requirement)                                             \
  grpc::ServerUnaryReactor* ClusteringServiceHandler::Rpc(grpc::CallbackServerContext* context, \
                                                          const v1::Rpc##Request* request,      \
                                                          v1::Rpc##Response* response) {        \
    return Unary<v1::Rpc##Request, v1::Rpc##Response>(context, request, response, requirement,  \
                                                      &ClusteringLogic::Rpc, #Rpc);             \
  }

FLYWHEEL_CLUSTERING_UNARY(ListClusterings, Read())
FLYWHEEL_CLUSTERING_UNARY(GetClustering, Read())
FLYWHEEL_CLUSTERING_UNARY(TriggerRecluster, Admin())
FLYWHEEL_CLUSTERING_UNARY(ListClusters, Read())
FLYWHEEL_CLUSTERING_UNARY(GetCluster, Read())
FLYWHEEL_CLUSTERING_UNARY(ListClusterMembers, Read())
FLYWHEEL_CLUSTERING_UNARY(GetTraceAssignment, Read())
FLYWHEEL_CLUSTERING_UNARY(GetClusterStats, Read())
FLYWHEEL_CLUSTERING_UNARY(UpdateCluster, Review())
FLYWHEEL_CLUSTERING_UNARY(MergeClusters, Review())
FLYWHEEL_CLUSTERING_UNARY(SplitCluster, Review())
FLYWHEEL_CLUSTERING_UNARY(NearestClusters, Read())
FLYWHEEL_CLUSTERING_UNARY(FindSimilarTraces, Read())
FLYWHEEL_CLUSTERING_UNARY(GetClusteringSettings, Read())
FLYWHEEL_CLUSTERING_UNARY(UpdateClusteringSettings, Admin())

#undef FLYWHEEL_CLUSTERING_UNARY

}  // namespace flywheel::clustering
