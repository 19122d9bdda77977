// Similarity search (NearestClusters, FindSimilarTraces) and SplitCluster.

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/clustering/clustering_logic.h"
#include "services/clustering/engine/engine.h"
#include "services/clustering/util.h"

namespace flywheel::clustering {
namespace {

constexpr size_t kMaxQueryBytes = 32 * 1024;

size_t Utf8Length(absl::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

}  // namespace

std::string Snippet(const std::string& text, size_t max_code_points) {
  std::string collapsed;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
      space = !collapsed.empty();
      continue;
    }
    if (space) collapsed += ' ';
    space = false;
    collapsed += c;
  }
  if (Utf8Length(collapsed) <= max_code_points) return collapsed;
  // Byte offset of the code point max_code_points.
  size_t points = 0, cut = 0;
  for (size_t i = 0; i < collapsed.size(); ++i) {
    if ((static_cast<unsigned char>(collapsed[i]) & 0xC0) != 0x80) {
      if (points == max_code_points) {
        cut = i;
        break;
      }
      ++points;
    }
  }
  size_t boundary = collapsed.rfind(' ', cut);
  if (boundary == std::string::npos || boundary == 0) boundary = cut;
  return absl::StrCat(collapsed.substr(0, boundary), "\xE2\x80\xA6");
}

absl::StatusOr<v1::NearestClustersResponse> ClusteringLogic::NearestClusters(
    const std::string& project, const v1::NearestClustersRequest& request) {
  if (request.queries_size() == 0 || request.queries_size() > 100) {
    return absl::InvalidArgumentError("queries: 1..100");
  }
  int top_k = request.top_k() == 0 ? 5 : request.top_k();
  if (top_k < 1 || top_k > 20) return absl::InvalidArgumentError("top_k: must be in 1..20");
  ASSIGN_OR_RETURN(ClusteringRecord clustering,
                   ResolveClustering(project, request.clustering_version(), true));
  ASSIGN_OR_RETURN(std::shared_ptr<const ThemeIndex> index,
                   cache_->Get(project, clustering.version, clustering.theme_generation));
  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, EffectiveSettings(project));
  ASSIGN_OR_RETURN(std::vector<ClusterRecord> rows,
                   repository_->ListClusterRows(project, clustering.version));
  std::map<std::string, const ClusterRecord*> by_id;
  for (const ClusterRecord& r : rows) by_id[r.cluster_id] = &r;
  const double threshold = settings.assignment_similarity_threshold();
  v1::NearestClustersResponse response;
  response.set_clustering_version(clustering.version);
  for (int i = 0; i < request.queries_size(); ++i) {
    const v1::NearestClustersQuery& q = request.queries(i);
    v1::NearestClustersResult* result = response.add_results();
    result->set_index(i);
    engine::Vector v;
    if (q.query_case() == v1::NearestClustersQuery::kText) {
      if (q.text().empty() || q.text().size() > kMaxQueryBytes) {
        result->set_code(3);
        result->set_reason("text: 1 byte..32 KiB");
        continue;
      }
      engine::TraceText text;
      text.input = q.text();
      v = index->Embed(engine::PrepareText(text));
    } else if (q.query_case() == v1::NearestClustersQuery::kTraceId) {
      if (!IsValidTraceId(q.trace_id())) {
        result->set_code(3);
        result->set_reason("trace_id: malformed");
        continue;
      }
      ASSIGN_OR_RETURN(std::optional<MembershipRecord> m,
                       repository_->GetMembership(project, q.trace_id(), clustering.version));
      if (!m.has_value()) {
        result->set_code(5);
        result->set_reason("trace not embedded with this clustering's embedder");
        continue;
      }
      v = UnpackVector(m->embedding);
    } else {
      result->set_code(3);
      result->set_reason("query: text or trace_id required");
      continue;
    }
    for (const engine::Nearest& n : engine::TopCentroids(v, index->centroids, top_k)) {
      if (n.index < 0) continue;
      v1::ClusterMatch* match = result->add_matches();
      const std::string& id = index->theme_ids[n.index];
      match->set_cluster_id(id);
      match->set_parent_cluster_id(index->parent_ids[n.index]);
      match->set_similarity(n.similarity);
      match->set_above_assignment_threshold(n.similarity >= threshold);
      auto it = by_id.find(id);
      const bool hidden =
          it == by_id.end() || it->second->distinct_users < settings.min_distinct_users();
      match->set_hidden_by_privacy_threshold(hidden);
      if (!hidden) match->set_cluster_name(it->second->operator_name.value_or(it->second->name));
    }
  }
  return response;
}

absl::StatusOr<v1::FindSimilarTracesResponse> ClusteringLogic::FindSimilarTraces(
    const std::string& project, const v1::FindSimilarTracesRequest& request) {
  const int top_k = request.top_k() == 0 ? 10 : request.top_k();
  if (top_k < 1 || top_k > 100) return absl::InvalidArgumentError("top_k: must be in 1..100");
  const int probes = request.probe_count() == 0 ? 3 : request.probe_count();
  if (probes < 1 || probes > 20) {
    return absl::InvalidArgumentError("probe_count: must be in 1..20");
  }
  if (request.has_min_similarity() &&
      (request.min_similarity() < -1 || request.min_similarity() > 1 ||
       std::isnan(request.min_similarity()))) {
    return absl::InvalidArgumentError("min_similarity: must be in [-1, 1]");
  }
  if (request.cluster_ids_size() > 50) {
    return absl::InvalidArgumentError("cluster_ids: at most 50");
  }
  if (request.query_case() == v1::FindSimilarTracesRequest::kText &&
      (request.text().empty() || request.text().size() > kMaxQueryBytes)) {
    return absl::InvalidArgumentError("text: 1 byte..32 KiB");
  }
  if (request.query_case() == v1::FindSimilarTracesRequest::QUERY_NOT_SET) {
    return absl::InvalidArgumentError("query: text or trace_id required");
  }
  if (request.query_case() == v1::FindSimilarTracesRequest::kTraceId &&
      !IsValidTraceId(request.trace_id())) {
    return absl::InvalidArgumentError("trace_id: malformed");
  }
  std::optional<absl::Time> start, end;
  if (request.time_range().has_start_time())
    start = FromProtoTime(request.time_range().start_time());
  if (request.time_range().has_end_time()) end = FromProtoTime(request.time_range().end_time());
  if (start && end && *end < *start) {
    return absl::InvalidArgumentError("time_range: end before start");
  }
  ASSIGN_OR_RETURN(ClusteringRecord clustering,
                   ResolveClustering(project, request.clustering_version(), true));
  ASSIGN_OR_RETURN(std::shared_ptr<const ThemeIndex> index,
                   cache_->Get(project, clustering.version, clustering.theme_generation));
  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, EffectiveSettings(project));
  engine::Vector v;
  if (request.query_case() == v1::FindSimilarTracesRequest::kText) {
    engine::TraceText text;
    text.input = request.text();
    v = index->Embed(engine::PrepareText(text));
  } else {
    ASSIGN_OR_RETURN(std::optional<MembershipRecord> m,
                     repository_->GetMembership(project, request.trace_id(), clustering.version));
    if (!m.has_value()) return absl::NotFoundError("the query trace is not embedded");
    v = UnpackVector(m->embedding);
  }
  ASSIGN_OR_RETURN(std::vector<ClusterRecord> rows,
                   repository_->ListClusterRows(project, clustering.version));
  std::map<std::string, const ClusterRecord*> by_id;
  for (const ClusterRecord& r : rows) by_id[r.cluster_id] = &r;
  std::vector<std::string> themes;
  if (request.cluster_ids_size() > 0) {
    for (const std::string& id : request.cluster_ids()) {
      auto it = by_id.find(id);
      if (it == by_id.end()) return absl::NotFoundError(absl::StrCat("cluster ", id, " not found"));
      if (it->second->level == v1::CLUSTER_LEVEL_GROUP) {
        for (const ClusterRecord& r : rows) {
          if (r.level == v1::CLUSTER_LEVEL_THEME && r.parent_id == id &&
              r.state == v1::CLUSTER_STATE_ACTIVE) {
            themes.push_back(r.cluster_id);
          }
        }
      } else {
        themes.push_back(id);
      }
    }
  } else {
    for (const engine::Nearest& n : engine::TopCentroids(v, index->centroids, probes)) {
      if (n.index >= 0) themes.push_back(index->theme_ids[n.index]);
    }
  }
  v1::FindSimilarTracesResponse response;
  response.set_clustering_version(clustering.version);
  for (const auto& t : themes) response.add_probed_cluster_ids(t);
  if (themes.empty() && !request.include_unassigned()) return response;
  ASSIGN_OR_RETURN(std::vector<EmbeddedTrace> candidates,
                   repository_->LoadEmbedded(project, clustering.version, themes,
                                             request.include_unassigned(), start, end, false));
  struct Hit {
    double similarity;
    const EmbeddedTrace* trace;
  };
  std::vector<Hit> hits;
  const std::set<std::string> wanted(themes.begin(), themes.end());
  for (const EmbeddedTrace& e : candidates) {
    if (request.query_case() == v1::FindSimilarTracesRequest::kTraceId &&
        e.trace_id == request.trace_id()) {
      continue;
    }
    if (!e.cluster_id.empty() && wanted.count(e.cluster_id) == 0) continue;
    const double sim = engine::Dot(v, UnpackVector(e.embedding));
    if (request.has_min_similarity() && sim < request.min_similarity()) continue;
    hits.push_back({sim, &e});
  }
  std::sort(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) {
    if (a.similarity != b.similarity) return a.similarity > b.similarity;
    return a.trace->trace_id < b.trace->trace_id;
  });
  for (size_t i = 0; i < hits.size() && static_cast<int>(i) < top_k; ++i) {
    v1::SimilarTrace* out = response.add_traces();
    out->set_trace_id(hits[i].trace->trace_id);
    out->set_similarity(hits[i].similarity);
    out->set_cluster_id(hits[i].trace->cluster_id);
    auto it = by_id.find(hits[i].trace->cluster_id);
    out->set_hidden_by_privacy_threshold(it != by_id.end() && it->second->distinct_users <
                                                                  settings.min_distinct_users());
    *out->mutable_trace_create_time() = ToProtoTime(hits[i].trace->create_time);
  }
  return response;
}

absl::StatusOr<v1::SplitClusterResponse> ClusteringLogic::SplitCluster(
    const std::string& project, const v1::SplitClusterRequest& request) {
  if (request.cluster_id().empty()) return absl::InvalidArgumentError("cluster_id: required");
  if (request.k() == 1 || request.k() < 0 || request.k() > 20) {
    return absl::InvalidArgumentError("k: 0 (automatic) or 2..20");
  }
  if (!request.request_id().empty() && !IsValidRequestId(request.request_id())) {
    return absl::InvalidArgumentError("request_id: 1..128 bytes of [A-Za-z0-9._:-]");
  }
  if (!request.request_id().empty()) {
    ASSIGN_OR_RETURN(std::optional<SplitRequestRecord> previous,
                     repository_->FindSplitRequest(project, request.request_id()));
    if (previous.has_value()) {
      if (previous->cluster_id != request.cluster_id() || previous->k != request.k()) {
        return absl::AlreadyExistsError("request_id was used with different parameters");
      }
      v1::SplitClusterResponse stored;
      if (!stored.ParseFromString(previous->response)) {
        return absl::InternalError("stored split response is unreadable");
      }
      return stored;
    }
  }
  ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest, repository_->LatestClustering(project));
  if (request.expected_clustering_version() != 0 &&
      (!latest || latest->version != request.expected_clustering_version())) {
    return absl::AbortedError("expected_clustering_version is not the latest clustering");
  }
  ASSIGN_OR_RETURN(std::optional<ClusterRecord> row,
                   repository_->GetClusterRow(project, request.cluster_id(), 0));
  if (!row.has_value()) return absl::NotFoundError("cluster not found");
  if (row->level != v1::CLUSTER_LEVEL_THEME) {
    return absl::FailedPreconditionError("only themes can be split");
  }
  if (!latest || row->version != latest->version || row->state != v1::CLUSTER_STATE_ACTIVE) {
    return absl::FailedPreconditionError("the theme is not ACTIVE in the latest clustering");
  }
  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, EffectiveSettings(project));
  ASSIGN_OR_RETURN(std::vector<EmbeddedTrace> members,
                   repository_->LoadEmbedded(project, latest->version, {request.cluster_id()},
                                             false, std::nullopt, std::nullopt, true));
  const int k = request.k();
  if (members.size() < static_cast<size_t>(2 * std::max(k, 2))) {
    return absl::FailedPreconditionError("too few members to split");
  }
  std::vector<engine::Vector> points;
  for (const EmbeddedTrace& e : members) points.push_back(UnpackVector(e.embedding));
  // Fit on a uniform sample of at most 10,000 members.
  std::vector<engine::Vector> sample = points;
  if (sample.size() > 10000) {
    std::mt19937_64 rng(static_cast<uint64_t>(latest->params.seed()));
    std::shuffle(sample.begin(), sample.end(), rng);
    sample.resize(10000);
  }
  engine::KMeansOptions kopts;
  kopts.k = k;
  kopts.min_k = 2;
  kopts.max_k = std::min<int>(10, static_cast<int>(sample.size()) / 2);
  kopts.seed = static_cast<uint64_t>(latest->params.seed()) + 17;
  absl::StatusOr<engine::ClusterResult> fitted = engine::ClusterVectors(sample, kopts);
  if (!fitted.ok()) return absl::FailedPreconditionError("the theme cannot be split");
  if (k == 0 && fitted->silhouette <= 0.1) {
    return absl::FailedPreconditionError("no split scores a silhouette above 0.1");
  }
  const int children = static_cast<int>(fitted->centroids.size());
  std::vector<int> labels(points.size(), -1);
  std::vector<double> sims(points.size(), 0);
  for (size_t i = 0; i < points.size(); ++i) {
    engine::Nearest n = engine::NearestCentroid(points[i], fitted->centroids, -2.0f);
    labels[i] = n.index;
    sims[i] = n.similarity;
  }
  std::vector<std::string> texts;
  for (const EmbeddedTrace& e : members) texts.push_back(e.text);
  const int keyword_count = settings.namer().builtin().keyword_count();
  std::vector<engine::ThemeDescription> described =
      engine::DescribeThemes(texts, labels, children, points, fitted->centroids, keyword_count, 20);
  SplitPlan plan;
  plan.request_id = request.request_id();
  plan.k = k;
  std::vector<int64_t> sizes(children, 0);
  for (int label : labels) {
    if (label >= 0) ++sizes[label];
  }
  for (int c = 0; c < children; ++c) {
    ClusterRecord child;
    child.cluster_id = GenerateId();
    child.version = latest->version;
    child.parent_id = row->parent_id;
    child.name = described[c].name;
    child.keywords = described[c].keywords;
    child.key_phrases = described[c].phrases;
    std::set<std::string> example_users;
    for (int idx : described[c].representatives) {
      if (child.examples.size() >= 5) break;
      if (!example_users.insert(members[idx].user_key).second) continue;
      child.examples.push_back({members[idx].trace_id, Snippet(members[idx].text),
                                engine::Dot(points[idx], fitted->centroids[c])});
    }
    child.centroid = PackVector(fitted->centroids[c]);
    child.member_count = sizes[c];
    plan.children.push_back(std::move(child));
  }
  for (size_t i = 0; i < members.size(); ++i) {
    Assignment a;
    a.trace_id = members[i].trace_id;
    a.cluster_id = plan.children[labels[i]].cluster_id;
    a.similarity = sims[i];
    a.source = v1::ASSIGNMENT_SOURCE_OPERATOR;
    plan.assignments.push_back(std::move(a));
  }
  // The response is built from the plan so an idempotent retry returns the same thing.
  v1::SplitClusterResponse response;
  {
    ClusterRecord split = *row;
    split.state = v1::CLUSTER_STATE_SPLIT;
    split.current_state = v1::CLUSTER_STATE_SPLIT;
    split.member_count = 0;
    for (const ClusterRecord& c : plan.children) split.split_into.push_back(c.cluster_id);
    ASSIGN_OR_RETURN(*response.mutable_split_cluster(),
                     ClusterProto(split, latest->version, settings.min_distinct_users(), 0));
    std::vector<size_t> order(plan.children.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return plan.children[a].member_count > plan.children[b].member_count;
    });
    std::map<std::string, std::set<std::string>> users;
    for (size_t i = 0; i < members.size(); ++i) {
      users[plan.assignments[i].cluster_id].insert(members[i].user_key);
    }
    for (size_t i : order) {
      ClusterRecord c = plan.children[i];
      c.distinct_users = static_cast<int64_t>(users[c.cluster_id].size());
      c.created_version = latest->version;
      c.last_seen_version = latest->version;
      c.etag_seq = 1;
      c.update_time = options_.now();
      c.stable_update_time = c.update_time;
      ASSIGN_OR_RETURN(*response.add_new_clusters(),
                       ClusterProto(c, latest->version, settings.min_distinct_users(),
                                    static_cast<int64_t>(members.size())));
    }
  }
  RETURN_IF_ERROR(repository_->ApplySplit(project, latest->version, request.cluster_id(), plan,
                                          response.SerializeAsString()));
  return response;
}

}  // namespace flywheel::clustering
