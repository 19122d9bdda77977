#pragma once

// What the annotation service needs from the other Flywheel services, as interfaces over their
// gRPC APIs (capture, clustering, eval-set). The service's logic depends on these interfaces
// only; upstream_grpc.h implements them over gRPC and upstream_fakes.h in memory for tests.
//
// Every call names the project it acts for (CallScope). Implementations authenticate with the
// deployment's service key plus the project (auth::AttachServiceKey), or forward a caller's own
// `authorization` value when the scope carries one. Errors are the upstream's status codes as
// they came back (UNAVAILABLE when unreachable, DEADLINE_EXCEEDED past the per-call deadline),
// with messages prefixed by the service name ("capture: ..."); callers decide what reaches their
// own clients. A missing service key is UNAVAILABLE (retry once it is configured).

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/annotation/v1/annotation.pb.h"
#include "flywheel/capture/v1/capture.pb.h"
#include "flywheel/clustering/v1/clustering.pb.h"
#include "flywheel/evalset/v1/evalset.pb.h"

namespace flywheel::annotation {

// Whom an upstream call acts for.
struct CallScope {
  // Required: the project (sent as x-flywheel-project with the service key).
  std::string project_id;
  // Optional: a caller's `authorization` metadata value ("Bearer <key>") to forward instead of
  // the service key (synchronous requests made on a user's behalf). The key must then hold the
  // upstream RPC's scope itself.
  std::string forwarded_authorization;
};

// ---------------------------------------------------------------------------------------------
// Capture

struct FlaggedFeedPage {
  // In sequence order (FLAGGED entries carry a TraceSummary; UNFLAGGED ones do not).
  std::vector<::flywheel::capture::v1::FlaggedFeedEntry> entries;
  // Cursor for the next read: the last entry's sequence, or the request's after_sequence.
  int64_t next_after_sequence = 0;
  int64_t high_water_mark = 0;
  int64_t oldest_sequence = 0;
};

// One trace as GetTraces found it.
struct FetchedTrace {
  std::string trace_id;
  // OK, NOT_FOUND (capture has no such trace in this project) or the error of this trace's call
  // (UNAVAILABLE, DEADLINE_EXCEEDED, ...). The other fields are set only when OK.
  absl::Status status;
  // Trace, signals (at most 50, most recent first, with counts of all) and label, as of
  // `snapshot_time`; cluster_id/cluster_name are left empty (they come from clustering).
  ::flywheel::annotation::v1::TraceSnapshot snapshot;
  // Every signal kind present on the trace (raw and derived), capture's lower_snake_case names,
  // sorted and distinct (for SourceRule.signal_kinds).
  std::vector<std::string> signal_kinds;
};

// Half-open window on trace start time; unset bounds are unbounded.
struct TimeWindow {
  std::optional<absl::Time> start;
  std::optional<absl::Time> end;
};

// A trace drawn for the random baseline.
struct SampledTrace {
  std::string trace_id;
  std::string feature_area;
  absl::Time create_time;
};

class CaptureUpstream {
 public:
  virtual ~CaptureUpstream() = default;

  // capture ReadFlaggedFeed: entries with sequence > after_sequence, at most `limit` (1..1000).
  virtual absl::StatusOr<FlaggedFeedPage> ReadFlaggedFeed(const CallScope& scope,
                                                          int64_t after_sequence, int limit) = 0;

  // capture GetTrace for each id (at most 1000 ids per call), one FetchedTrace per id in request
  // order. The call as a whole fails only when nothing could be asked (e.g. no credentials);
  // per-trace failures are reported per trace.
  virtual absl::StatusOr<std::vector<FetchedTrace>> GetTraces(
      const CallScope& scope, const std::vector<std::string>& trace_ids) = 0;

  // Up to `n` distinct traces of the project, flagged or not, drawn at random from `window`
  // (seeded). Capture has no sampling RPC: the gRPC implementation samples through ListTraces
  // (see upstream_grpc.h for how, and its bias).
  virtual absl::StatusOr<std::vector<SampledTrace>> SampleTraces(const CallScope& scope,
                                                                 const TimeWindow& window, int n,
                                                                 uint64_t seed) = 0;
};

// ---------------------------------------------------------------------------------------------
// Clustering

struct ClusterMembersPage {
  std::vector<::flywheel::clustering::v1::ClusterMember> members;
  std::string next_page_token;
  int64_t clustering_version = 0;
};

class ClusteringUpstream {
 public:
  virtual ~ClusteringUpstream() = default;

  // clustering GetTraceAssignment in the latest clustering (never NOT_FOUND for a trace:
  // ASSIGNMENT_STATE_NOT_SEEN).
  virtual absl::StatusOr<::flywheel::clustering::v1::GetTraceAssignmentResponse> GetTraceAssignment(
      const CallScope& scope, const std::string& trace_id) = 0;

  // clustering ListClusterMembers of the latest clustering, one page (page_size 1..1000).
  virtual absl::StatusOr<ClusterMembersPage> ListClusterMembers(const CallScope& scope,
                                                                const std::string& cluster_id,
                                                                const std::string& page_token,
                                                                int page_size) = 0;

  // clustering NearestClusters for up to 100 texts (top_k 1..20): one result per text, in
  // order (each with its own code). FAILED_PRECONDITION while no clustering has succeeded.
  virtual absl::StatusOr<std::vector<::flywheel::clustering::v1::NearestClustersResult>>
  NearestClusters(const CallScope& scope, const std::vector<std::string>& texts, int top_k) = 0;

  // clustering GetCluster (newest row): for merged ids, merged_into_cluster_id names the target.
  virtual absl::StatusOr<::flywheel::clustering::v1::Cluster> GetCluster(
      const CallScope& scope, const std::string& cluster_id) = 0;
};

// ---------------------------------------------------------------------------------------------
// Eval-set

class EvalSetUpstream {
 public:
  virtual ~EvalSetUpstream() = default;

  // eval-set AddCases (1..500 cases). Promotion sets case_key = annotation id on every case, so
  // a retry is a DUPLICATE whose ItemResult.id is the existing case id. Per-item outcomes are in
  // the response; the status is the whole call's.
  virtual absl::StatusOr<::flywheel::evalset::v1::AddCasesResponse> AddCases(
      const CallScope& scope, const std::string& eval_set_id,
      const std::vector<::flywheel::evalset::v1::Case>& cases, const std::string& change_note) = 0;

  // eval-set UpdateCase of eval_case.case_id with the given mask paths (re-delivery of a newer
  // annotation revision: expected_output, theme, metadata).
  virtual absl::StatusOr<::flywheel::evalset::v1::UpdateCaseResponse> UpdateCase(
      const CallScope& scope, const std::string& eval_set_id,
      const ::flywheel::evalset::v1::Case& eval_case, const std::vector<std::string>& paths,
      const std::string& change_note) = 0;

  // eval-set FindNearestCases for up to 100 texts in `eval_set_ids` (empty: every active set of
  // the project), k 1..50: one NearestCases per text, in order.
  virtual absl::StatusOr<std::vector<::flywheel::evalset::v1::NearestCases>> FindNearestCases(
      const CallScope& scope, const std::vector<std::string>& texts,
      const std::vector<std::string>& eval_set_ids, int k) = 0;
};

// Novelty of one text from its nearest cases: 1 - the highest similarity (clamped to [0, 1]);
// 1 when there are no matches.
inline double NoveltyFromNearest(const ::flywheel::evalset::v1::NearestCases& nearest) {
  double best = 0;
  for (const auto& match : nearest.matches()) best = std::max(best, match.similarity());
  best = std::min(1.0, std::max(0.0, best));
  return 1.0 - best;
}

}  // namespace flywheel::annotation
