// flywheel-evalset: versioned regression eval sets, runs and comparisons
#include <memory>

#include "common/server/service_main.h"
#include "services/evalset/evalset_service.h"

int main(int argc, char** argv) {
  using ::flywheel::evalset::EvalSetServiceHandler;
  flywheel::ServiceSpec spec;
  spec.name = "evalset";
  spec.schema = "evals";
  spec.max_message_bytes = 8 << 20;  // documented in evalset.proto
  spec.description = "versioned regression eval sets, runs and comparisons";
  spec.wire = [](flywheel::ServiceEnv& env) -> absl::StatusOr<flywheel::ServiceParts> {
    flywheel::ServiceParts parts;
    parts.services.emplace_back(std::make_unique<EvalSetServiceHandler>(&env.authenticator, &env.logger),
                                ::flywheel::evalset::v1::EvalSetService::service_full_name());
    return parts;
  };
  return flywheel::RunServiceMain(argc, argv, spec);
}
