// GetClusterStats: per-theme time series with shares, mixes, breakdowns and trends.

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/clustering/clustering_logic.h"
#include "services/clustering/util.h"

namespace flywheel::clustering {
namespace {

constexpr int kMaxBuckets = 400;
// ISO weeks start on Monday; 1970-01-01 was a Thursday, so 1969-12-29 was a Monday.
const absl::Time kMondayOrigin = absl::UnixEpoch() - absl::Hours(24 * 3);

int64_t Div(absl::Duration num, absl::Duration den) {
  absl::Duration rem;
  return absl::IDivDuration(num, den, &rem);
}

absl::Time FloorTo(absl::Time t, absl::Duration width, absl::Time origin) {
  const int64_t n = Div(t - origin, width);
  absl::Time floor = origin + n * width;
  if (floor > t) floor -= width;  // negative offsets truncate toward zero
  return floor;
}

struct Accumulator {
  int64_t count = 0;
  std::set<std::string> users;
  int64_t explicit_count = 0, implicit_count = 0, outcome_count = 0;
  std::map<std::string, int64_t> feature_areas, model_versions, prompt_versions;
  int64_t missing_fa = 0, missing_mv = 0, missing_pv = 0;

  void Add(const StatsRow& r) {
    ++count;
    users.insert(r.user_key);
    if (r.signal_classes & kSignalExplicit) ++explicit_count;
    if (r.signal_classes & kSignalImplicit) ++implicit_count;
    if (r.signal_classes & kSignalOutcome) ++outcome_count;
    auto add = [](std::map<std::string, int64_t>& m, int64_t& missing, const std::string& v) {
      if (v.empty()) {
        ++missing;
      } else {
        ++m[v];
      }
    };
    add(feature_areas, missing_fa, r.feature_area);
    add(model_versions, missing_mv, r.model_version);
    add(prompt_versions, missing_pv, r.prompt_version);
  }
};

v1::Breakdown MakeBreakdown(const std::map<std::string, int64_t>& values, int64_t missing) {
  std::vector<std::pair<std::string, int64_t>> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    if (a.second != b.second) return a.second > b.second;
    return a.first < b.first;
  });
  v1::Breakdown out;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i < 10) {
      v1::BreakdownEntry* e = out.add_entries();
      e->set_value(sorted[i].first);
      e->set_count(sorted[i].second);
    } else {
      out.set_other_count(out.other_count() + sorted[i].second);
    }
  }
  out.set_missing_count(missing);
  return out;
}

}  // namespace

TrendResult ComputeTrend(const std::vector<int64_t>& counts, const std::vector<double>& shares,
                         const std::vector<bool>& complete, int first_seen_bucket) {
  TrendResult result;
  const int n = static_cast<int>(counts.size());
  if (first_seen_bucket >= 0 && first_seen_bucket >= n - 2) {
    result.trend = v1::TREND_NEW;
    return result;
  }
  int last = -1;
  for (int i = n - 1; i >= 0; --i) {
    if (complete[i]) {
      last = i;
      break;
    }
  }
  std::vector<int> baseline;
  for (int i = last - 1; i >= 0 && baseline.size() < 4; --i) {
    if (complete[i]) baseline.push_back(i);
  }
  if (last < 0 || baseline.empty()) return result;  // fewer than 2 complete buckets
  int64_t volume = counts[last];
  double mean = 0;
  for (int i : baseline) {
    volume += counts[i];
    mean += shares[i];
  }
  mean /= static_cast<double>(baseline.size());
  if (volume < 10) return result;
  const double share = shares[last];
  result.ratio = mean > 0 ? share / mean : 0.0;
  if (mean <= 0) {
    result.trend = share > 0 ? v1::TREND_GROWING : v1::TREND_STABLE;
  } else if (share >= 1.25 * mean) {
    result.trend = v1::TREND_GROWING;
  } else if (share <= 0.8 * mean) {
    result.trend = v1::TREND_SHRINKING;
  } else {
    result.trend = v1::TREND_STABLE;
  }
  return result;
}

absl::StatusOr<v1::GetClusterStatsResponse> ClusteringLogic::GetClusterStats(
    const std::string& project, const v1::GetClusterStatsRequest& request) {
  if (!v1::StatsGranularity_IsValid(request.granularity())) {
    return absl::InvalidArgumentError("granularity: unknown value");
  }
  const v1::StatsGranularity granularity = request.granularity() == v1::STATS_GRANULARITY_WEEK
                                               ? v1::STATS_GRANULARITY_WEEK
                                               : v1::STATS_GRANULARITY_DAY;
  if (request.cluster_ids_size() > 100) {
    return absl::InvalidArgumentError("cluster_ids: at most 100");
  }
  int max_clusters = 20;
  if (request.cluster_ids_size() == 0 && request.max_clusters() != 0) {
    if (request.max_clusters() < 1 || request.max_clusters() > 100) {
      return absl::InvalidArgumentError("max_clusters: must be in 1..100");
    }
    max_clusters = request.max_clusters();
  }
  const absl::Duration width =
      granularity == v1::STATS_GRANULARITY_WEEK ? absl::Hours(24 * 7) : absl::Hours(24);
  const absl::Time origin =
      granularity == v1::STATS_GRANULARITY_WEEK ? kMondayOrigin : absl::UnixEpoch();
  const absl::Time now = options_.now();
  const absl::Time end =
      request.time_range().has_end_time() ? FromProtoTime(request.time_range().end_time()) : now;
  const absl::Time start =
      request.time_range().has_start_time()
          ? FromProtoTime(request.time_range().start_time())
          : end - (granularity == v1::STATS_GRANULARITY_WEEK ? absl::Hours(24 * 7 * 12)
                                                             : absl::Hours(24 * 30));
  if (end < start) return absl::InvalidArgumentError("time_range: end before start");
  const absl::Time first_edge = FloorTo(start, width, origin);
  absl::Time last_edge = FloorTo(end, width, origin);
  if (last_edge < end || last_edge == first_edge) last_edge += width;
  const int64_t bucket_count = Div(last_edge - first_edge, width);
  if (bucket_count > kMaxBuckets) {
    return absl::InvalidArgumentError("time_range: more than 400 buckets");
  }
  const int n = static_cast<int>(bucket_count);
  std::vector<absl::Time> bucket_start(n);
  std::vector<bool> partial(n);
  for (int i = 0; i < n; ++i) {
    bucket_start[i] = first_edge + i * width;
    const absl::Time bucket_end = bucket_start[i] + width;
    partial[i] = bucket_start[i] < start || bucket_end > end || bucket_end > now;
  }
  auto bucket_of = [&](absl::Time t) { return static_cast<int>(Div(t - first_edge, width)); };

  ASSIGN_OR_RETURN(v1::ClusteringSettings settings, EffectiveSettings(project));
  const int min_users = settings.min_distinct_users();
  ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest, repository_->LatestClustering(project));
  std::vector<ClusterRecord> rows;
  if (latest.has_value()) {
    ASSIGN_OR_RETURN(rows, repository_->ListClusterRows(project, latest->version));
  }
  std::map<std::string, const ClusterRecord*> by_id;
  for (const ClusterRecord& r : rows) by_id[r.cluster_id] = &r;
  ASSIGN_OR_RETURN(std::vector<StatsRow> stats, repository_->LoadStatsRows(project, start, end));

  // A series: the themes it sums, and how it is shown.
  struct Series {
    std::string id;
    std::string name;
    bool hidden = false;
    bool aggregate = false;
    std::set<std::string> themes;
  };
  std::vector<Series> series;
  if (request.cluster_ids_size() > 0) {
    for (const std::string& id : request.cluster_ids()) {
      Series s;
      s.id = id;
      auto it = by_id.find(id);
      const ClusterRecord* row = nullptr;
      std::optional<ClusterRecord> fallback;
      if (it != by_id.end()) {
        row = it->second;
      } else {
        ASSIGN_OR_RETURN(fallback, repository_->GetClusterRow(project, id, 0));
        if (!fallback.has_value()) {
          return absl::NotFoundError(absl::StrCat("cluster ", id, " not found"));
        }
        row = &*fallback;
      }
      s.hidden = row->distinct_users < min_users;
      if (!s.hidden) s.name = row->operator_name.value_or(row->name);
      if (row->level == v1::CLUSTER_LEVEL_GROUP) {
        for (const ClusterRecord& r : rows) {
          if (r.level == v1::CLUSTER_LEVEL_THEME && r.parent_id == id)
            s.themes.insert(r.cluster_id);
        }
      } else {
        s.themes.insert(id);
      }
      series.push_back(std::move(s));
    }
  } else {
    std::map<std::string, int64_t> in_range;
    for (const StatsRow& r : stats) {
      if (!r.cluster_id.empty()) ++in_range[r.cluster_id];
    }
    std::vector<const ClusterRecord*> listed;
    Series aggregate;
    aggregate.aggregate = true;
    aggregate.hidden = true;
    for (const ClusterRecord& r : rows) {
      if (r.level != v1::CLUSTER_LEVEL_THEME || r.state != v1::CLUSTER_STATE_ACTIVE) continue;
      if (r.distinct_users < min_users) {
        aggregate.themes.insert(r.cluster_id);
      } else {
        listed.push_back(&r);
      }
    }
    std::sort(listed.begin(), listed.end(), [&](const ClusterRecord* a, const ClusterRecord* b) {
      const int64_t ca = in_range[a->cluster_id], cb = in_range[b->cluster_id];
      if (ca != cb) return ca > cb;
      return a->cluster_id < b->cluster_id;
    });
    for (size_t i = 0; i < listed.size() && static_cast<int>(i) < max_clusters; ++i) {
      Series s;
      s.id = listed[i]->cluster_id;
      s.name = listed[i]->operator_name.value_or(listed[i]->name);
      s.themes.insert(s.id);
      series.push_back(std::move(s));
    }
    if (latest.has_value()) series.push_back(std::move(aggregate));
  }

  // Accumulate.
  std::vector<Accumulator> totals(n);
  std::map<std::string, std::vector<size_t>> series_of_theme;
  for (size_t s = 0; s < series.size(); ++s) {
    for (const auto& t : series[s].themes) series_of_theme[t].push_back(s);
  }
  std::vector<std::vector<Accumulator>> acc(series.size(), std::vector<Accumulator>(n));
  for (const StatsRow& r : stats) {
    const int b = bucket_of(r.create_time);
    if (b < 0 || b >= n) continue;
    totals[b].Add(r);
    if (r.cluster_id.empty()) continue;
    auto it = series_of_theme.find(r.cluster_id);
    if (it == series_of_theme.end()) continue;
    for (size_t s : it->second) acc[s][b].Add(r);
  }
  std::vector<std::string> theme_ids;
  for (const auto& [id, unused] : series_of_theme) theme_ids.push_back(id);
  std::map<std::string, absl::Time> first_seen;
  if (!theme_ids.empty()) {
    ASSIGN_OR_RETURN(auto seen, repository_->FirstSeen(project, theme_ids));
    for (const auto& [id, t] : seen) first_seen[id] = t;
  }

  auto fill_bucket = [&](v1::StatsBucket* out, int b, const Accumulator& a, bool breakdowns) {
    *out->mutable_start_time() = ToProtoTime(bucket_start[b]);
    out->set_partial(partial[b]);
    out->set_trace_count(a.count);
    out->set_distinct_users(static_cast<int64_t>(a.users.size()));
    out->set_share_of_flagged(totals[b].count > 0 ? static_cast<double>(a.count) /
                                                        static_cast<double>(totals[b].count)
                                                  : 0.0);
    out->mutable_signal_mix()->set_explicit_count(a.explicit_count);
    out->mutable_signal_mix()->set_implicit_count(a.implicit_count);
    out->mutable_signal_mix()->set_outcome_count(a.outcome_count);
    if (breakdowns) {
      *out->mutable_feature_areas() = MakeBreakdown(a.feature_areas, a.missing_fa);
      *out->mutable_model_versions() = MakeBreakdown(a.model_versions, a.missing_mv);
      *out->mutable_prompt_versions() = MakeBreakdown(a.prompt_versions, a.missing_pv);
    }
  };

  v1::GetClusterStatsResponse response;
  response.set_granularity(granularity);
  *response.mutable_time_range()->mutable_start_time() = ToProtoTime(start);
  *response.mutable_time_range()->mutable_end_time() = ToProtoTime(end);
  response.set_clustering_version(latest ? latest->version : 0);
  for (int b = 0; b < n; ++b) fill_bucket(response.add_flagged_totals(), b, totals[b], false);
  std::vector<bool> complete(n);
  for (int b = 0; b < n; ++b) complete[b] = !partial[b];
  for (size_t s = 0; s < series.size(); ++s) {
    const Series& def = series[s];
    v1::ClusterSeries* out = response.add_series();
    out->set_cluster_id(def.aggregate ? "" : def.id);
    out->set_cluster_name(def.hidden ? "" : def.name);
    out->set_hidden_by_privacy_threshold(def.hidden);
    out->set_small_themes_aggregate(def.aggregate);
    std::vector<int64_t> counts(n);
    std::vector<double> shares(n);
    int64_t total = 0;
    for (int b = 0; b < n; ++b) {
      v1::StatsBucket* bucket = out->add_buckets();
      fill_bucket(bucket, b, acc[s][b], !def.hidden);
      counts[b] = acc[s][b].count;
      shares[b] = bucket->share_of_flagged();
      total += counts[b];
    }
    out->set_total_trace_count(total);
    std::optional<absl::Time> first;
    for (const auto& t : def.themes) {
      auto it = first_seen.find(t);
      if (it != first_seen.end() && (!first || it->second < *first)) first = it->second;
    }
    int first_bucket = -1;
    if (first.has_value()) {
      *out->mutable_first_seen_time() = ToProtoTime(*first);
      if (*first >= first_edge) first_bucket = bucket_of(*first);
    }
    const TrendResult trend = ComputeTrend(counts, shares, complete, first_bucket);
    out->set_trend(trend.trend);
    out->set_trend_ratio(trend.ratio);
  }
  return response;
}

}  // namespace flywheel::clustering
