#pragma once

// Storage of the clustering service (repository interface and domain records). Implemented on
// Postgres by PgClusteringRepository. Methods return UNAVAILABLE when the database is down,
// INTERNAL for anything unexpected; specific codes are listed per method.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/clustering/v1/clustering.pb.h"

namespace flywheel::clustering {

// Signal classes behind a flag (bit set).
inline constexpr int kSignalExplicit = 1;
inline constexpr int kSignalImplicit = 2;
inline constexpr int kSignalOutcome = 4;

// A flagged trace as received from capture's feed.
struct TraceRecord {
  std::string trace_id;
  bool flagged = true;
  int64_t feed_sequence = 0;
  absl::Time flag_time = absl::UnixEpoch();
  absl::Time create_time = absl::UnixEpoch();
  std::string user_key;
  std::string session_id;
  std::string user_id;
  std::string feature_area;
  std::string model;
  std::string model_version;
  std::string prompt_version;
  int signal_classes = 0;
  std::string input_text;
  std::string output_head;
  std::vector<std::string> comments;
};

// A trace's place in one clustering. cluster_id empty: embedded but unassigned.
struct Assignment {
  std::string trace_id;
  std::string cluster_id;
  double similarity = 0;
  std::string nearest_cluster_id;
  v1::AssignmentSource source = v1::ASSIGNMENT_SOURCE_STREAMING;
  std::string embedding;  // packed little-endian float32
};

// One batch of the flagged feed, ready to commit.
struct FeedBatch {
  int64_t expected_cursor = 0;  // the cursor the batch was read after
  int64_t next_cursor = 0;      // the cursor after it
  std::vector<TraceRecord> flagged;
  std::vector<std::string> unflagged;  // trace ids to retract
  // Assignments into `version` (0: no clustering yet, no assignments).
  int64_t version = 0;
  int64_t theme_generation = 0;
  std::vector<Assignment> assignments;
};

enum class CommitOutcome {
  kCommitted,
  kLostLease,     // another replica owns the project or moved the cursor: batch dropped
  kStaleVersion,  // a clustering was published (or themes merged/split) meanwhile: recompute
};

struct ClusteringRecord {
  std::string project_id;
  int64_t version = 0;
  v1::ClusteringState state = v1::CLUSTERING_STATE_PENDING;
  v1::ClusteringTrigger trigger = v1::CLUSTERING_TRIGGER_ON_DEMAND;
  std::string request_id;
  std::string request_hash;
  absl::Time create_time = absl::UnixEpoch();
  std::optional<absl::Time> start_time;
  std::optional<absl::Time> end_time;
  absl::Time window_start = absl::UnixEpoch();
  absl::Time window_end = absl::UnixEpoch();
  v1::ClusteringParams params;
  v1::ClusteringProgress progress;
  int64_t member_count = 0;
  int64_t unassigned_count = 0;
  int64_t streaming_assigned_count = 0;  // computed on read
  int32_t theme_count = 0;
  int32_t hidden_theme_count = 0;
  int32_t group_count = 0;
  int32_t matched_count = 0;
  int32_t new_count = 0;
  int32_t retired_count = 0;
  int64_t previous_version = 0;
  std::string error_message;
  int64_t theme_generation = 0;
};

// Result of CreateClustering.
struct CreateResult {
  ClusteringRecord clustering;
  bool started = false;
};

// A cluster row (per-version attributes joined with the stable id's operator attributes and the
// live member counts).
struct ClusterRecord {
  std::string cluster_id;
  int64_t version = 0;
  v1::ClusterLevel level = v1::CLUSTER_LEVEL_THEME;
  v1::ClusterState state = v1::CLUSTER_STATE_ACTIVE;          // of this row
  v1::ClusterState current_state = v1::CLUSTER_STATE_ACTIVE;  // of the id now
  std::string parent_id;
  std::string name;  // generated
  std::string description;
  std::vector<std::pair<std::string, double>> keywords;
  std::vector<std::string> key_phrases;
  struct Example {
    std::string trace_id;
    std::string snippet;
    double similarity = 0;
  };
  std::vector<Example> examples;
  std::string centroid;  // packed float32
  absl::Time update_time = absl::UnixEpoch();
  // Stable attributes.
  std::optional<std::string> operator_name;
  bool name_pinned = false;
  std::optional<std::string> operator_description;
  std::string merged_into;
  std::vector<std::string> split_into;
  int64_t created_version = 0;
  int64_t last_seen_version = 0;
  int64_t etag_seq = 0;
  absl::Time stable_update_time = absl::UnixEpoch();
  // Live counts in `version` (themes only; groups are summed by the logic).
  int64_t member_count = 0;
  int64_t distinct_users = 0;
  // For groups: users of all child themes (exact union), filled by ListClusterRows.
};

struct ModelRecord {
  std::string embedder_name;
  std::string embedder_id;
  int dimension = 0;
  std::string model;
};

// A member listing row.
struct MemberRecord {
  std::string trace_id;
  std::string cluster_id;
  double similarity = 0;
  absl::Time assign_time = absl::UnixEpoch();
  v1::AssignmentSource source = v1::ASSIGNMENT_SOURCE_UNSPECIFIED;
  absl::Time trace_create_time = absl::UnixEpoch();
};

struct MemberQuery {
  int64_t version = 0;
  std::vector<std::string> cluster_ids;  // themes
  v1::MemberOrder order = v1::MEMBER_ORDER_SIMILARITY_DESC;
  v1::AssignmentSource source = v1::ASSIGNMENT_SOURCE_UNSPECIFIED;
  // Keyset position (exclusive): (similarity or assign_time micros, trace_id).
  std::optional<std::pair<double, std::string>> after_similarity;
  std::optional<std::pair<int64_t, std::string>> after_assign_micros;
  int limit = 50;
};

struct MembershipRecord {
  int64_t version = 0;
  std::string cluster_id;  // empty: unassigned
  double similarity = 0;
  std::string nearest_cluster_id;
  v1::AssignmentSource source = v1::ASSIGNMENT_SOURCE_UNSPECIFIED;
  absl::Time assign_time = absl::UnixEpoch();
  std::string embedding;
};

// One flagged trace in a stats range, with the theme of its newest membership.
struct StatsRow {
  std::string trace_id;
  absl::Time create_time = absl::UnixEpoch();
  std::string user_key;
  int signal_classes = 0;
  std::string feature_area;
  std::string model_version;
  std::string prompt_version;
  std::string cluster_id;  // empty: unassigned
};

// An embedded trace of a clustering (similarity search, splits).
struct EmbeddedTrace {
  std::string trace_id;
  std::string cluster_id;
  std::string embedding;
  absl::Time create_time = absl::UnixEpoch();
  std::string user_key;
  std::string text;  // input text (for naming), filled only when asked
};

// What a publishing job sees, read inside the publish transaction.
struct PublishContext {
  int64_t previous_version = 0;  // 0: first clustering
  // Previous latest's memberships (assigned only): trace_id -> cluster_id.
  std::vector<std::pair<std::string, std::string>> previous_members;
  // Previous latest's ACTIVE themes and groups.
  std::vector<ClusterRecord> previous_clusters;
  // Members that merged sources held in the previous latest when they were merged:
  // (trace_id, source_id, id the source now redirects to).
  struct MergedMember {
    std::string trace_id;
    std::string source_id;
    std::string target_id;
  };
  std::vector<MergedMember> merged_members;
};

// What a publishing job writes.
struct PublishPlan {
  ModelRecord model;
  std::vector<ClusterRecord> clusters;  // new rows (state ACTIVE); new ids have created_version
  std::vector<std::string> new_ids;     // ids to create in clustering.clusters
  std::vector<std::string> retired_ids;
  // Merged sources re-formed by this clustering (sticky merges): rows written in state MERGED.
  std::vector<std::string> refolded_ids;
  std::vector<Assignment> assignments;  // RECLUSTER assignments (assigned and unassigned)
  int64_t member_count = 0;
  int64_t unassigned_count = 0;
  int32_t theme_count = 0;
  int32_t hidden_theme_count = 0;
  int32_t group_count = 0;
  int32_t matched_count = 0;
  v1::ClusteringParams params;
};

// Late traces (arrived while a job ran) to assign with the new model during publish.
using LateAssigner = std::function<absl::StatusOr<std::vector<Assignment>>(
    const std::vector<TraceRecord>& late, const PublishPlan& plan)>;

struct SettingsRecord {
  v1::ClusteringSettings settings;  // as stored (without defaults)
  int64_t etag_seq = 0;
  absl::Time update_time = absl::UnixEpoch();
};

struct AttributeUpdate {
  std::optional<int64_t> expected_etag_seq;
  bool set_name = false;
  std::optional<std::string> name;  // operator name; nullopt clears it
  bool set_name_pinned = false;
  bool name_pinned = false;
  bool set_description = false;
  std::optional<std::string> description;  // nullopt: back to the generated one
};

struct SplitRequestRecord {
  std::string cluster_id;
  int32_t k = 0;
  std::string response;  // serialized SplitClusterResponse
};

struct SplitPlan {
  std::vector<ClusterRecord> children;
  std::vector<Assignment> assignments;  // source OPERATOR
  std::string request_id;
  int32_t k = 0;
};

class ClusteringRepository {
 public:
  virtual ~ClusteringRepository() = default;

  // ---- settings
  virtual absl::StatusOr<std::optional<SettingsRecord>> GetSettings(const std::string& project) = 0;
  // ABORTED when expected_etag_seq is set and differs.
  virtual absl::StatusOr<SettingsRecord> PutSettings(const std::string& project,
                                                     const v1::ClusteringSettings& settings,
                                                     std::optional<int64_t> expected_etag_seq) = 0;

  // ---- feed
  // Takes (or renews) the project's feed lease for `owner`. Returns the cursor, or nullopt when
  // another owner holds an unexpired lease.
  virtual absl::StatusOr<std::optional<int64_t>> ClaimFeedLease(const std::string& project,
                                                                const std::string& owner,
                                                                absl::Duration ttl) = 0;
  virtual absl::Status ReleaseFeedLease(const std::string& project, const std::string& owner) = 0;
  // In one transaction: checks the lease and the cursor (compare-and-set), checks that `version`
  // is still the latest with the same theme generation, upserts the traces, retracts unflagged
  // ones, upserts the assignments and advances the cursor.
  virtual absl::StatusOr<CommitOutcome> CommitFeedBatch(const std::string& project,
                                                        const std::string& owner,
                                                        const FeedBatch& batch) = 0;
  virtual absl::StatusOr<int64_t> FeedCursor(const std::string& project) = 0;
  virtual absl::StatusOr<int64_t> CountFlaggedTraces(const std::string& project) = 0;

  // ---- clusterings
  // Latest SUCCEEDED clustering (nullopt when none).
  virtual absl::StatusOr<std::optional<ClusteringRecord>> LatestClustering(
      const std::string& project) = 0;
  // NOT_FOUND when unknown.
  virtual absl::StatusOr<ClusteringRecord> GetClustering(const std::string& project,
                                                         int64_t version) = 0;
  // Newest first, versions below `before_version` (0: no bound).
  virtual absl::StatusOr<std::vector<ClusteringRecord>> ListClusterings(
      const std::string& project, const std::vector<int>& states, const std::vector<int>& triggers,
      int64_t before_version, int limit) = 0;
  // Creates a PENDING clustering unless one is PENDING/RUNNING (returned with started=false) or
  // the request_id was used within 24 h (the first clustering, with started=true; ALREADY_EXISTS
  // if the request_hash differs). RESOURCE_EXHAUSTED when `max_on_demand_per_hour` on-demand
  // jobs were created in the last hour (ON_DEMAND only).
  virtual absl::StatusOr<CreateResult> CreateClustering(const ClusteringRecord& pending,
                                                        int max_on_demand_per_hour) = 0;
  // Claims the oldest PENDING clustering of any project for `worker` (state RUNNING).
  virtual absl::StatusOr<std::optional<ClusteringRecord>> ClaimPendingClustering(
      const std::string& worker) = 0;
  // Heartbeat and progress; false when the job is no longer this worker's RUNNING job.
  virtual absl::StatusOr<bool> UpdateProgress(const std::string& project, int64_t version,
                                              const std::string& worker,
                                              const v1::ClusteringProgress& progress,
                                              const v1::ClusteringParams& params) = 0;
  virtual absl::Status FailClustering(const std::string& project, int64_t version,
                                      const std::string& message) = 0;
  // Marks RUNNING jobs whose heartbeat is older than `stale` as FAILED. Returns how many.
  virtual absl::StatusOr<int> FailStaleClusterings(absl::Duration stale) = 0;
  // When the project's last SCHEDULED clustering was created (nullopt: never).
  virtual absl::StatusOr<std::optional<absl::Time>> LastScheduledTime(
      const std::string& project) = 0;
  // Every clustering of the project has ended? (no PENDING/RUNNING job and none ever).
  virtual absl::StatusOr<int64_t> CountClusterings(const std::string& project) = 0;

  // Flagged traces created in [start, end), oldest first.
  virtual absl::StatusOr<std::vector<TraceRecord>> LoadWindow(const std::string& project,
                                                              absl::Time start, absl::Time end,
                                                              size_t limit) = 0;
  // Publishes a RUNNING clustering owned by `worker`: under the project's publish lock, reads
  // the then-latest clustering (`plan_fn` builds the plan from it), writes clusters, the model
  // and memberships, assigns late traces (flagged, seen since `load_time` - 1 min, without a
  // membership in the new version) with `late`, and marks the clustering SUCCEEDED.
  // FAILED_PRECONDITION when the job is no longer this worker's.
  virtual absl::Status PublishClustering(
      const std::string& project, int64_t version, const std::string& worker, absl::Time load_time,
      const std::function<absl::StatusOr<PublishPlan>(const PublishContext&)>& plan_fn,
      const LateAssigner& late) = 0;

  // ---- models and clusters
  virtual absl::StatusOr<std::optional<ModelRecord>> GetModel(const std::string& project,
                                                              int64_t version) = 0;
  // Every row of `version` (any state) with live counts; groups carry the union of their
  // themes' users in distinct_users and the sum of their members in member_count.
  virtual absl::StatusOr<std::vector<ClusterRecord>> ListClusterRows(const std::string& project,
                                                                     int64_t version) = 0;
  // One row: of `version`, or the newest one when version is 0. nullopt when none.
  virtual absl::StatusOr<std::optional<ClusterRecord>> GetClusterRow(const std::string& project,
                                                                     const std::string& cluster_id,
                                                                     int64_t version) = 0;
  // Sets operator attributes. ABORTED on etag mismatch. NOT_FOUND when unknown.
  virtual absl::Status UpdateClusterAttributes(const std::string& project,
                                               const std::string& cluster_id,
                                               const AttributeUpdate& update) = 0;
  // Merges `sources` into `target` in `version` (must be the latest): moves members, marks the
  // sources MERGED, re-parents themes of merged groups. Returns members moved. ABORTED when
  // `version` is no longer the latest.
  virtual absl::StatusOr<int64_t> MergeClusters(const std::string& project, int64_t version,
                                                const std::vector<std::string>& sources,
                                                const std::string& target) = 0;
  // Applies a split in `version` (must be the latest; ABORTED otherwise): children rows and ids,
  // member moves, the source SPLIT. Stores `response` for the request id when non-empty.
  virtual absl::Status ApplySplit(const std::string& project, int64_t version,
                                  const std::string& cluster_id, const SplitPlan& plan,
                                  const std::string& response) = 0;
  // A stored split response (24 h); nullopt when none.
  virtual absl::StatusOr<std::optional<SplitRequestRecord>> FindSplitRequest(
      const std::string& project, const std::string& request_id) = 0;

  // ---- members
  virtual absl::StatusOr<std::vector<MemberRecord>> ListMembers(const std::string& project,
                                                                const MemberQuery& query) = 0;
  // The trace's membership in `version`; nullopt when none.
  virtual absl::StatusOr<std::optional<MembershipRecord>> GetMembership(const std::string& project,
                                                                        const std::string& trace_id,
                                                                        int64_t version) = 0;
  // Assigned members of `version`: (trace_id, cluster_id).
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListAssignments(
      const std::string& project, int64_t version) = 0;
  virtual absl::StatusOr<bool> TraceSeen(const std::string& project,
                                         const std::string& trace_id) = 0;
  // Embedded traces of `version`: of `cluster_ids` (empty: all assigned), plus the unassigned
  // ones when include_unassigned; optionally only created in [start, end).
  virtual absl::StatusOr<std::vector<EmbeddedTrace>> LoadEmbedded(
      const std::string& project, int64_t version, const std::vector<std::string>& cluster_ids,
      bool include_unassigned, std::optional<absl::Time> start, std::optional<absl::Time> end,
      bool with_text) = 0;

  // ---- stats
  virtual absl::StatusOr<std::vector<StatsRow>> LoadStatsRows(const std::string& project,
                                                              absl::Time start, absl::Time end) = 0;
  // Creation time of each cluster's earliest member (any version).
  virtual absl::StatusOr<std::vector<std::pair<std::string, absl::Time>>> FirstSeen(
      const std::string& project, const std::vector<std::string>& cluster_ids) = 0;
};

}  // namespace flywheel::clustering
