#pragma once

#include <string>

#include "common/auth/authenticator.h"
#include "common/log/logger.h"
#include "common/server/executor.h"
#include "flywheel/clustering/v1/clustering.grpc.pb.h"
#include "services/clustering/clustering_logic.h"

namespace flywheel::clustering {

// gRPC handler of flywheel.clustering.v1.ClusteringService: authenticates and authorizes each
// call (the key's project scopes everything), runs the logic on the executor (no reactor thread
// ever blocks on the database) and maps statuses for the client.
class ClusteringServiceHandler final : public v1::ClusteringService::CallbackService {
 public:
  ClusteringServiceHandler(auth::Authenticator* authenticator, ClusteringLogic* logic,
                           BoundedExecutor* executor, Logger* logger)
      : authenticator_(authenticator), logic_(logic), executor_(executor), logger_(logger) {}

#define FLYWHEEL_CLUSTERING_RPC(Rpc)                                                          \
  grpc::ServerUnaryReactor* Rpc(grpc::CallbackServerContext* context,                         \
                                const v1::Rpc##Request* request, v1::Rpc##Response* response) \
      override;
  FLYWHEEL_CLUSTERING_RPC(ListClusterings)
  FLYWHEEL_CLUSTERING_RPC(GetClustering)
  FLYWHEEL_CLUSTERING_RPC(TriggerRecluster)
  FLYWHEEL_CLUSTERING_RPC(ListClusters)
  FLYWHEEL_CLUSTERING_RPC(GetCluster)
  FLYWHEEL_CLUSTERING_RPC(ListClusterMembers)
  FLYWHEEL_CLUSTERING_RPC(GetTraceAssignment)
  FLYWHEEL_CLUSTERING_RPC(GetClusterStats)
  FLYWHEEL_CLUSTERING_RPC(UpdateCluster)
  FLYWHEEL_CLUSTERING_RPC(MergeClusters)
  FLYWHEEL_CLUSTERING_RPC(SplitCluster)
  FLYWHEEL_CLUSTERING_RPC(NearestClusters)
  FLYWHEEL_CLUSTERING_RPC(FindSimilarTraces)
  FLYWHEEL_CLUSTERING_RPC(GetClusteringSettings)
  FLYWHEEL_CLUSTERING_RPC(UpdateClusteringSettings)
#undef FLYWHEEL_CLUSTERING_RPC

 private:
  template <typename Request, typename Response>
  using Method = absl::StatusOr<Response> (ClusteringLogic::*)(const std::string&, const Request&);

  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, const Request* request,
                                  Response* response, const auth::Requirement& requirement,
                                  Method<Request, Response> method, const char* name);
  grpc::Status Fail(const char* name, const absl::Status& status);

  auth::Authenticator* const authenticator_;
  ClusteringLogic* const logic_;
  BoundedExecutor* const executor_;
  Logger* const logger_;
};

}  // namespace flywheel::clustering
