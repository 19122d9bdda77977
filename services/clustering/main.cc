// flywheel-clustering: groups flagged traces into named failure themes
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/server/executor.h"
#include "common/server/service_main.h"
#include "services/clustering/background.h"
#include "services/clustering/capture_feed_client.h"
#include "services/clustering/clustering_logic.h"
#include "services/clustering/clustering_service.h"
#include "services/clustering/engine/openai.h"
#include "services/clustering/feed_follower.h"
#include "services/clustering/pg_clustering_repository.h"
#include "services/clustering/recluster.h"
#include "services/clustering/theme_index.h"
#include "services/clustering/util.h"

namespace {

// Service flags, parsed by RunServiceMain into the instance main owns.
struct ClusteringFlags {
  std::string capture_address;
  absl::Duration follow_poll_interval = absl::Seconds(1);
  absl::Duration recluster_check_interval = absl::Seconds(2);
  int worker_threads = 1;
  int executor_threads = 0;
  int executor_queue = 1024;
  int feed_batch_size = 500;
  int first_clustering_traces = 50;
  std::string namer_base_url;
  std::string namer_model;
  std::string namer_api_key_file;
  absl::Duration namer_timeout = absl::Seconds(30);
};

}  // namespace

int main(int argc, char** argv) {
  ClusteringFlags service_flags;
  using namespace ::flywheel::clustering;  // NOLINT(build/namespaces): main only
  flywheel::ServiceSpec spec;
  spec.name = "clustering";
  spec.schema = "clustering";
  spec.description = "groups flagged traces into named failure themes";
  spec.define_flags = [&](flywheel::FlagSet& flags) {
    flags.String("capture_address", &service_flags.capture_address,
                 "capture service host:port whose flagged feed is followed (needs "
                 "--service_key_file); empty: no feed is followed");
    flags.Duration(
        "follow_poll_interval", &service_flags.follow_poll_interval,
        "pause between flagged-feed polls of all projects when idle (200 ms while entries flow)");
    flags.Duration("recluster_check_interval", &service_flags.recluster_check_interval,
                   "how often workers look for pending re-clustering jobs (the schedule itself "
                   "is the per-project setting recluster_interval)");
    flags.Int("worker_threads", &service_flags.worker_threads,
              "threads running re-clustering jobs");
    flags.Int("executor_threads", &service_flags.executor_threads,
              "threads running database work of RPCs; 0 = --db_pool_size");
    flags.Int("executor_queue", &service_flags.executor_queue,
              "RPCs that may wait for a thread before RESOURCE_EXHAUSTED");
    flags.Int("feed_batch_size", &service_flags.feed_batch_size,
              "flagged-feed entries per read (1..1000)");
    flags.Int("first_clustering_traces", &service_flags.first_clustering_traces,
              "flagged traces that trigger a project's first clustering");
    flags.String("namer_base_url", &service_flags.namer_base_url,
                 "OpenAI-compatible endpoint (e.g. https://api.openai.com/v1) whose "
                 "/chat/completions names themes at re-clustering; empty: builtin names only");
    flags.String("namer_model", &service_flags.namer_model, "chat model of --namer_base_url");
    flags.String("namer_api_key_file", &service_flags.namer_api_key_file,
                 "file holding the API key sent to --namer_base_url (optional)");
    flags.Duration("namer_timeout", &service_flags.namer_timeout,
                   "per-request timeout of the namer");
  };
  spec.validate = [&]() -> absl::Status {
    if (service_flags.follow_poll_interval < absl::Milliseconds(100) ||
        service_flags.follow_poll_interval > absl::Hours(1)) {
      return absl::InvalidArgumentError("--follow_poll_interval: must be in 100ms..1h");
    }
    if (service_flags.recluster_check_interval < absl::Milliseconds(100) ||
        service_flags.recluster_check_interval > absl::Hours(1)) {
      return absl::InvalidArgumentError("--recluster_check_interval: must be in 100ms..1h");
    }
    if (service_flags.worker_threads < 1 || service_flags.worker_threads > 64) {
      return absl::InvalidArgumentError("--worker_threads: must be in 1..64");
    }
    if (service_flags.executor_threads < 0 || service_flags.executor_threads > 256) {
      return absl::InvalidArgumentError("--executor_threads: must be in 0..256");
    }
    if (service_flags.executor_queue < 1)
      return absl::InvalidArgumentError("--executor_queue: must be >= 1");
    if (service_flags.feed_batch_size < 1 || service_flags.feed_batch_size > 1000) {
      return absl::InvalidArgumentError("--feed_batch_size: must be in 1..1000");
    }
    if (!service_flags.namer_base_url.empty()) {
      if (service_flags.namer_base_url.rfind("http://", 0) != 0 &&
          service_flags.namer_base_url.rfind("https://", 0) != 0) {
        return absl::InvalidArgumentError("--namer_base_url: must be an http(s) URL");
      }
      if (service_flags.namer_model.empty()) {
        return absl::InvalidArgumentError("--namer_model: required with --namer_base_url");
      }
      if (service_flags.namer_timeout < absl::Seconds(1) ||
          service_flags.namer_timeout > absl::Seconds(120)) {
        return absl::InvalidArgumentError("--namer_timeout: must be in 1s..120s");
      }
    }
    if (service_flags.first_clustering_traces < 20) {
      return absl::InvalidArgumentError("--first_clustering_traces: must be >= 20");
    }
    return absl::OkStatus();
  };
  // Owned here so they outlive the server (destroyed in reverse order after it drained).
  std::unique_ptr<PgClusteringRepository> repository;
  std::unique_ptr<ThemeIndexCache> cache;
  std::unique_ptr<ClusteringLogic> logic;
  std::unique_ptr<flywheel::BoundedExecutor> executor;
  std::unique_ptr<GrpcFeedSource> feed;
  std::unique_ptr<FeedFollower> follower;
  std::unique_ptr<engine::ChatNamer> namer;
  std::unique_ptr<Reclusterer> reclusterer;
  std::unique_ptr<BackgroundWorkers> workers;
  spec.wire = [&](flywheel::ServiceEnv& env) -> absl::StatusOr<flywheel::ServiceParts> {
    repository = std::make_unique<PgClusteringRepository>(&env.pool, &env.logger);
    cache = std::make_unique<ThemeIndexCache>(repository.get());
    logic = std::make_unique<ClusteringLogic>(repository.get(), cache.get());
    executor = std::make_unique<flywheel::BoundedExecutor>(service_flags.executor_threads > 0
                                                               ? service_flags.executor_threads
                                                               : env.options.db_pool_size,
                                                           service_flags.executor_queue);
    const std::string replica = GenerateId();
    if (service_flags.capture_address.empty()) {
      env.logger.Warn("no --capture_address: the flagged feed is not followed");
    } else if (env.service_key.empty()) {
      env.logger.Warn(
          "no service key (--service_key_file): the flagged feed cannot be read; following "
          "is disabled");
    } else {
      feed = std::make_unique<GrpcFeedSource>(service_flags.capture_address, env.service_key);
      FollowerOptions follower_options;
      follower_options.batch_size = service_flags.feed_batch_size;
      follower = std::make_unique<FeedFollower>(repository.get(), feed.get(), cache.get(),
                                                absl::StrCat("feed-", replica), follower_options);
    }
    ReclusterOptions recluster_options;
    recluster_options.first_clustering_traces = service_flags.first_clustering_traces;
    if (!service_flags.namer_base_url.empty()) {
      engine::OpenAiEndpoint endpoint;
      endpoint.base_url = service_flags.namer_base_url;
      endpoint.model = service_flags.namer_model;
      endpoint.timeout = service_flags.namer_timeout;
      if (!service_flags.namer_api_key_file.empty()) {
        std::ifstream in(service_flags.namer_api_key_file);
        if (!in) return absl::InvalidArgumentError("--namer_api_key_file: cannot be read");
        std::getline(in, endpoint.api_key);
      }
      namer = std::make_unique<engine::ChatNamer>(endpoint);
      recluster_options.namer = [n = namer.get()](const engine::NamingRequest& request) {
        return n->Name(request);
      };
      recluster_options.namer_name = namer->Id();
    }
    reclusterer =
        std::make_unique<Reclusterer>(repository.get(), logic.get(), absl::StrCat("jobs-", replica),
                                      &env.logger, recluster_options);
    BackgroundOptions background;
    background.follow_poll_interval = service_flags.follow_poll_interval;
    background.job_poll_interval = service_flags.recluster_check_interval;
    background.schedule_check_interval = 10 * service_flags.recluster_check_interval;
    background.worker_threads = service_flags.worker_threads;
    flywheel::auth::TenancyStore* tenancy = &env.tenancy;
    workers = std::make_unique<BackgroundWorkers>(
        [tenancy]() -> absl::StatusOr<std::vector<std::string>> {
          absl::StatusOr<std::vector<flywheel::auth::Project>> projects = tenancy->ListProjects();
          if (!projects.ok()) return projects.status();
          std::vector<std::string> ids;
          for (const auto& p : *projects) ids.push_back(p.project_id);
          return ids;
        },
        follower.get(), reclusterer.get(), &env.logger, background);
    workers->Start();
    flywheel::ServiceParts parts;
    parts.on_shutdown.push_back([&] { workers->Stop(); });
    parts.services.emplace_back(std::make_unique<ClusteringServiceHandler>(
                                    &env.authenticator, logic.get(), executor.get(), &env.logger),
                                v1::ClusteringService::service_full_name());
    return parts;
  };
  return flywheel::RunServiceMain(argc, argv, spec);
}
