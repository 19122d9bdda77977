// Clusters: listing, reads, members, trace assignments and operator curation.

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"
#include "services/clustering/clustering_logic.h"
#include "services/clustering/util.h"

namespace flywheel::clustering {
namespace {

// Rows of one clustering with the derived facts listings need.
struct VersionView {
  std::vector<ClusterRecord> rows;
  std::map<std::string, size_t> by_id;
  std::map<std::string, int> child_count;  // group -> ACTIVE themes
  int64_t total_members = 0;               // members of ACTIVE themes
};

VersionView MakeView(std::vector<ClusterRecord> rows) {
  VersionView view;
  view.rows = std::move(rows);
  for (size_t i = 0; i < view.rows.size(); ++i) {
    const ClusterRecord& r = view.rows[i];
    view.by_id[r.cluster_id] = i;
    if (r.level == v1::CLUSTER_LEVEL_THEME && r.state == v1::CLUSTER_STATE_ACTIVE) {
      view.total_members += r.member_count;
      if (!r.parent_id.empty()) ++view.child_count[r.parent_id];
    }
  }
  return view;
}

bool Hidden(const ClusterRecord& r, int min_users) { return r.distinct_users < min_users; }

}  // namespace

absl::StatusOr<v1::Cluster> ClusteringLogic::ClusterProto(const ClusterRecord& row,
                                                          int64_t latest_version,
                                                          int min_distinct_users,
                                                          int64_t total_members) {
  v1::Cluster c;
  c.set_cluster_id(row.cluster_id);
  c.set_clustering_version(row.version);
  c.set_level(row.level);
  v1::ClusterState state = row.state;
  if (row.version != latest_version && row.state == v1::CLUSTER_STATE_ACTIVE &&
      latest_version > 0 && row.last_seen_version < latest_version) {
    // No longer in the latest clustering: what happened to the id since.
    state = row.current_state == v1::CLUSTER_STATE_ACTIVE ? v1::CLUSTER_STATE_RETIRED
                                                          : row.current_state;
  }
  c.set_state(state);
  const bool hidden = Hidden(row, min_distinct_users);
  c.set_hidden_by_privacy_threshold(hidden);
  c.set_name_pinned(row.name_pinned);
  if (!hidden) {
    c.set_name(row.operator_name.has_value() ? *row.operator_name : row.name);
    c.set_description(row.operator_description.value_or(row.description));
    for (size_t i = 0; i < row.keywords.size() && i < 10; ++i) {
      v1::Keyword* k = c.add_keywords();
      k->set_term(row.keywords[i].first);
      k->set_weight(row.keywords[i].second);
    }
    for (size_t i = 0; i < row.key_phrases.size() && i < 5; ++i) {
      c.add_key_phrases(row.key_phrases[i]);
    }
    if (row.level == v1::CLUSTER_LEVEL_THEME) {
      for (size_t i = 0; i < row.examples.size() && i < 5; ++i) {
        v1::RepresentativeExample* e = c.add_representative_examples();
        e->set_trace_id(row.examples[i].trace_id);
        e->set_snippet(row.examples[i].snippet);
        e->set_similarity(row.examples[i].similarity);
      }
    }
  }
  c.set_description_from_operator(row.operator_description.has_value());
  if (row.level == v1::CLUSTER_LEVEL_THEME) c.set_parent_cluster_id(row.parent_id);
  c.set_member_count(row.member_count);
  c.set_member_share(total_members > 0 ? static_cast<double>(row.member_count) /
                                             static_cast<double>(total_members)
                                       : 0.0);
  c.set_distinct_users(row.distinct_users);
  c.set_created_version(row.created_version);
  c.set_last_seen_version(row.last_seen_version);
  c.set_merged_into_cluster_id(row.merged_into);
  for (const auto& id : row.split_into) c.add_split_into_cluster_ids(id);
  *c.mutable_update_time() = ToProtoTime(std::max(row.update_time, row.stable_update_time));
  c.set_etag(absl::StrCat(row.etag_seq));
  return c;
}

absl::StatusOr<v1::ListClustersResponse> ClusteringLogic::ListClusters(
    const std::string& project, const v1::ListClustersRequest& request) {
  if (request.min_member_count() < 0) {
    return absl::InvalidArgumentError("min_member_count: must be >= 0");
  }
  if (!v1::ClusterLevel_IsValid(request.level())) {
    return absl::InvalidArgumentError("level: unknown value");
  }
  const v1::ClusterLevel level =
      request.level() == v1::CLUSTER_LEVEL_UNSPECIFIED ? v1::CLUSTER_LEVEL_THEME : request.level();
  if (level == v1::CLUSTER_LEVEL_GROUP && !request.parent_cluster_id().empty()) {
    return absl::InvalidArgumentError("parent_cluster_id: not allowed with level GROUP");
  }
  ASSIGN_OR_RETURN(const int page_size, ResolvePageSize(request.page_size(), 200));
  ASSIGN_OR_RETURN(ClusteringRecord clustering,
                   ResolveClustering(project, request.clustering_version(), true));
  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, EffectiveSettings(project));
  const int min_users = settings.min_distinct_users();
  ASSIGN_OR_RETURN(std::vector<ClusterRecord> rows,
                   repository_->ListClusterRows(project, clustering.version));
  VersionView view = MakeView(std::move(rows));
  if (!request.parent_cluster_id().empty()) {
    auto it = view.by_id.find(request.parent_cluster_id());
    if (it == view.by_id.end() || view.rows[it->second].level != v1::CLUSTER_LEVEL_GROUP) {
      return absl::NotFoundError("parent_cluster_id: no such group in this clustering");
    }
  }
  // Groups with at least one listed theme.
  std::set<std::string> listed_groups;
  for (const ClusterRecord& r : view.rows) {
    if (r.level == v1::CLUSTER_LEVEL_THEME && r.state == v1::CLUSTER_STATE_ACTIVE &&
        !Hidden(r, min_users) && !r.parent_id.empty()) {
      listed_groups.insert(r.parent_id);
    }
  }
  std::vector<const ClusterRecord*> listed;
  v1::SmallThemesAggregate small;
  for (const ClusterRecord& r : view.rows) {
    if (r.state != v1::CLUSTER_STATE_ACTIVE || r.level != level) continue;
    if (!request.parent_cluster_id().empty() && r.parent_id != request.parent_cluster_id()) {
      continue;
    }
    if (r.member_count < request.min_member_count()) continue;
    if (level == v1::CLUSTER_LEVEL_THEME && Hidden(r, min_users)) {
      small.set_theme_count(small.theme_count() + 1);
      small.set_member_count(small.member_count() + r.member_count);
      continue;
    }
    if (level == v1::CLUSTER_LEVEL_GROUP && listed_groups.count(r.cluster_id) == 0) continue;
    listed.push_back(&r);
  }
  small.set_member_share(view.total_members > 0 ? static_cast<double>(small.member_count()) /
                                                      static_cast<double>(view.total_members)
                                                : 0.0);
  std::sort(listed.begin(), listed.end(), [](const ClusterRecord* a, const ClusterRecord* b) {
    if (a->member_count != b->member_count) return a->member_count > b->member_count;
    return a->cluster_id < b->cluster_id;
  });
  const std::string fingerprint =
      Fingerprint(absl::StrCat(clustering.version, "|", level, "|", request.parent_cluster_id(),
                               "|", request.min_member_count()));
  size_t begin = 0;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(
        std::vector<std::string> position,
        DecodePageToken(request.page_token(), "clusters", fingerprint, options_.now()));
    int64_t count = 0;
    if (position.size() != 2 || !absl::SimpleAtoi(position[0], &count)) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    // First item after (count, id) in the order.
    while (begin < listed.size() &&
           (listed[begin]->member_count > count ||
            (listed[begin]->member_count == count && listed[begin]->cluster_id <= position[1]))) {
      ++begin;
    }
  }
  v1::ListClustersResponse response;
  const size_t end = std::min(listed.size(), begin + static_cast<size_t>(page_size));
  for (size_t i = begin; i < end; ++i) {
    ASSIGN_OR_RETURN(v1::Cluster c,
                     ClusterProto(*listed[i], clustering.version, min_users, view.total_members));
    if (listed[i]->level == v1::CLUSTER_LEVEL_GROUP) {
      c.set_child_count(view.child_count[listed[i]->cluster_id]);
    }
    *response.add_clusters() = std::move(c);
  }
  if (end < listed.size()) {
    response.set_next_page_token(
        EncodePageToken("clusters", fingerprint,
                        {absl::StrCat(listed[end - 1]->member_count), listed[end - 1]->cluster_id},
                        options_.now()));
  }
  response.set_clustering_version(clustering.version);
  response.set_total_size(static_cast<int32_t>(listed.size()));
  *response.mutable_small_themes() = small;
  response.set_min_distinct_users(min_users);
  return response;
}

absl::StatusOr<v1::GetClusterResponse> ClusteringLogic::GetCluster(
    const std::string& project, const v1::GetClusterRequest& request) {
  if (request.cluster_id().empty()) return absl::InvalidArgumentError("cluster_id: required");
  if (request.clustering_version() < 0) {
    return absl::InvalidArgumentError("clustering_version: must be >= 0");
  }
  ASSIGN_OR_RETURN(
      std::optional<ClusterRecord> row,
      repository_->GetClusterRow(project, request.cluster_id(), request.clustering_version()));
  if (!row.has_value()) return absl::NotFoundError("cluster not found");
  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, EffectiveSettings(project));
  ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest, repository_->LatestClustering(project));
  ASSIGN_OR_RETURN(std::vector<ClusterRecord> rows,
                   repository_->ListClusterRows(project, row->version));
  VersionView view = MakeView(std::move(rows));
  auto it = view.by_id.find(row->cluster_id);
  const ClusterRecord& full = it != view.by_id.end() ? view.rows[it->second] : *row;
  ASSIGN_OR_RETURN(
      v1::Cluster c,
      ClusterProto(full,
                   request.clustering_version() == 0 && latest ? latest->version : full.version,
                   settings.min_distinct_users(), view.total_members));
  if (full.level == v1::CLUSTER_LEVEL_GROUP) c.set_child_count(view.child_count[full.cluster_id]);
  v1::GetClusterResponse response;
  *response.mutable_cluster() = std::move(c);
  return response;
}

absl::StatusOr<v1::ListClusterMembersResponse> ClusteringLogic::ListClusterMembers(
    const std::string& project, const v1::ListClusterMembersRequest& request) {
  if (request.cluster_id().empty()) return absl::InvalidArgumentError("cluster_id: required");
  if (!v1::MemberOrder_IsValid(request.order())) {
    return absl::InvalidArgumentError("order: unknown value");
  }
  if (!v1::AssignmentSource_IsValid(request.assignment_source())) {
    return absl::InvalidArgumentError("assignment_source: unknown value");
  }
  ASSIGN_OR_RETURN(const int page_size, ResolvePageSize(request.page_size(), 1000));
  absl::StatusOr<ClusteringRecord> clustering =
      ResolveClustering(project, request.clustering_version(), false);
  if (!clustering.ok()) {
    if (clustering.status().code() == absl::StatusCode::kFailedPrecondition) {
      return absl::NotFoundError("no clustering yet");
    }
    return clustering.status();
  }
  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, EffectiveSettings(project));
  const int min_users = settings.min_distinct_users();
  ASSIGN_OR_RETURN(std::vector<ClusterRecord> rows,
                   repository_->ListClusterRows(project, clustering->version));
  VersionView view = MakeView(std::move(rows));
  auto it = view.by_id.find(request.cluster_id());
  if (it == view.by_id.end()) return absl::NotFoundError("cluster not in this clustering");
  const ClusterRecord& cluster = view.rows[it->second];
  MemberQuery query;
  query.version = clustering->version;
  if (cluster.level == v1::CLUSTER_LEVEL_THEME) {
    if (Hidden(cluster, min_users)) {
      return absl::FailedPreconditionError("the theme is hidden by the privacy threshold");
    }
    query.cluster_ids.push_back(cluster.cluster_id);
  } else {
    bool any_theme = false;
    for (const ClusterRecord& r : view.rows) {
      if (r.level != v1::CLUSTER_LEVEL_THEME || r.parent_id != cluster.cluster_id ||
          r.state != v1::CLUSTER_STATE_ACTIVE) {
        continue;
      }
      any_theme = true;
      if (!Hidden(r, min_users)) query.cluster_ids.push_back(r.cluster_id);
    }
    if (any_theme && query.cluster_ids.empty()) {
      return absl::FailedPreconditionError("every theme of the group is hidden");
    }
  }
  query.order = request.order() == v1::MEMBER_ORDER_ASSIGN_TIME_DESC
                    ? v1::MEMBER_ORDER_ASSIGN_TIME_DESC
                    : v1::MEMBER_ORDER_SIMILARITY_DESC;
  query.source = request.assignment_source();
  query.limit = page_size + 1;
  const std::string fingerprint = Fingerprint(absl::StrCat(
      request.cluster_id(), "|", clustering->version, "|", query.order, "|", query.source));
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> position,
                     DecodePageToken(request.page_token(), "members", fingerprint, options_.now()));
    if (position.size() != 2) return absl::InvalidArgumentError("page_token: malformed");
    if (query.order == v1::MEMBER_ORDER_ASSIGN_TIME_DESC) {
      int64_t micros = 0;
      if (!absl::SimpleAtoi(position[0], &micros)) {
        return absl::InvalidArgumentError("page_token: malformed");
      }
      query.after_assign_micros = std::make_pair(micros, position[1]);
    } else {
      double sim = 0;
      if (!absl::SimpleAtod(position[0], &sim)) {
        return absl::InvalidArgumentError("page_token: malformed");
      }
      query.after_similarity = std::make_pair(sim, position[1]);
    }
  }
  v1::ListClusterMembersResponse response;
  response.set_clustering_version(clustering->version);
  if (query.cluster_ids.empty()) return response;
  ASSIGN_OR_RETURN(std::vector<MemberRecord> members, repository_->ListMembers(project, query));
  const size_t n = std::min(members.size(), static_cast<size_t>(page_size));
  for (size_t i = 0; i < n; ++i) {
    const MemberRecord& m = members[i];
    v1::ClusterMember* out = response.add_members();
    out->set_trace_id(m.trace_id);
    out->set_cluster_id(m.cluster_id);
    out->set_similarity(m.similarity);
    *out->mutable_assign_time() = ToProtoTime(m.assign_time);
    out->set_assignment_source(m.source);
    *out->mutable_trace_create_time() = ToProtoTime(m.trace_create_time);
  }
  if (members.size() > n && n > 0) {
    const MemberRecord& last = members[n - 1];
    const std::string key = query.order == v1::MEMBER_ORDER_ASSIGN_TIME_DESC
                                ? absl::StrCat(absl::ToUnixMicros(last.assign_time))
                                : absl::StrFormat("%.17g", last.similarity);
    response.set_next_page_token(
        EncodePageToken("members", fingerprint, {key, last.trace_id}, options_.now()));
  }
  return response;
}

absl::StatusOr<v1::GetTraceAssignmentResponse> ClusteringLogic::GetTraceAssignment(
    const std::string& project, const v1::GetTraceAssignmentRequest& request) {
  if (!IsValidTraceId(request.trace_id())) {
    return absl::InvalidArgumentError("trace_id: 1..128 bytes of [A-Za-z0-9._:-]");
  }
  if (request.clustering_version() < 0) {
    return absl::InvalidArgumentError("clustering_version: must be >= 0");
  }
  v1::GetTraceAssignmentResponse response;
  response.set_trace_id(request.trace_id());
  std::optional<ClusteringRecord> clustering;
  if (request.clustering_version() == 0) {
    ASSIGN_OR_RETURN(clustering, repository_->LatestClustering(project));
  } else {
    ASSIGN_OR_RETURN(clustering, repository_->GetClustering(project, request.clustering_version()));
  }
  std::optional<MembershipRecord> membership;
  if (clustering.has_value()) {
    response.set_clustering_version(clustering->version);
    ASSIGN_OR_RETURN(membership,
                     repository_->GetMembership(project, request.trace_id(), clustering->version));
  }
  if (!membership.has_value()) {
    ASSIGN_OR_RETURN(const bool seen, repository_->TraceSeen(project, request.trace_id()));
    response.set_state(seen ? v1::ASSIGNMENT_STATE_UNASSIGNED : v1::ASSIGNMENT_STATE_NOT_SEEN);
    return response;
  }
  response.set_similarity(membership->similarity);
  if (membership->cluster_id.empty()) {
    response.set_state(v1::ASSIGNMENT_STATE_UNASSIGNED);
    response.set_nearest_cluster_id(membership->nearest_cluster_id);
    return response;
  }
  response.set_state(v1::ASSIGNMENT_STATE_ASSIGNED);
  response.set_cluster_id(membership->cluster_id);
  response.set_assignment_source(membership->source);
  *response.mutable_assign_time() = ToProtoTime(membership->assign_time);
  ASSIGN_OR_RETURN(
      std::optional<ClusterRecord> row,
      repository_->GetClusterRow(project, membership->cluster_id, clustering->version));
  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, EffectiveSettings(project));
  if (row.has_value()) {
    response.set_parent_cluster_id(row->parent_id);
    const bool hidden = Hidden(*row, settings.min_distinct_users());
    response.set_hidden_by_privacy_threshold(hidden);
    if (!hidden) response.set_cluster_name(row->operator_name.value_or(row->name));
  }
  return response;
}

absl::StatusOr<v1::UpdateClusterResponse> ClusteringLogic::UpdateCluster(
    const std::string& project, const v1::UpdateClusterRequest& request) {
  const v1::Cluster& in = request.cluster();
  if (in.cluster_id().empty()) return absl::InvalidArgumentError("cluster.cluster_id: required");
  if (request.update_mask().paths_size() == 0) {
    return absl::InvalidArgumentError("update_mask: required");
  }
  AttributeUpdate update;
  bool name_in_mask = false, pinned_in_mask = false;
  for (const std::string& path : request.update_mask().paths()) {
    if (path == "name") {
      if (in.name().empty() || in.name().size() > 200) {
        return absl::InvalidArgumentError("cluster.name: 1..200 bytes");
      }
      name_in_mask = true;
      update.set_name = true;
      update.name = in.name();
    } else if (path == "description") {
      if (in.description().size() > 4096) {
        return absl::InvalidArgumentError("cluster.description: at most 4096 bytes");
      }
      update.set_description = true;
      if (!in.description().empty()) update.description = in.description();
    } else if (path == "name_pinned") {
      pinned_in_mask = true;
      update.set_name_pinned = true;
      update.name_pinned = in.name_pinned();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("update_mask: unknown path \"", path, "\""));
    }
  }
  if (name_in_mask && !pinned_in_mask) {
    update.set_name_pinned = true;
    update.name_pinned = true;
  }
  if (!request.etag().empty()) {
    int64_t seq = 0;
    if (!absl::SimpleAtoi(request.etag(), &seq)) return absl::AbortedError("etag mismatch");
    update.expected_etag_seq = seq;
  }
  ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest, repository_->LatestClustering(project));
  ASSIGN_OR_RETURN(std::optional<ClusterRecord> any,
                   repository_->GetClusterRow(project, in.cluster_id(), 0));
  if (!any.has_value()) return absl::NotFoundError("cluster not found");
  if (!latest.has_value() || any->version != latest->version ||
      any->state != v1::CLUSTER_STATE_ACTIVE) {
    return absl::FailedPreconditionError("the cluster is not ACTIVE in the latest clustering");
  }
  RETURN_IF_ERROR(repository_->UpdateClusterAttributes(project, in.cluster_id(), update));
  v1::GetClusterRequest get;
  get.set_cluster_id(in.cluster_id());
  ASSIGN_OR_RETURN(v1::GetClusterResponse got, GetCluster(project, get));
  v1::UpdateClusterResponse response;
  *response.mutable_cluster() = std::move(*got.mutable_cluster());
  return response;
}

absl::StatusOr<v1::MergeClustersResponse> ClusteringLogic::MergeClusters(
    const std::string& project, const v1::MergeClustersRequest& request) {
  if (request.source_cluster_ids_size() == 0) {
    return absl::InvalidArgumentError("source_cluster_ids: required");
  }
  if (request.source_cluster_ids_size() > 20) {
    return absl::InvalidArgumentError("source_cluster_ids: at most 20");
  }
  if (request.target_cluster_id().empty()) {
    return absl::InvalidArgumentError("target_cluster_id: required");
  }
  std::set<std::string> seen;
  for (const auto& id : request.source_cluster_ids()) {
    if (id == request.target_cluster_id()) {
      return absl::InvalidArgumentError("source_cluster_ids: contains the target");
    }
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError("source_cluster_ids: duplicates");
    }
  }
  ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest, repository_->LatestClustering(project));
  if (request.expected_clustering_version() != 0 &&
      (!latest || latest->version != request.expected_clustering_version())) {
    return absl::AbortedError("expected_clustering_version is not the latest clustering");
  }
  if (!latest.has_value()) return absl::NotFoundError("cluster not found (no clustering yet)");
  ASSIGN_OR_RETURN(std::vector<ClusterRecord> rows,
                   repository_->ListClusterRows(project, latest->version));
  VersionView view = MakeView(std::move(rows));
  auto lookup = [&](const std::string& id) -> absl::StatusOr<ClusterRecord> {
    auto it = view.by_id.find(id);
    if (it != view.by_id.end()) return view.rows[it->second];
    ASSIGN_OR_RETURN(std::optional<ClusterRecord> row, repository_->GetClusterRow(project, id, 0));
    if (!row.has_value()) return absl::NotFoundError(absl::StrCat("cluster ", id, " not found"));
    row->state = row->current_state == v1::CLUSTER_STATE_ACTIVE ? v1::CLUSTER_STATE_RETIRED
                                                                : row->current_state;
    return *row;
  };
  ASSIGN_OR_RETURN(ClusterRecord target, lookup(request.target_cluster_id()));
  if (target.state != v1::CLUSTER_STATE_ACTIVE) {
    return absl::FailedPreconditionError("the target is not ACTIVE in the latest clustering");
  }
  std::vector<std::string> to_merge;
  for (const auto& id : request.source_cluster_ids()) {
    ASSIGN_OR_RETURN(ClusterRecord source, lookup(id));
    if (source.level != target.level) {
      return absl::FailedPreconditionError("clusters of different levels");
    }
    if (source.current_state == v1::CLUSTER_STATE_MERGED ||
        source.state == v1::CLUSTER_STATE_MERGED) {
      if (source.merged_into == target.cluster_id) continue;  // idempotent repeat
      return absl::FailedPreconditionError(
          absl::StrCat("cluster ", id, " is already merged into another cluster"));
    }
    if (source.state != v1::CLUSTER_STATE_ACTIVE) {
      return absl::FailedPreconditionError(absl::StrCat("cluster ", id, " is SPLIT or RETIRED"));
    }
    to_merge.push_back(id);
  }
  int64_t moved = 0;
  if (!to_merge.empty()) {
    ASSIGN_OR_RETURN(
        moved, repository_->MergeClusters(project, latest->version, to_merge, target.cluster_id));
  }
  v1::MergeClustersResponse response;
  response.set_moved_member_count(moved);
  v1::GetClusterRequest get;
  get.set_cluster_id(target.cluster_id);
  ASSIGN_OR_RETURN(v1::GetClusterResponse got, GetCluster(project, get));
  *response.mutable_target() = got.cluster();
  for (const auto& id : request.source_cluster_ids()) {
    get.set_cluster_id(id);
    ASSIGN_OR_RETURN(got, GetCluster(project, get));
    *response.add_sources() = got.cluster();
  }
  return response;
}

}  // namespace flywheel::clustering
