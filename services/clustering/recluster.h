#pragma once

// Re-clustering jobs: claims PENDING clusterings (on demand or scheduled), rebuilds themes from
// the window's flagged traces with a freshly fitted embedder, groups and names them, matches
// them to the previous clustering's stable ids (member-set Jaccard) and publishes the new
// version. Runs on background threads, never on a gRPC reactor. Several replicas may run it:
// claiming uses FOR UPDATE SKIP LOCKED, so each job runs once.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/log/logger.h"
#include "services/clustering/clustering_logic.h"
#include "services/clustering/clustering_repository.h"
#include "services/clustering/engine/openai.h"

namespace flywheel::clustering {

// A remote theme namer (e.g. engine::ChatNamer::Name over an OpenAI-compatible endpoint).
using ThemeNamerFn =
    std::function<absl::StatusOr<engine::NamingResult>(const engine::NamingRequest&)>;

struct ReclusterOptions {
  // Traces read per window at most (the newest are dropped beyond it).
  size_t max_window_traces = 200000;
  // A job fails with fewer embedded flagged traces in its window.
  int min_window_traces = 20;
  // The first clustering of a project is scheduled once this many flagged traces arrived.
  int64_t first_clustering_traces = 50;
  // RUNNING jobs without a heartbeat for this long are marked FAILED.
  absl::Duration stale_after = absl::Minutes(10);
  // Optional remote namer; empty: the builtin c-TF-IDF names only.
  ThemeNamerFn namer;
  std::string namer_name;  // recorded in ClusteringParams, e.g. "openai-compatible:gpt-4o-mini"
  std::string namer_language = "en";
  int namer_max_examples = 10;
};

class Reclusterer {
 public:
  Reclusterer(ClusteringRepository* repository, ClusteringLogic* logic, std::string worker,
              Logger* logger, ReclusterOptions options = {});

  // Claims the oldest PENDING clustering (any project) and runs it. False when none is pending.
  absl::StatusOr<bool> RunOnePending();
  // Creates a SCHEDULED clustering of `project` when it is due. True when one was created.
  absl::StatusOr<bool> ScheduleIfDue(const std::string& project, absl::Time now);
  // Marks jobs of dead workers FAILED.
  absl::Status FailStale();

 private:
  struct Beat;
  absl::Status Run(const ClusteringRecord& job);
  absl::Status RunPhases(const ClusteringRecord& job, Beat* beat);
  bool Progress(const ClusteringRecord& job, Beat* beat, v1::ClusteringPhase phase, double fraction,
                int64_t done, int64_t total, const v1::ClusteringParams& params);

  ClusteringRepository* const repository_;
  ClusteringLogic* const logic_;
  const std::string worker_;
  Logger* const logger_;
  const ReclusterOptions options_;
};

}  // namespace flywheel::clustering
