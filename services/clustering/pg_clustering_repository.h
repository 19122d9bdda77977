#pragma once

#include "common/db/pool.h"
#include "common/log/logger.h"
#include "services/clustering/clustering_repository.h"

namespace flywheel::clustering {

// ClusteringRepository on PostgreSQL (schema `clustering`, migrations/clustering). Named
// prepared statements only; libpqxx exceptions stop here (mapped by db::RunInTransaction).
class PgClusteringRepository final : public ClusteringRepository {
 public:
  PgClusteringRepository(db::ConnectionPool* pool, Logger* logger);

  absl::StatusOr<std::optional<SettingsRecord>> GetSettings(const std::string& project) override;
  absl::StatusOr<SettingsRecord> PutSettings(const std::string& project,
                                             const v1::ClusteringSettings& settings,
                                             std::optional<int64_t> expected_etag_seq) override;

  absl::StatusOr<std::optional<int64_t>> ClaimFeedLease(const std::string& project,
                                                        const std::string& owner,
                                                        absl::Duration ttl) override;
  absl::Status ReleaseFeedLease(const std::string& project, const std::string& owner) override;
  absl::StatusOr<CommitOutcome> CommitFeedBatch(const std::string& project,
                                                const std::string& owner,
                                                const FeedBatch& batch) override;
  absl::StatusOr<int64_t> FeedCursor(const std::string& project) override;
  absl::StatusOr<int64_t> CountFlaggedTraces(const std::string& project) override;

  absl::StatusOr<std::optional<ClusteringRecord>> LatestClustering(
      const std::string& project) override;
  absl::StatusOr<ClusteringRecord> GetClustering(const std::string& project,
                                                 int64_t version) override;
  absl::StatusOr<std::vector<ClusteringRecord>> ListClusterings(const std::string& project,
                                                                const std::vector<int>& states,
                                                                const std::vector<int>& triggers,
                                                                int64_t before_version,
                                                                int limit) override;
  absl::StatusOr<CreateResult> CreateClustering(const ClusteringRecord& pending,
                                                int max_on_demand_per_hour) override;
  absl::StatusOr<std::optional<ClusteringRecord>> ClaimPendingClustering(
      const std::string& worker) override;
  absl::StatusOr<bool> UpdateProgress(const std::string& project, int64_t version,
                                      const std::string& worker,
                                      const v1::ClusteringProgress& progress,
                                      const v1::ClusteringParams& params) override;
  absl::Status FailClustering(const std::string& project, int64_t version,
                              const std::string& message) override;
  absl::StatusOr<int> FailStaleClusterings(absl::Duration stale) override;
  absl::StatusOr<std::optional<absl::Time>> LastScheduledTime(const std::string& project) override;
  absl::StatusOr<int64_t> CountClusterings(const std::string& project) override;
  absl::StatusOr<std::vector<TraceRecord>> LoadWindow(const std::string& project, absl::Time start,
                                                      absl::Time end, size_t limit) override;
  absl::Status PublishClustering(
      const std::string& project, int64_t version, const std::string& worker, absl::Time load_time,
      const std::function<absl::StatusOr<PublishPlan>(const PublishContext&)>& plan_fn,
      const LateAssigner& late) override;

  absl::StatusOr<std::optional<ModelRecord>> GetModel(const std::string& project,
                                                      int64_t version) override;
  absl::StatusOr<std::vector<ClusterRecord>> ListClusterRows(const std::string& project,
                                                             int64_t version) override;
  absl::StatusOr<std::optional<ClusterRecord>> GetClusterRow(const std::string& project,
                                                             const std::string& cluster_id,
                                                             int64_t version) override;
  absl::Status UpdateClusterAttributes(const std::string& project, const std::string& cluster_id,
                                       const AttributeUpdate& update) override;
  absl::StatusOr<int64_t> MergeClusters(const std::string& project, int64_t version,
                                        const std::vector<std::string>& sources,
                                        const std::string& target) override;
  absl::Status ApplySplit(const std::string& project, int64_t version,
                          const std::string& cluster_id, const SplitPlan& plan,
                          const std::string& response) override;
  absl::StatusOr<std::optional<SplitRequestRecord>> FindSplitRequest(
      const std::string& project, const std::string& request_id) override;

  absl::StatusOr<std::vector<MemberRecord>> ListMembers(const std::string& project,
                                                        const MemberQuery& query) override;
  absl::StatusOr<std::optional<MembershipRecord>> GetMembership(const std::string& project,
                                                                const std::string& trace_id,
                                                                int64_t version) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListAssignments(
      const std::string& project, int64_t version) override;
  absl::StatusOr<bool> TraceSeen(const std::string& project, const std::string& trace_id) override;
  absl::StatusOr<std::vector<EmbeddedTrace>> LoadEmbedded(
      const std::string& project, int64_t version, const std::vector<std::string>& cluster_ids,
      bool include_unassigned, std::optional<absl::Time> start, std::optional<absl::Time> end,
      bool with_text) override;

  absl::StatusOr<std::vector<StatsRow>> LoadStatsRows(const std::string& project, absl::Time start,
                                                      absl::Time end) override;
  absl::StatusOr<std::vector<std::pair<std::string, absl::Time>>> FirstSeen(
      const std::string& project, const std::vector<std::string>& cluster_ids) override;

 private:
  db::ConnectionPool* const pool_;
  Logger* const logger_;
};

}  // namespace flywheel::clustering
