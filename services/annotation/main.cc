// flywheel-annotation: annotation queues: routes failures to reviewers and promotes labels to eval
// sets
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/server/executor.h"
#include "common/server/scheduler.h"
#include "common/server/service_main.h"
#include "services/annotation/annotation_logic.h"
#include "services/annotation/annotation_service.h"
#include "services/annotation/claim_notifier.h"
#include "services/annotation/ids.h"
#include "services/annotation/pg_annotation_repository.h"
#include "services/annotation/pg_claim_listener.h"
#include "services/annotation/upstream_grpc.h"
#include "services/annotation/workers.h"

namespace {

// Service flags, parsed by RunServiceMain into the instance main owns.
struct AnnotationFlags {
  std::string capture_address;
  std::string clustering_address;
  std::string evalset_address;
  absl::Duration fill_interval = absl::Seconds(1);
  absl::Duration reaper_interval = absl::Seconds(5);
  absl::Duration promotion_interval = absl::Seconds(2);
  int worker_threads = 0;
  int executor_queue = 1024;
};

}  // namespace

int main(int argc, char** argv) {
  AnnotationFlags service_flags;
  using namespace ::flywheel::annotation;  // NOLINT(build/namespaces): main only
  flywheel::ServiceSpec spec;
  spec.name = "annotation";
  spec.schema = "review";
  spec.description =
      "annotation queues: routes failures to reviewers and promotes labels to eval sets";
  spec.define_flags = [&](flywheel::FlagSet& flags) {
    flags.String("capture_address", &service_flags.capture_address,
                 "capture service host:port (trace snapshots, flagged feed); empty: AddItems "
                 "answers UNAVAILABLE per entry and auto-fill idles");
    flags.String("clustering_address", &service_flags.clustering_address,
                 "clustering service host:port (themes); empty: items carry no theme");
    flags.String("evalset_address", &service_flags.evalset_address,
                 "eval-set service host:port (promotions, novelty); empty: the promotion "
                 "outbox waits");
    flags.Duration("fill_interval", &service_flags.fill_interval,
                   "how often queues are auto-filled when idle (every 250 ms while items flow)");
    flags.Duration("reaper_interval", &service_flags.reaper_interval,
                   "how often expired leases are returned (claims also return them)");
    flags.Duration("promotion_interval", &service_flags.promotion_interval,
                   "how often the promotion outbox is delivered");
    flags.Int("worker_threads", &service_flags.worker_threads,
              "threads running database work of RPCs; 0 = --db_pool_size");
    flags.Int("executor_queue", &service_flags.executor_queue,
              "RPCs that may wait for a thread before RESOURCE_EXHAUSTED");
  };
  spec.validate = [&]() -> absl::Status {
    if (service_flags.worker_threads < 0 || service_flags.worker_threads > 256) {
      return absl::InvalidArgumentError("--worker_threads: must be in 0..256");
    }
    if (service_flags.executor_queue < 1)
      return absl::InvalidArgumentError("--executor_queue: must be >= 1");
    for (auto [name, value] :
         {std::pair{"--fill_interval", service_flags.fill_interval},
          std::pair{"--reaper_interval", service_flags.reaper_interval},
          std::pair{"--promotion_interval", service_flags.promotion_interval}}) {
      if (value < absl::Milliseconds(100)) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": must be at least 100ms"));
      }
    }
    return absl::OkStatus();
  };
  // Owned here so they outlive the server; destroyed in reverse order after it drained.
  std::unique_ptr<ClaimNotifier> notifier;
  std::unique_ptr<flywheel::Scheduler> scheduler;
  std::unique_ptr<PgAnnotationRepository> repository;
  std::unique_ptr<GrpcCaptureUpstream> capture;
  std::unique_ptr<GrpcClusteringUpstream> clustering;
  std::unique_ptr<GrpcEvalSetUpstream> evalset;
  std::unique_ptr<AnnotationLogic> logic;
  std::unique_ptr<flywheel::BoundedExecutor> executor;
  std::unique_ptr<PgClaimListener> listener;
  std::unique_ptr<LeaseReaper> reaper;
  std::unique_ptr<PromotionDelivery> delivery;
  std::unique_ptr<QueueFiller> filler;
  std::vector<std::unique_ptr<PeriodicWorker>> workers;
  spec.wire = [&](flywheel::ServiceEnv& env) -> absl::StatusOr<flywheel::ServiceParts> {
    notifier = std::make_unique<ClaimNotifier>();
    scheduler = std::make_unique<flywheel::Scheduler>();
    repository = std::make_unique<PgAnnotationRepository>(&env.pool, &env.logger);
    UpstreamOptions upstream_options;
    upstream_options.service_key = env.service_key;
    if (!service_flags.capture_address.empty()) {
      capture = std::make_unique<GrpcCaptureUpstream>(
          MakeUpstreamChannel(service_flags.capture_address), upstream_options);
    }
    if (!service_flags.clustering_address.empty()) {
      clustering = std::make_unique<GrpcClusteringUpstream>(
          MakeUpstreamChannel(service_flags.clustering_address), upstream_options);
    }
    if (!service_flags.evalset_address.empty()) {
      evalset = std::make_unique<GrpcEvalSetUpstream>(
          MakeUpstreamChannel(service_flags.evalset_address), upstream_options);
    }
    LogicOptions logic_options;
    logic_options.have_service_key = !env.service_key.empty();
    logic = std::make_unique<AnnotationLogic>(repository.get(), capture.get(), clustering.get(),
                                              logic_options);
    executor = std::make_unique<flywheel::BoundedExecutor>(
        service_flags.worker_threads > 0 ? service_flags.worker_threads : env.options.db_pool_size,
        service_flags.executor_queue);
    listener =
        std::make_unique<PgClaimListener>(env.options.database_url, notifier.get(), &env.logger);

    // Background work. The reaper needs only the database; the others act for projects through
    // the upstream services with the service key.
    reaper = std::make_unique<LeaseReaper>(repository.get(), &env.logger);
    workers.push_back(std::make_unique<PeriodicWorker>(
        "reaper", service_flags.reaper_interval, service_flags.reaper_interval, [&] {
          absl::StatusOr<int64_t> n = reaper->RunOnce();
          if (!n.ok()) env.logger.Warn("lease reaper failed", {{"status", n.status().ToString()}});
          return false;
        }));
    if (env.service_key.empty()) {
      env.logger.Warn(
          "no service key configured (--service_key_file): auto-fill and promotion delivery "
          "are idle");
    } else {
      if (evalset) {
        delivery =
            std::make_unique<PromotionDelivery>(repository.get(), evalset.get(), &env.logger);
        workers.push_back(std::make_unique<PeriodicWorker>(
            "promotion", service_flags.promotion_interval, service_flags.promotion_interval, [&] {
              absl::StatusOr<int> n = delivery->RunOnce();
              if (!n.ok()) {
                env.logger.Warn("promotion delivery failed", {{"status", n.status().ToString()}});
              }
              return false;
            }));
      } else {
        env.logger.Warn("no --evalset_address: promotions stay in the outbox");
      }
      if (capture) {
        QueueFiller::Options fill_options;
        fill_options.owner = GenerateId();
        fill_options.lease_ttl = service_flags.fill_interval * 2 + absl::Seconds(30);
        filler = std::make_unique<QueueFiller>(repository.get(), capture.get(), clustering.get(),
                                               evalset.get(), &env.logger, fill_options);
        // While traces flow (or a page waits for clustering), fill again soon: the loop's
        // freshness (thumbs-down to claimable) depends on it.
        workers.push_back(std::make_unique<PeriodicWorker>(
            "filler", service_flags.fill_interval, absl::Milliseconds(250), [&] {
              absl::StatusOr<int64_t> n = filler->RunOnce(absl::Now());
              if (!n.ok()) {
                env.logger.Warn("queue fill failed", {{"status", n.status().ToString()}});
                return false;
              }
              return *n > 0 || filler->waiting_for_clustering();
            }));
      } else {
        env.logger.Warn("no --capture_address: auto-fill is idle");
      }
    }

    flywheel::ServiceParts parts;
    parts.on_shutdown.push_back([&] {
      workers.clear();
      listener.reset();
    });
    parts.services.emplace_back(
        std::make_unique<AnnotationServiceHandler>(&env.authenticator, logic.get(), executor.get(),
                                                   scheduler.get(), notifier.get(), &env.logger),
        v1::AnnotationService::service_full_name());
    return parts;
  };
  return flywheel::RunServiceMain(argc, argv, spec);
}
