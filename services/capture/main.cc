// flywheel-capture: captures traces and user signals, labels traces and publishes the flagged feed
#include <memory>

#include "common/server/service_main.h"
#include "services/capture/capture_service.h"

int main(int argc, char** argv) {
  using ::flywheel::capture::CaptureServiceHandler;
  flywheel::ServiceSpec spec;
  spec.name = "capture";
  spec.schema = "capture";
  spec.description = "captures traces and user signals, labels traces and publishes the flagged feed";
  spec.wire = [](flywheel::ServiceEnv& env) -> absl::StatusOr<flywheel::ServiceParts> {
    flywheel::ServiceParts parts;
    parts.services.emplace_back(std::make_unique<CaptureServiceHandler>(&env.authenticator, &env.logger),
                                ::flywheel::capture::v1::CaptureService::service_full_name());
    return parts;
  };
  return flywheel::RunServiceMain(argc, argv, spec);
}
