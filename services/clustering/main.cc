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

// Flag storage for the life of the process.
std::string capture_address;                                 // NOLINT
absl::Duration follow_poll_interval = absl::Seconds(1);      // NOLINT
absl::Duration recluster_check_interval = absl::Seconds(2);  // NOLINT
int worker_threads = 1;                                      // NOLINT
int executor_threads = 0;                                    // NOLINT
int executor_queue = 1024;                                   // NOLINT
int feed_batch_size = 500;                                   // NOLINT
int first_clustering_traces = 50;                            // NOLINT
std::string namer_base_url;                                  // NOLINT
std::string namer_model;                                     // NOLINT
std::string namer_api_key_file;                              // NOLINT
absl::Duration namer_timeout = absl::Seconds(30);            // NOLINT

}  // namespace

int main(int argc, char** argv) {
  using namespace ::flywheel::clustering;  // NOLINT(build/namespaces): main only
  flywheel::ServiceSpec spec;
  spec.name = "clustering";
  spec.schema = "clustering";
  spec.description = "groups flagged traces into named failure themes";
  spec.define_flags = [](flywheel::FlagSet& flags) {
    flags.String("capture_address", &capture_address,
                 "capture service host:port whose flagged feed is followed (needs "
                 "--service_key_file); empty: no feed is followed");
    flags.Duration(
        "follow_poll_interval", &follow_poll_interval,
        "pause between flagged-feed polls of all projects when idle (200 ms while entries flow)");
    flags.Duration("recluster_check_interval", &recluster_check_interval,
                   "how often workers look for pending re-clustering jobs (the schedule itself "
                   "is the per-project setting recluster_interval)");
    flags.Int("worker_threads", &worker_threads, "threads running re-clustering jobs");
    flags.Int("executor_threads", &executor_threads,
              "threads running database work of RPCs; 0 = --db_pool_size");
    flags.Int("executor_queue", &executor_queue,
              "RPCs that may wait for a thread before RESOURCE_EXHAUSTED");
    flags.Int("feed_batch_size", &feed_batch_size, "flagged-feed entries per read (1..1000)");
    flags.Int("first_clustering_traces", &first_clustering_traces,
              "flagged traces that trigger a project's first clustering");
    flags.String("namer_base_url", &namer_base_url,
                 "OpenAI-compatible endpoint (e.g. https://api.openai.com/v1) whose "
                 "/chat/completions names themes at re-clustering; empty: builtin names only");
    flags.String("namer_model", &namer_model, "chat model of --namer_base_url");
    flags.String("namer_api_key_file", &namer_api_key_file,
                 "file holding the API key sent to --namer_base_url (optional)");
    flags.Duration("namer_timeout", &namer_timeout, "per-request timeout of the namer");
  };
  spec.validate = []() -> absl::Status {
    if (follow_poll_interval < absl::Milliseconds(100) || follow_poll_interval > absl::Hours(1)) {
      return absl::InvalidArgumentError("--follow_poll_interval: must be in 100ms..1h");
    }
    if (recluster_check_interval < absl::Milliseconds(100) ||
        recluster_check_interval > absl::Hours(1)) {
      return absl::InvalidArgumentError("--recluster_check_interval: must be in 100ms..1h");
    }
    if (worker_threads < 1 || worker_threads > 64) {
      return absl::InvalidArgumentError("--worker_threads: must be in 1..64");
    }
    if (executor_threads < 0 || executor_threads > 256) {
      return absl::InvalidArgumentError("--executor_threads: must be in 0..256");
    }
    if (executor_queue < 1) return absl::InvalidArgumentError("--executor_queue: must be >= 1");
    if (feed_batch_size < 1 || feed_batch_size > 1000) {
      return absl::InvalidArgumentError("--feed_batch_size: must be in 1..1000");
    }
    if (!namer_base_url.empty()) {
      if (namer_base_url.rfind("http://", 0) != 0 && namer_base_url.rfind("https://", 0) != 0) {
        return absl::InvalidArgumentError("--namer_base_url: must be an http(s) URL");
      }
      if (namer_model.empty()) {
        return absl::InvalidArgumentError("--namer_model: required with --namer_base_url");
      }
      if (namer_timeout < absl::Seconds(1) || namer_timeout > absl::Seconds(120)) {
        return absl::InvalidArgumentError("--namer_timeout: must be in 1s..120s");
      }
    }
    if (first_clustering_traces < 20) {
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
    executor = std::make_unique<flywheel::BoundedExecutor>(
        executor_threads > 0 ? executor_threads : env.options.db_pool_size, executor_queue);
    const std::string replica = GenerateId();
    if (capture_address.empty()) {
      env.logger.Warn("no --capture_address: the flagged feed is not followed");
    } else if (env.service_key.empty()) {
      env.logger.Warn(
          "no service key (--service_key_file): the flagged feed cannot be read; following "
          "is disabled");
    } else {
      feed = std::make_unique<GrpcFeedSource>(capture_address, env.service_key);
      FollowerOptions follower_options;
      follower_options.batch_size = feed_batch_size;
      follower = std::make_unique<FeedFollower>(repository.get(), feed.get(), cache.get(),
                                                absl::StrCat("feed-", replica), follower_options);
    }
    ReclusterOptions recluster_options;
    recluster_options.first_clustering_traces = first_clustering_traces;
    if (!namer_base_url.empty()) {
      engine::OpenAiEndpoint endpoint;
      endpoint.base_url = namer_base_url;
      endpoint.model = namer_model;
      endpoint.timeout = namer_timeout;
      if (!namer_api_key_file.empty()) {
        std::ifstream in(namer_api_key_file);
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
    background.follow_poll_interval = follow_poll_interval;
    background.job_poll_interval = recluster_check_interval;
    background.schedule_check_interval = 10 * recluster_check_interval;
    background.worker_threads = worker_threads;
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
