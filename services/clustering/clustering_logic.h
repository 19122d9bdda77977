#pragma once

// Domain rules of the clustering service: every RPC of clustering.proto (the reference) on top
// of a ClusteringRepository. Speaks the API's protobuf messages, returns absl::Status; knows
// nothing of gRPC or SQL. Thread-safe.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/clustering/v1/clustering.pb.h"
#include "services/clustering/clustering_repository.h"
#include "services/clustering/theme_index.h"

namespace flywheel::clustering {

struct LogicOptions {
  int max_on_demand_per_hour = 12;
  // Clock (tests move it).
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

// Settings with every default applied (what reads return).
v1::ClusteringSettings WithDefaults(const v1::ClusteringSettings& stored);
// The parameters a new clustering records (settings with defaults, requested k, a fresh seed).
v1::ClusteringParams ParamsFor(const v1::ClusteringSettings& settings, int requested_k);

class ClusteringLogic {
 public:
  ClusteringLogic(ClusteringRepository* repository, ThemeIndexCache* cache,
                  LogicOptions options = {});

  // ---- clusterings
  absl::StatusOr<v1::ListClusteringsResponse> ListClusterings(
      const std::string& project, const v1::ListClusteringsRequest& request);
  absl::StatusOr<v1::GetClusteringResponse> GetClustering(const std::string& project,
                                                          const v1::GetClusteringRequest& request);
  absl::StatusOr<v1::TriggerReclusterResponse> TriggerRecluster(
      const std::string& project, const v1::TriggerReclusterRequest& request);

  // ---- clusters
  absl::StatusOr<v1::ListClustersResponse> ListClusters(const std::string& project,
                                                        const v1::ListClustersRequest& request);
  absl::StatusOr<v1::GetClusterResponse> GetCluster(const std::string& project,
                                                    const v1::GetClusterRequest& request);
  absl::StatusOr<v1::ListClusterMembersResponse> ListClusterMembers(
      const std::string& project, const v1::ListClusterMembersRequest& request);
  absl::StatusOr<v1::GetTraceAssignmentResponse> GetTraceAssignment(
      const std::string& project, const v1::GetTraceAssignmentRequest& request);
  absl::StatusOr<v1::GetClusterStatsResponse> GetClusterStats(
      const std::string& project, const v1::GetClusterStatsRequest& request);

  // ---- curation
  absl::StatusOr<v1::UpdateClusterResponse> UpdateCluster(const std::string& project,
                                                          const v1::UpdateClusterRequest& request);
  absl::StatusOr<v1::MergeClustersResponse> MergeClusters(const std::string& project,
                                                          const v1::MergeClustersRequest& request);
  absl::StatusOr<v1::SplitClusterResponse> SplitCluster(const std::string& project,
                                                        const v1::SplitClusterRequest& request);

  // ---- similarity search
  absl::StatusOr<v1::NearestClustersResponse> NearestClusters(
      const std::string& project, const v1::NearestClustersRequest& request);
  absl::StatusOr<v1::FindSimilarTracesResponse> FindSimilarTraces(
      const std::string& project, const v1::FindSimilarTracesRequest& request);

  // ---- settings
  absl::StatusOr<v1::GetClusteringSettingsResponse> GetClusteringSettings(
      const std::string& project, const v1::GetClusteringSettingsRequest& request);
  absl::StatusOr<v1::UpdateClusteringSettingsResponse> UpdateClusteringSettings(
      const std::string& project, const v1::UpdateClusteringSettingsRequest& request);

  // The project's settings with defaults (also for the background workers).
  absl::StatusOr<v1::ClusteringSettings> EffectiveSettings(const std::string& project);

 private:
  // Resolves version 0 to the latest SUCCEEDED clustering; checks a named one exists and (when
  // require_succeeded) SUCCEEDED.
  absl::StatusOr<ClusteringRecord> ResolveClustering(const std::string& project, int64_t version,
                                                     bool require_succeeded);
  absl::StatusOr<v1::Cluster> ClusterProto(const ClusterRecord& row, int64_t latest_version,
                                           int min_distinct_users, int64_t total_members);

  ClusteringRepository* const repository_;
  ThemeIndexCache* const cache_;
  const LogicOptions options_;
};

// Pure helpers (unit-tested).
// Snippet of a representative example: whitespace collapsed, cut at 300 code points on a word
// boundary with "…".
std::string Snippet(const std::string& text, size_t max_code_points = 300);
// Trend of a series of (trace_count, share) per bucket, given which buckets are complete and
// the index of the bucket the theme was first seen in (-1: before the range).
struct TrendResult {
  v1::Trend trend = v1::TREND_INSUFFICIENT_DATA;
  double ratio = 0;
};
TrendResult ComputeTrend(const std::vector<int64_t>& counts, const std::vector<double>& shares,
                         const std::vector<bool>& complete, int first_seen_bucket);

}  // namespace flywheel::clustering
