// flywheel-clustering: groups flagged traces into named failure themes
#include <memory>

#include "common/server/service_main.h"
#include "services/clustering/clustering_service.h"

int main(int argc, char** argv) {
  using ::flywheel::clustering::ClusteringServiceHandler;
  flywheel::ServiceSpec spec;
  spec.name = "clustering";
  spec.schema = "clustering";
  spec.description = "groups flagged traces into named failure themes";
  spec.wire = [](flywheel::ServiceEnv& env) -> absl::StatusOr<flywheel::ServiceParts> {
    flywheel::ServiceParts parts;
    parts.services.emplace_back(
        std::make_unique<ClusteringServiceHandler>(&env.authenticator, &env.logger),
        ::flywheel::clustering::v1::ClusteringService::service_full_name());
    return parts;
  };
  return flywheel::RunServiceMain(argc, argv, spec);
}
