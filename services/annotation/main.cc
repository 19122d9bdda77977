// flywheel-annotation: annotation queues: routes failures to reviewers and promotes labels to eval
// sets
#include <memory>

#include "common/server/service_main.h"
#include "services/annotation/annotation_service.h"

int main(int argc, char** argv) {
  using ::flywheel::annotation::AnnotationServiceHandler;
  flywheel::ServiceSpec spec;
  spec.name = "annotation";
  spec.schema = "review";
  spec.description =
      "annotation queues: routes failures to reviewers and promotes labels to eval sets";
  spec.wire = [](flywheel::ServiceEnv& env) -> absl::StatusOr<flywheel::ServiceParts> {
    flywheel::ServiceParts parts;
    parts.services.emplace_back(
        std::make_unique<AnnotationServiceHandler>(&env.authenticator, &env.logger),
        ::flywheel::annotation::v1::AnnotationService::service_full_name());
    return parts;
  };
  return flywheel::RunServiceMain(argc, argv, spec);
}
