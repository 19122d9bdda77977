#include "services/clustering/recluster.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/clustering/engine/engine.h"
#include "services/clustering/theme_index.h"
#include "services/clustering/util.h"

namespace flywheel::clustering {

Reclusterer::Reclusterer(ClusteringRepository* repository, ClusteringLogic* logic,
                         std::string worker, Logger* logger, ReclusterOptions options)
    : repository_(repository),
      logic_(logic),
      worker_(std::move(worker)),
      logger_(logger),
      options_(options) {}

absl::Status Reclusterer::FailStale() {
  ASSIGN_OR_RETURN(const int failed, repository_->FailStaleClusterings(options_.stale_after));
  if (failed > 0 && logger_ != nullptr) {
    logger_->Warn("marked stale clusterings FAILED", {{"count", absl::StrCat(failed)}});
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Reclusterer::ScheduleIfDue(const std::string& project, absl::Time now) {
  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, logic_->EffectiveSettings(project));
  ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest, repository_->LatestClustering(project));
  ASSIGN_OR_RETURN(std::optional<absl::Time> last, repository_->LastScheduledTime(project));
  bool due = false;
  if (!latest.has_value()) {
    // No clustering yet: start one as soon as enough flagged traces arrived (retrying hourly).
    if (!last.has_value() || now - *last >= absl::Hours(1)) {
      ASSIGN_OR_RETURN(const int64_t flagged, repository_->CountFlaggedTraces(project));
      due = flagged >= options_.first_clustering_traces;
    }
  } else {
    const absl::Duration interval = FromProtoDuration(settings.recluster_interval());
    if (interval > absl::ZeroDuration()) {
      absl::Time base = latest->create_time;
      if (last.has_value()) base = std::max(base, *last);
      due = now - base >= interval;
    }
  }
  if (!due) return false;
  ClusteringRecord pending;
  pending.project_id = project;
  pending.trigger = v1::CLUSTERING_TRIGGER_SCHEDULED;
  pending.window_end = now;
  pending.window_start = now - FromProtoDuration(settings.recluster_window());
  pending.params = ParamsFor(settings, settings.target_k());
  ASSIGN_OR_RETURN(CreateResult created, repository_->CreateClustering(pending, 0));
  return created.started;
}

absl::StatusOr<bool> Reclusterer::RunOnePending() {
  ASSIGN_OR_RETURN(std::optional<ClusteringRecord> job,
                   repository_->ClaimPendingClustering(worker_));
  if (!job.has_value()) return false;
  absl::Status status = Run(*job);
  if (!status.ok()) {
    if (logger_ != nullptr) {
      logger_->Error("re-clustering failed", {{"project", job->project_id},
                                              {"version", absl::StrCat(job->version)},
                                              {"status", status.ToString()}});
    }
    // Unexpected failures end the job too (the message stays generic).
    RETURN_IF_ERROR(repository_->FailClustering(job->project_id, job->version,
                                                "the re-clustering job failed; retry later"));
  }
  return true;
}

// The latest progress of a running job, re-sent as a heartbeat while a long phase (k-means on a
// large window) runs, so other replicas never take the job for dead.
struct Reclusterer::Beat {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  v1::ClusteringProgress progress;
  v1::ClusteringParams params;
};

absl::Status Reclusterer::Run(const ClusteringRecord& job) {
  Beat beat;
  beat.params = job.params;
  std::thread beater([&] {
    std::unique_lock<std::mutex> lock(beat.mu);
    while (!beat.cv.wait_for(lock, std::chrono::seconds(60), [&] { return beat.done; })) {
      v1::ClusteringProgress progress = beat.progress;
      const v1::ClusteringParams params = beat.params;
      lock.unlock();
      *progress.mutable_heartbeat_time() = ToProtoTime(absl::Now());
      (void)repository_->UpdateProgress(job.project_id, job.version, worker_, progress, params);
      lock.lock();
    }
  });
  absl::Status status = RunPhases(job, &beat);
  {
    std::lock_guard<std::mutex> lock(beat.mu);
    beat.done = true;
  }
  beat.cv.notify_all();
  beater.join();
  return status;
}

bool Reclusterer::Progress(const ClusteringRecord& job, Beat* beat, v1::ClusteringPhase phase,
                           double fraction, int64_t done, int64_t total,
                           const v1::ClusteringParams& params) {
  v1::ClusteringProgress progress;
  progress.set_phase(phase);
  progress.set_fraction_done(fraction);
  progress.set_phase_items_done(done);
  progress.set_phase_items_total(total);
  *progress.mutable_heartbeat_time() = ToProtoTime(absl::Now());
  {
    std::lock_guard<std::mutex> lock(beat->mu);
    beat->progress = progress;
    beat->params = params;
  }
  absl::StatusOr<bool> ok =
      repository_->UpdateProgress(job.project_id, job.version, worker_, progress, params);
  return ok.ok() && *ok;
}

absl::Status Reclusterer::RunPhases(const ClusteringRecord& job, Beat* beat) {
  const std::string& project = job.project_id;
  v1::ClusteringParams params = job.params;
  if (!Progress(job, beat, v1::CLUSTERING_PHASE_LOADING, 0.02, 0, 0, params))
    return absl::OkStatus();
  const absl::Time load_time = absl::Now();
  ASSIGN_OR_RETURN(std::vector<TraceRecord> traces,
                   repository_->LoadWindow(project, job.window_start, job.window_end,
                                           options_.max_window_traces));
  const int n = static_cast<int>(traces.size());
  auto fail = [&](const std::string& message) {
    return repository_->FailClustering(project, job.version, message);
  };
  if (n < options_.min_window_traces) {
    return fail(absl::StrCat("the window holds ", n, " flagged traces; at least ",
                             options_.min_window_traces, " are needed"));
  }
  const int requested_k = params.requested_k();
  if (requested_k > n / 4) {
    return fail(
        absl::StrCat("k = ", requested_k, " exceeds a quarter of the window's ", n, " traces"));
  }

  // Embedding: the builtin embedder is refitted on the window (a new vector space per version).
  if (!Progress(job, beat, v1::CLUSTERING_PHASE_EMBEDDING, 0.1, 0, n, params))
    return absl::OkStatus();
  std::vector<std::string> texts;
  texts.reserve(n);
  for (const TraceRecord& t : traces) texts.push_back(ThemeIndex::TextOf(t));
  engine::BuiltinEmbedderOptions eopts;
  eopts.dimension = params.embedder_dimension() > 0 ? params.embedder_dimension() : 256;
  eopts.seed = static_cast<uint64_t>(params.seed());
  absl::StatusOr<std::unique_ptr<engine::BuiltinEmbedder>> embedder =
      engine::BuiltinEmbedder::Fit(texts, eopts);
  if (!embedder.ok()) return fail("the embedder could not be fitted on the window's texts");
  std::vector<engine::Vector> vectors;
  vectors.reserve(n);
  for (int i = 0; i < n; ++i) {
    vectors.push_back((*embedder)->EmbedOne(texts[i]));
    if ((i + 1) % 5000 == 0 && !Progress(job, beat, v1::CLUSTERING_PHASE_EMBEDDING,
                                         0.1 + 0.3 * (i + 1) / n, i + 1, n, params)) {
      return absl::OkStatus();
    }
  }
  params.set_embedder_dimension((*embedder)->Dimension());

  // Clustering.
  if (!Progress(job, beat, v1::CLUSTERING_PHASE_CLUSTERING, 0.4, 0, n, params)) {
    return absl::OkStatus();
  }
  engine::KMeansOptions kopts;
  kopts.k = requested_k;
  kopts.min_k = 2;
  kopts.max_k = std::max(2, std::min(params.max_k() > 0 ? params.max_k() : 50, n / 4));
  kopts.seed = static_cast<uint64_t>(params.seed());
  // Warm start from the latest clustering's themes re-expressed in the new space (their members
  // inside the window), so themes usually continue and keep their ids at publish.
  ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest, repository_->LatestClustering(project));
  if (latest.has_value()) {
    ASSIGN_OR_RETURN(auto assigned, repository_->ListAssignments(project, latest->version));
    std::map<std::string, std::string> theme_of(assigned.begin(), assigned.end());
    std::map<std::string, int> index_of;
    std::vector<int> previous(n, -1);
    for (int i = 0; i < n; ++i) {
      auto it = theme_of.find(traces[i].trace_id);
      if (it == theme_of.end()) continue;
      previous[i] = index_of.emplace(it->second, static_cast<int>(index_of.size())).first->second;
    }
    if (!index_of.empty()) {
      kopts.initial_centroids =
          engine::PreviousCentroidsInNewSpace(vectors, previous, static_cast<int>(index_of.size()));
    }
  }
  absl::StatusOr<engine::ClusterResult> result = engine::ClusterVectors(vectors, kopts);
  if (!result.ok()) return fail("the window's traces could not be clustered");
  const int k = static_cast<int>(result->centroids.size());
  params.set_chosen_k(k);
  params.set_silhouette(result->silhouette);

  // Grouping: parent groups only when they group something (2 <= groups < k).
  if (!Progress(job, beat, v1::CLUSTERING_PHASE_GROUPING, 0.6, 0, k, params))
    return absl::OkStatus();
  std::vector<int> parent_of(k, -1);
  int group_count = 0;
  std::vector<engine::Vector> group_centroids;
  if (k >= 4) {
    absl::StatusOr<engine::Hierarchy> hierarchy =
        engine::GroupThemes(result->centroids, 0, static_cast<uint64_t>(params.seed()));
    if (hierarchy.ok() && hierarchy->parent_centroids.size() >= 2 &&
        static_cast<int>(hierarchy->parent_centroids.size()) < k) {
      parent_of = hierarchy->parent_of_theme;
      group_centroids = hierarchy->parent_centroids;
      group_count = static_cast<int>(group_centroids.size());
    }
  }
  params.set_group_count(group_count);

  // Naming.
  if (!Progress(job, beat, v1::CLUSTERING_PHASE_NAMING, 0.7, 0, k + group_count, params)) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, logic_->EffectiveSettings(project));
  const int keyword_count = settings.namer().builtin().keyword_count();
  const double threshold = params.assignment_similarity_threshold() > 0
                               ? params.assignment_similarity_threshold()
                               : settings.assignment_similarity_threshold();
  std::vector<std::string> inputs;
  inputs.reserve(n);
  for (const TraceRecord& t : traces) inputs.push_back(t.input_text);
  std::vector<engine::ThemeDescription> themes = engine::DescribeThemes(
      texts, result->labels, k, vectors, result->centroids, keyword_count, 20);
  std::vector<engine::ThemeDescription> groups;
  std::vector<int> group_labels(n, -1);
  if (group_count > 0) {
    for (int i = 0; i < n; ++i) {
      if (result->labels[i] >= 0) group_labels[i] = parent_of[result->labels[i]];
    }
    groups = engine::DescribeThemes(texts, group_labels, group_count, {}, {}, keyword_count, 0);
  }
  // Members: assigned when similar enough to their theme; the rest are outliers.
  std::vector<int> fresh(n, -1);
  for (int i = 0; i < n; ++i) {
    if (result->labels[i] >= 0 && result->similarity[i] >= threshold) fresh[i] = result->labels[i];
  }
  std::vector<std::set<std::string>> users(k);
  for (int i = 0; i < n; ++i) {
    if (fresh[i] >= 0) users[fresh[i]].insert(traces[i].user_key);
  }
  const int min_users =
      params.min_distinct_users() > 0 ? params.min_distinct_users() : settings.min_distinct_users();
  // Optional remote namer (deployment flags): names and describes the themes at or above the
  // privacy threshold (hidden ones are never sent); the builtin name stays on any error.
  std::vector<std::string> names(k), descriptions(k);
  for (int t = 0; t < k; ++t) names[t] = themes[t].name;
  if (options_.namer) {
    params.set_namer_name(options_.namer_name);
    auto snippets = [&](int theme, size_t max) {
      std::vector<std::string> out;
      for (int idx : themes[theme].representatives) {
        if (out.size() >= max) break;
        out.push_back(Snippet(inputs[idx]));
      }
      return out;
    };
    for (int t = 0; t < k; ++t) {
      if (static_cast<int>(users[t].size()) < min_users) continue;
      engine::NamingRequest request;
      for (const auto& [term, weight] : themes[t].keywords) request.keywords.push_back(term);
      request.in_theme_examples = snippets(t, static_cast<size_t>(options_.namer_max_examples));
      int nearest = -1;
      float best = -2;
      for (int o = 0; o < k; ++o) {
        if (o == t) continue;
        const float sim = engine::Dot(result->centroids[t], result->centroids[o]);
        if (sim > best) {
          best = sim;
          nearest = o;
        }
      }
      if (nearest >= 0) request.out_of_theme_examples = snippets(nearest, 3);
      request.language = options_.namer_language;
      absl::StatusOr<engine::NamingResult> named = options_.namer(request);
      if (named.ok() && !named->name.empty()) {
        names[t] = named->name.substr(0, 200);
        descriptions[t] = named->description.substr(0, 4096);
      } else if (!named.ok() && logger_ != nullptr) {
        logger_->Warn("remote namer failed; builtin name kept",
                      {{"project", project}, {"status", named.status().ToString()}});
      }
    }
  }

  if (!Progress(job, beat, v1::CLUSTERING_PHASE_PUBLISHING, 0.9, 0, n, params)) {
    return absl::OkStatus();
  }
  const std::shared_ptr<engine::BuiltinEmbedder> model(std::move(*embedder));
  const double id_threshold =
      params.id_stability_threshold() > 0 ? params.id_stability_threshold() : 0.7;

  auto plan_fn = [&](const PublishContext& context) -> absl::StatusOr<PublishPlan> {
    PublishPlan plan;
    plan.model.embedder_name = std::string(engine::BuiltinEmbedder::kName);
    plan.model.embedder_id = model->Id();
    plan.model.dimension = model->Dimension();
    plan.model.model = model->Serialize();
    // Previous themes and groups, indexed.
    std::vector<std::string> prev_themes, prev_groups;
    std::map<std::string, int> prev_theme_index, prev_group_index;
    std::map<std::string, std::string> prev_parent;
    for (const ClusterRecord& c : context.previous_clusters) {
      if (c.level == v1::CLUSTER_LEVEL_THEME) {
        prev_theme_index[c.cluster_id] = static_cast<int>(prev_themes.size());
        prev_themes.push_back(c.cluster_id);
        prev_parent[c.cluster_id] = c.parent_id;
      } else {
        prev_group_index[c.cluster_id] = static_cast<int>(prev_groups.size());
        prev_groups.push_back(c.cluster_id);
      }
    }
    std::map<std::string, std::string> prev_member(context.previous_members.begin(),
                                                   context.previous_members.end());
    // Sticky merges: the members merged sources held when merged get labels of their own (after
    // the active themes), so a fresh theme re-forming a source is recognized and folded.
    const int active_count = static_cast<int>(prev_themes.size());
    std::vector<std::string> merged_sources, merged_targets;
    std::map<std::string, int> merged_index, merged_label_of;
    for (const auto& m : context.merged_members) {
      auto inserted =
          merged_index.emplace(m.source_id, active_count + static_cast<int>(merged_sources.size()));
      if (inserted.second) {
        merged_sources.push_back(m.source_id);
        merged_targets.push_back(m.target_id);
      }
      merged_label_of[m.trace_id] = inserted.first->second;
    }
    std::vector<int> prev_labels(n, -1), prev_group_labels(n, -1), fresh_groups(n, -1);
    for (int i = 0; i < n; ++i) {
      auto it = prev_member.find(traces[i].trace_id);
      if (it != prev_member.end()) {
        auto t = prev_theme_index.find(it->second);
        if (t != prev_theme_index.end()) {
          prev_labels[i] = t->second;
          auto g = prev_group_index.find(prev_parent[it->second]);
          if (g != prev_group_index.end()) prev_group_labels[i] = g->second;
        }
      }
      auto merged = merged_label_of.find(traces[i].trace_id);
      if (merged != merged_label_of.end()) prev_labels[i] = merged->second;
      if (fresh[i] >= 0 && group_count > 0) fresh_groups[i] = parent_of[fresh[i]];
    }
    std::vector<int> theme_match = engine::MatchByMembers(
        prev_labels, fresh, active_count + static_cast<int>(merged_sources.size()), k,
        id_threshold);
    // A fresh theme matching a merged source: folded into the fresh theme that continues the
    // target (fold_into), or, when none does, it continues the target itself.
    std::vector<int> fold_into(k, -1);
    std::vector<std::string> fold_source(k);
    for (int t = 0; t < k; ++t) {
      if (theme_match[t] < active_count) continue;
      const int m = theme_match[t] - active_count;
      theme_match[t] = -1;
      const std::string& target = merged_targets[m];
      int continuing = -1;
      for (int g = 0; g < k; ++g) {
        if (theme_match[g] >= 0 && theme_match[g] < active_count &&
            prev_themes[theme_match[g]] == target) {
          continuing = g;
        }
      }
      auto target_index = prev_theme_index.find(target);
      if (continuing >= 0) {
        fold_into[t] = continuing;
        fold_source[t] = merged_sources[m];
      } else if (target_index != prev_theme_index.end()) {
        theme_match[t] = target_index->second;
      }
    }
    std::vector<int> group_match(group_count, -1);
    if (group_count > 0) {
      group_match =
          engine::MatchByMembers(prev_group_labels, fresh_groups,
                                 static_cast<int>(prev_groups.size()), group_count, id_threshold);
    }
    std::set<std::string> kept;
    std::vector<std::string> theme_ids(k), group_ids(group_count);
    for (int g = 0; g < group_count; ++g) {
      if (group_match[g] >= 0) {
        group_ids[g] = prev_groups[group_match[g]];
        kept.insert(group_ids[g]);
        ++plan.matched_count;
      } else {
        group_ids[g] = GenerateId();
        plan.new_ids.push_back(group_ids[g]);
      }
    }
    for (int t = 0; t < k; ++t) {
      if (fold_into[t] >= 0) {
        theme_ids[t] = fold_source[t];  // written as a MERGED row of the source's id
        plan.refolded_ids.push_back(theme_ids[t]);
      } else if (theme_match[t] >= 0) {
        theme_ids[t] = prev_themes[theme_match[t]];
        kept.insert(theme_ids[t]);
        ++plan.matched_count;
      } else {
        theme_ids[t] = GenerateId();
        plan.new_ids.push_back(theme_ids[t]);
      }
    }
    for (const ClusterRecord& c : context.previous_clusters) {
      if (kept.count(c.cluster_id) == 0) plan.retired_ids.push_back(c.cluster_id);
    }
    // Where each fresh theme's members go (itself, or the theme it is folded into).
    std::vector<int> home(k);
    for (int t = 0; t < k; ++t) home[t] = fold_into[t] >= 0 ? fold_into[t] : t;
    std::vector<std::set<std::string>> home_users(k);
    for (int t = 0; t < k; ++t) home_users[home[t]].insert(users[t].begin(), users[t].end());
    // A theme that absorbed folded ones is centred on all of its members.
    std::vector<engine::Vector> centroids = result->centroids;
    std::vector<bool> absorbed(k, false);
    for (int t = 0; t < k; ++t) {
      if (home[t] != t) absorbed[home[t]] = true;
    }
    for (int g = 0; g < k; ++g) {
      if (!absorbed[g]) continue;
      std::vector<int> members;
      for (int i = 0; i < n; ++i) {
        if (result->labels[i] >= 0 && home[result->labels[i]] == g) members.push_back(i);
      }
      engine::Vector mean = engine::MeanDirection(vectors, members);
      if (!mean.empty()) centroids[g] = std::move(mean);
    }
    int folded = 0;
    for (int t = 0; t < k; ++t) {
      ClusterRecord row;
      row.cluster_id = theme_ids[t];
      row.level = v1::CLUSTER_LEVEL_THEME;
      row.state = fold_into[t] >= 0 ? v1::CLUSTER_STATE_MERGED : v1::CLUSTER_STATE_ACTIVE;
      if (fold_into[t] >= 0) ++folded;
      row.parent_id = group_count > 0 ? group_ids[parent_of[t]] : "";
      row.name = names[t];
      row.description = descriptions[t];
      row.keywords = themes[t].keywords;
      row.key_phrases = themes[t].phrases;
      // Most central first, one per user (the proto's "from distinct users"), at most 5.
      std::set<std::string> example_users;
      for (int idx : themes[t].representatives) {
        if (row.examples.size() >= 5) break;
        if (!example_users.insert(traces[idx].user_key).second) continue;
        row.examples.push_back(
            {traces[idx].trace_id, Snippet(inputs[idx]), engine::Dot(vectors[idx], centroids[t])});
      }
      row.centroid = PackVector(centroids[t]);
      if (fold_into[t] < 0 && static_cast<int>(home_users[t].size()) < min_users) {
        ++plan.hidden_theme_count;
      }
      plan.clusters.push_back(std::move(row));
    }
    for (int g = 0; g < group_count; ++g) {
      ClusterRecord row;
      row.cluster_id = group_ids[g];
      row.level = v1::CLUSTER_LEVEL_GROUP;
      row.state = v1::CLUSTER_STATE_ACTIVE;
      row.name = groups[g].name;
      row.keywords = groups[g].keywords;
      row.key_phrases = groups[g].phrases;
      row.centroid = PackVector(group_centroids[g]);
      plan.clusters.push_back(std::move(row));
    }
    for (int i = 0; i < n; ++i) {
      Assignment a;
      a.trace_id = traces[i].trace_id;
      a.source = v1::ASSIGNMENT_SOURCE_RECLUSTER;
      a.embedding = PackVector(vectors[i]);
      if (result->labels[i] >= 0) {
        const int h = home[result->labels[i]];
        a.similarity = absorbed[h] ? engine::Dot(vectors[i], centroids[h]) : result->similarity[i];
        a.nearest_cluster_id = theme_ids[h];
      }
      if (fresh[i] >= 0) {
        a.cluster_id = theme_ids[home[fresh[i]]];
        ++plan.member_count;
      } else {
        ++plan.unassigned_count;
      }
      plan.assignments.push_back(std::move(a));
    }
    plan.theme_count = k - folded;
    plan.group_count = group_count;
    plan.params = params;
    return plan;
  };
  auto late = [&](const std::vector<TraceRecord>& late_traces,
                  const PublishPlan& plan) -> absl::StatusOr<std::vector<Assignment>> {
    ThemeIndex index;
    index.embedder = model;
    for (const ClusterRecord& c : plan.clusters) {
      if (c.level != v1::CLUSTER_LEVEL_THEME || c.state != v1::CLUSTER_STATE_ACTIVE) continue;
      index.theme_ids.push_back(c.cluster_id);
      index.parent_ids.push_back(c.parent_id);
      index.centroids.push_back(UnpackVector(c.centroid));
    }
    std::vector<Assignment> out;
    for (const TraceRecord& t : late_traces) {
      out.push_back(index.Assign(t.trace_id, index.Embed(ThemeIndex::TextOf(t)), threshold,
                                 v1::ASSIGNMENT_SOURCE_STREAMING));
    }
    return out;
  };
  absl::Status published =
      repository_->PublishClustering(project, job.version, worker_, load_time, plan_fn, late);
  if (published.code() == absl::StatusCode::kFailedPrecondition) {
    return absl::OkStatus();  // the job was taken from us (stale, failed): nothing to publish
  }
  if (published.ok() && logger_ != nullptr) {
    logger_->Info("clustering published", {{"project", project},
                                           {"version", absl::StrCat(job.version)},
                                           {"themes", absl::StrCat(k)},
                                           {"traces", absl::StrCat(n)}});
  }
  return published;
}

}  // namespace flywheel::clustering
