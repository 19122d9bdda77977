// Clusterings (versions), TriggerRecluster and settings.

#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"
#include "services/clustering/clustering_logic.h"
#include "services/clustering/engine/engine.h"
#include "services/clustering/util.h"

namespace flywheel::clustering {
namespace {

constexpr int kDefaultMinUsers = 5;
constexpr double kDefaultAssignment = 0.3;
constexpr double kDefaultIdStability = 0.7;
constexpr absl::Duration kDefaultInterval = absl::Hours(24);
constexpr absl::Duration kDefaultWindow = absl::Hours(24 * 30);
constexpr int kDefaultMaxK = 50;
constexpr int kDefaultDimension = 256;
constexpr int kDefaultKeywords = 10;

v1::Clustering ClusteringToProto(const ClusteringRecord& c) {
  v1::Clustering out;
  out.set_version(c.version);
  out.set_state(c.state);
  out.set_trigger(c.trigger);
  *out.mutable_create_time() = ToProtoTime(c.create_time);
  if (c.start_time) *out.mutable_start_time() = ToProtoTime(*c.start_time);
  if (c.end_time) *out.mutable_end_time() = ToProtoTime(*c.end_time);
  *out.mutable_window()->mutable_start_time() = ToProtoTime(c.window_start);
  *out.mutable_window()->mutable_end_time() = ToProtoTime(c.window_end);
  *out.mutable_params() = c.params;
  *out.mutable_progress() = c.progress;
  out.set_member_count(c.member_count);
  out.set_unassigned_count(c.unassigned_count);
  out.set_streaming_assigned_count(c.streaming_assigned_count);
  out.set_theme_count(c.theme_count);
  out.set_hidden_theme_count(c.hidden_theme_count);
  out.set_group_count(c.group_count);
  out.set_matched_cluster_count(c.matched_count);
  out.set_new_cluster_count(c.new_count);
  out.set_retired_cluster_count(c.retired_count);
  out.set_previous_version(c.previous_version);
  out.set_error_message(c.error_message);
  out.set_request_id(c.request_id);
  return out;
}

absl::Status ValidateSettings(const v1::ClusteringSettings& s) {
  if (s.min_distinct_users() < 0 || s.min_distinct_users() > 1000) {
    return absl::InvalidArgumentError("min_distinct_users: must be in 1..1000");
  }
  if (s.assignment_similarity_threshold() < 0 || s.assignment_similarity_threshold() > 1 ||
      std::isnan(s.assignment_similarity_threshold())) {
    return absl::InvalidArgumentError("assignment_similarity_threshold: must be in (0, 1]");
  }
  if (s.id_stability_threshold() != 0 &&
      (s.id_stability_threshold() < 0.5 || s.id_stability_threshold() > 1 ||
       std::isnan(s.id_stability_threshold()))) {
    return absl::InvalidArgumentError("id_stability_threshold: must be in [0.5, 1]");
  }
  if (s.has_recluster_interval()) {
    const absl::Duration d = FromProtoDuration(s.recluster_interval());
    if (d != absl::ZeroDuration() && (d < absl::Hours(1) || d > absl::Hours(24 * 30))) {
      return absl::InvalidArgumentError("recluster_interval: must be 0 or 1 h..30 days");
    }
  }
  if (s.has_recluster_window()) {
    const absl::Duration d = FromProtoDuration(s.recluster_window());
    if (d != absl::ZeroDuration() && (d < absl::Hours(24) || d > absl::Hours(24 * 365))) {
      return absl::InvalidArgumentError("recluster_window: must be 1..365 days");
    }
  }
  if (s.target_k() != 0 && (s.target_k() < 2 || s.target_k() > 500)) {
    return absl::InvalidArgumentError("target_k: must be 0 or 2..500");
  }
  if (s.max_k() != 0 && (s.max_k() < 2 || s.max_k() > 500)) {
    return absl::InvalidArgumentError("max_k: must be in 2..500");
  }
  if (!v1::ClusteringAlgorithm_IsValid(s.algorithm())) {
    return absl::InvalidArgumentError("algorithm: unknown value");
  }
  if (s.embedder().has_openai_compatible()) {
    return absl::UnimplementedError(
        "embedder.openai_compatible: not implemented yet (the builtin embedder is used)");
  }
  if (s.embedder().has_builtin()) {
    const int d = s.embedder().builtin().dimension();
    if (d != 0 && (d < 64 || d > 1024)) {
      return absl::InvalidArgumentError("embedder.builtin.dimension: must be in 64..1024");
    }
  }
  if (s.namer().has_openai_compatible()) {
    return absl::UnimplementedError(
        "namer.openai_compatible: not implemented yet (the builtin namer is used)");
  }
  if (s.namer().has_builtin()) {
    const int k = s.namer().builtin().keyword_count();
    if (k != 0 && (k < 3 || k > 10)) {
      return absl::InvalidArgumentError("namer.builtin.keyword_count: must be in 3..10");
    }
  }
  return absl::OkStatus();
}

}  // namespace

v1::ClusteringSettings WithDefaults(const v1::ClusteringSettings& stored) {
  v1::ClusteringSettings s = stored;
  if (s.min_distinct_users() == 0) s.set_min_distinct_users(kDefaultMinUsers);
  if (s.assignment_similarity_threshold() == 0) {
    s.set_assignment_similarity_threshold(kDefaultAssignment);
  }
  if (s.id_stability_threshold() == 0) s.set_id_stability_threshold(kDefaultIdStability);
  if (!s.has_recluster_interval()) {
    *s.mutable_recluster_interval() = ToProtoDuration(kDefaultInterval);
  }
  if (!s.has_recluster_window() ||
      FromProtoDuration(s.recluster_window()) == absl::ZeroDuration()) {
    *s.mutable_recluster_window() = ToProtoDuration(kDefaultWindow);
  }
  if (s.max_k() == 0) s.set_max_k(kDefaultMaxK);
  if (s.algorithm() == v1::CLUSTERING_ALGORITHM_UNSPECIFIED) {
    s.set_algorithm(v1::CLUSTERING_ALGORITHM_SPHERICAL_KMEANS);
  }
  if (!s.embedder().has_builtin() && !s.embedder().has_openai_compatible()) {
    s.mutable_embedder()->mutable_builtin();
  }
  if (s.embedder().has_builtin() && s.embedder().builtin().dimension() == 0) {
    s.mutable_embedder()->mutable_builtin()->set_dimension(kDefaultDimension);
  }
  if (!s.namer().has_builtin() && !s.namer().has_openai_compatible()) {
    s.mutable_namer()->mutable_builtin();
  }
  if (s.namer().has_builtin() && s.namer().builtin().keyword_count() == 0) {
    s.mutable_namer()->mutable_builtin()->set_keyword_count(kDefaultKeywords);
  }
  return s;
}

v1::ClusteringParams ParamsFor(const v1::ClusteringSettings& settings, int requested_k) {
  v1::ClusteringParams params;
  params.set_algorithm(settings.algorithm());
  params.set_requested_k(requested_k);
  params.set_max_k(settings.max_k());
  params.set_embedder_name(std::string(engine::BuiltinEmbedder::kName));
  params.set_embedder_dimension(settings.embedder().builtin().dimension());
  params.set_namer_name("builtin-ctfidf-v1");
  params.set_assignment_similarity_threshold(settings.assignment_similarity_threshold());
  params.set_id_stability_threshold(settings.id_stability_threshold());
  params.set_min_distinct_users(settings.min_distinct_users());
  params.set_seed(static_cast<int64_t>(std::random_device{}() & 0x7fffffff));
  return params;
}

ClusteringLogic::ClusteringLogic(ClusteringRepository* repository, ThemeIndexCache* cache,
                                 LogicOptions options)
    : repository_(repository), cache_(cache), options_(std::move(options)) {}

absl::StatusOr<v1::ClusteringSettings> ClusteringLogic::EffectiveSettings(
    const std::string& project) {
  ASSIGN_OR_RETURN(std::optional<SettingsRecord> stored, repository_->GetSettings(project));
  v1::ClusteringSettings s = WithDefaults(stored ? stored->settings : v1::ClusteringSettings());
  s.set_etag(absl::StrCat(stored ? stored->etag_seq : 0));
  if (stored) *s.mutable_update_time() = ToProtoTime(stored->update_time);
  return s;
}

absl::StatusOr<v1::GetClusteringSettingsResponse> ClusteringLogic::GetClusteringSettings(
    const std::string& project, const v1::GetClusteringSettingsRequest&) {
  v1::GetClusteringSettingsResponse response;
  ASSIGN_OR_RETURN(*response.mutable_settings(), EffectiveSettings(project));
  return response;
}

absl::StatusOr<v1::UpdateClusteringSettingsResponse> ClusteringLogic::UpdateClusteringSettings(
    const std::string& project, const v1::UpdateClusteringSettingsRequest& request) {
  if (request.update_mask().paths_size() == 0) {
    return absl::InvalidArgumentError("update_mask: required");
  }
  std::optional<int64_t> expected;
  if (!request.etag().empty()) {
    int64_t seq = 0;
    if (!absl::SimpleAtoi(request.etag(), &seq)) return absl::AbortedError("etag mismatch");
    expected = seq;
  }
  ASSIGN_OR_RETURN(std::optional<SettingsRecord> stored, repository_->GetSettings(project));
  v1::ClusteringSettings next = stored ? stored->settings : v1::ClusteringSettings();
  const v1::ClusteringSettings& in = request.settings();
  for (const std::string& path : request.update_mask().paths()) {
    if (path == "min_distinct_users") {
      next.set_min_distinct_users(in.min_distinct_users());
    } else if (path == "assignment_similarity_threshold") {
      next.set_assignment_similarity_threshold(in.assignment_similarity_threshold());
    } else if (path == "id_stability_threshold") {
      next.set_id_stability_threshold(in.id_stability_threshold());
    } else if (path == "recluster_interval") {
      if (in.has_recluster_interval()) {
        *next.mutable_recluster_interval() = in.recluster_interval();
      } else {
        next.clear_recluster_interval();
      }
    } else if (path == "recluster_window") {
      if (in.has_recluster_window()) {
        *next.mutable_recluster_window() = in.recluster_window();
      } else {
        next.clear_recluster_window();
      }
    } else if (path == "target_k") {
      next.set_target_k(in.target_k());
    } else if (path == "max_k") {
      next.set_max_k(in.max_k());
    } else if (path == "algorithm") {
      next.set_algorithm(in.algorithm());
    } else if (path == "embedder") {
      *next.mutable_embedder() = in.embedder();
    } else if (path == "namer") {
      *next.mutable_namer() = in.namer();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("update_mask: unknown path \"", path, "\""));
    }
  }
  RETURN_IF_ERROR(ValidateSettings(next));
  next.clear_update_time();
  next.clear_etag();
  if (!expected.has_value() && stored.has_value()) {
    // No etag given: last writer wins, but never over a concurrent write between our read and
    // write of the unmasked fields.
    expected = stored->etag_seq;
  } else if (!expected.has_value()) {
    expected = 0;
  }
  ASSIGN_OR_RETURN(SettingsRecord saved, repository_->PutSettings(project, next, expected));
  v1::UpdateClusteringSettingsResponse response;
  *response.mutable_settings() = WithDefaults(saved.settings);
  response.mutable_settings()->set_etag(absl::StrCat(saved.etag_seq));
  *response.mutable_settings()->mutable_update_time() = ToProtoTime(saved.update_time);
  return response;
}

absl::StatusOr<ClusteringRecord> ClusteringLogic::ResolveClustering(const std::string& project,
                                                                    int64_t version,
                                                                    bool require_succeeded) {
  if (version < 0) return absl::InvalidArgumentError("clustering_version: must be >= 0");
  if (version == 0) {
    ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest,
                     repository_->LatestClustering(project));
    if (!latest.has_value()) {
      return absl::FailedPreconditionError("no clustering has succeeded yet");
    }
    return *latest;
  }
  ASSIGN_OR_RETURN(ClusteringRecord c, repository_->GetClustering(project, version));
  if (require_succeeded && c.state != v1::CLUSTERING_STATE_SUCCEEDED) {
    return absl::FailedPreconditionError("the clustering has not succeeded");
  }
  return c;
}

absl::StatusOr<v1::ListClusteringsResponse> ClusteringLogic::ListClusterings(
    const std::string& project, const v1::ListClusteringsRequest& request) {
  ASSIGN_OR_RETURN(const int page_size, ResolvePageSize(request.page_size(), 200));
  std::vector<int> states, triggers;
  for (int s : request.states()) {
    if (!v1::ClusteringState_IsValid(s) || s == 0) {
      return absl::InvalidArgumentError("states: unknown value");
    }
    states.push_back(s);
  }
  for (int t : request.triggers()) {
    if (!v1::ClusteringTrigger_IsValid(t) || t == 0) {
      return absl::InvalidArgumentError("triggers: unknown value");
    }
    triggers.push_back(t);
  }
  const std::string fingerprint =
      Fingerprint(absl::StrCat(absl::StrJoin(states, ","), "|", absl::StrJoin(triggers, ",")));
  int64_t before = 0;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(
        std::vector<std::string> position,
        DecodePageToken(request.page_token(), "clusterings", fingerprint, options_.now()));
    if (position.size() != 1 || !absl::SimpleAtoi(position[0], &before) || before <= 0) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
  }
  ASSIGN_OR_RETURN(std::vector<ClusteringRecord> rows,
                   repository_->ListClusterings(project, states, triggers, before, page_size + 1));
  v1::ListClusteringsResponse response;
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < page_size; ++i) {
    *response.add_clusterings() = ClusteringToProto(rows[i]);
  }
  if (static_cast<int>(rows.size()) > page_size) {
    response.set_next_page_token(EncodePageToken(
        "clusterings", fingerprint, {absl::StrCat(rows[page_size - 1].version)}, options_.now()));
  }
  ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest, repository_->LatestClustering(project));
  response.set_latest_version(latest ? latest->version : 0);
  return response;
}

absl::StatusOr<v1::GetClusteringResponse> ClusteringLogic::GetClustering(
    const std::string& project, const v1::GetClusteringRequest& request) {
  if (request.version() < 0) return absl::InvalidArgumentError("version: must be >= 0");
  ASSIGN_OR_RETURN(ClusteringRecord c, ResolveClustering(project, request.version(), false));
  v1::GetClusteringResponse response;
  *response.mutable_clustering() = ClusteringToProto(c);
  return response;
}

absl::StatusOr<v1::TriggerReclusterResponse> ClusteringLogic::TriggerRecluster(
    const std::string& project, const v1::TriggerReclusterRequest& request) {
  if (!request.request_id().empty() && !IsValidRequestId(request.request_id())) {
    return absl::InvalidArgumentError("request_id: 1..128 bytes of [A-Za-z0-9._:-]");
  }
  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, EffectiveSettings(project));
  const absl::Time now = options_.now();
  absl::Time start, end;
  std::string canonical;
  if (request.has_window()) {
    if (!request.window().has_start_time() || !request.window().has_end_time()) {
      return absl::InvalidArgumentError("window: both bounds are required");
    }
    start = FromProtoTime(request.window().start_time());
    end = FromProtoTime(request.window().end_time());
    if (end < start) return absl::InvalidArgumentError("window: end before start");
    if (end > now + absl::Minutes(1)) return absl::InvalidArgumentError("window: end after now");
    if (end - start > absl::Hours(24 * 365)) {
      return absl::InvalidArgumentError("window: longer than 365 days");
    }
    canonical = absl::StrCat(absl::ToUnixMicros(start), "-", absl::ToUnixMicros(end));
  } else {
    end = now;
    start = now - FromProtoDuration(settings.recluster_window());
    canonical = "default";
  }
  int k = settings.target_k();
  if (request.has_k()) {
    k = request.k();
    if (k != 0 && (k < 2 || k > 500)) return absl::InvalidArgumentError("k: must be 0 or 2..500");
    absl::StrAppend(&canonical, "|k=", k);
  } else {
    absl::StrAppend(&canonical, "|k=default");
  }
  ClusteringRecord pending;
  pending.project_id = project;
  pending.trigger = v1::CLUSTERING_TRIGGER_ON_DEMAND;
  pending.request_id = request.request_id();
  pending.request_hash = Fingerprint(canonical);
  pending.window_start = start;
  pending.window_end = end;
  pending.params = ParamsFor(settings, k);
  pending.progress.set_phase(v1::CLUSTERING_PHASE_UNSPECIFIED);
  ASSIGN_OR_RETURN(CreateResult created,
                   repository_->CreateClustering(pending, options_.max_on_demand_per_hour));
  v1::TriggerReclusterResponse response;
  *response.mutable_clustering() = ClusteringToProto(created.clustering);
  response.set_started(created.started);
  return response;
}

}  // namespace flywheel::clustering
