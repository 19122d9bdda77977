// flywheel-evalset: versioned regression eval sets, runs and comparisons
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/server/executor.h"
#include "common/server/service_main.h"
#include "services/evalset/capture_client.h"
#include "services/evalset/evalset_logic.h"
#include "services/evalset/evalset_service.h"
#include "services/evalset/pg_evalset_repository.h"

namespace {

// Service flags, parsed by RunServiceMain into the instance main owns.
struct EvalSetFlags {
  std::string capture_address;
  int executor_threads = 0;
  int executor_queue = 1024;
};

}  // namespace

int main(int argc, char** argv) {
  EvalSetFlags service_flags;
  using namespace ::flywheel::evalset;  // NOLINT(build/namespaces): main only
  flywheel::ServiceSpec spec;
  spec.name = "evalset";
  spec.schema = "evals";
  spec.max_message_bytes = 8 << 20;  // documented in evalset.proto
  spec.description = "versioned regression eval sets, runs and comparisons";
  spec.define_flags = [&](flywheel::FlagSet& flags) {
    flags.String("capture_address", &service_flags.capture_address,
                 "capture service host:port, for DPO_PAIRS exports; empty: those exports answer "
                 "FAILED_PRECONDITION");
    flags.Int("executor_threads", &service_flags.executor_threads,
              "threads running database work of RPCs; 0 = --db_pool_size");
    flags.Int("executor_queue", &service_flags.executor_queue,
              "RPCs that may wait for a thread before RESOURCE_EXHAUSTED");
  };
  spec.validate = [&]() -> absl::Status {
    if (service_flags.executor_threads < 0 || service_flags.executor_threads > 256) {
      return absl::InvalidArgumentError("--executor_threads: must be in 0..256");
    }
    if (service_flags.executor_queue < 1)
      return absl::InvalidArgumentError("--executor_queue: must be >= 1");
    return absl::OkStatus();
  };
  // Owned here so they outlive the server (destroyed in reverse order after it drained).
  std::unique_ptr<PgEvalSetRepository> repository;
  std::unique_ptr<GrpcPreferencePairSource> pairs;
  std::unique_ptr<EvalSetLogic> logic;
  std::unique_ptr<flywheel::BoundedExecutor> executor;
  spec.wire = [&](flywheel::ServiceEnv& env) -> absl::StatusOr<flywheel::ServiceParts> {
    repository = std::make_unique<PgEvalSetRepository>(&env.pool, &env.logger);
    if (!service_flags.capture_address.empty()) {
      pairs = std::make_unique<GrpcPreferencePairSource>(service_flags.capture_address);
    }
    logic = std::make_unique<EvalSetLogic>(repository.get(), pairs.get());
    executor = std::make_unique<flywheel::BoundedExecutor>(service_flags.executor_threads > 0
                                                               ? service_flags.executor_threads
                                                               : env.options.db_pool_size,
                                                           service_flags.executor_queue);
    flywheel::ServiceParts parts;
    parts.services.emplace_back(std::make_unique<EvalSetServiceHandler>(
                                    &env.authenticator, logic.get(), executor.get(), &env.logger),
                                v1::EvalSetService::service_full_name());
    return parts;
  };
  return flywheel::RunServiceMain(argc, argv, spec);
}
