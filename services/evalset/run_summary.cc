#include "services/evalset/run_summary.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace flywheel::evalset {
namespace {

google::protobuf::Duration Micros(int64_t micros) {
  google::protobuf::Duration d;
  d.set_seconds(micros / 1000000);
  d.set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
  return d;
}

}  // namespace

v1::ResultStats StatsOf(const std::vector<const ResultFacts*>& results) {
  v1::ResultStats stats;
  double score_sum = 0;
  int64_t cost = 0;
  std::vector<int64_t> latencies;
  for (const ResultFacts* r : results) {
    stats.set_result_count(stats.result_count() + 1);
    if (r->verdict == v1::VERDICT_PASS) stats.set_passed_count(stats.passed_count() + 1);
    if (r->verdict == v1::VERDICT_FAIL) stats.set_failed_count(stats.failed_count() + 1);
    if (r->verdict == v1::VERDICT_ERROR) stats.set_errored_count(stats.errored_count() + 1);
    if (r->score.has_value()) {
      score_sum += *r->score;
      stats.set_scored_count(stats.scored_count() + 1);
    }
    if (r->cost_micros.has_value()) cost += *r->cost_micros;
    if (r->latency_us.has_value()) latencies.push_back(*r->latency_us);
  }
  if (stats.result_count() > 0) {
    stats.set_pass_rate(static_cast<double>(stats.passed_count()) /
                        static_cast<double>(stats.result_count()));
  }
  if (stats.scored_count() > 0) {
    stats.set_mean_score(score_sum / static_cast<double>(stats.scored_count()));
  }
  stats.set_total_cost_micros(cost);
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    long double sum = 0;
    for (int64_t l : latencies) sum += l;
    *stats.mutable_mean_latency() = Micros(
        static_cast<int64_t>(std::llround(sum / static_cast<long double>(latencies.size()))));
    // Nearest rank: the smallest value with at least 95% of the values at or below it.
    const size_t rank =
        static_cast<size_t>(std::ceil(0.95 * static_cast<double>(latencies.size())));
    *stats.mutable_p95_latency() = Micros(latencies[std::max<size_t>(rank, 1) - 1]);
  }
  return stats;
}

v1::RunSummary ComputeRunSummary(const std::vector<ThemeCount>& themes,
                                 const std::vector<ResultFacts>& results, bool full) {
  v1::RunSummary summary;
  int64_t case_count = 0;
  for (const ThemeCount& t : themes) case_count += t.case_count;
  std::vector<const ResultFacts*> all;
  std::map<std::string, std::vector<const ResultFacts*>> by_theme;
  for (const ResultFacts& r : results) {
    all.push_back(&r);
    by_theme[r.theme_id].push_back(&r);
  }
  *summary.mutable_overall() = StatsOf(all);
  summary.mutable_overall()->set_case_count(case_count);
  summary.mutable_overall()->set_missing_count(case_count - summary.overall().result_count());
  if (!full) return summary;
  std::vector<v1::ThemeStats> out;
  for (const ThemeCount& t : themes) {
    v1::ThemeStats theme_stats;
    theme_stats.mutable_theme()->set_theme_id(t.theme_id);
    theme_stats.mutable_theme()->set_name(t.theme_name);
    *theme_stats.mutable_stats() = StatsOf(by_theme[t.theme_id]);
    theme_stats.mutable_stats()->set_case_count(t.case_count);
    theme_stats.mutable_stats()->set_missing_count(t.case_count -
                                                   theme_stats.stats().result_count());
    out.push_back(std::move(theme_stats));
  }
  std::sort(out.begin(), out.end(), [](const v1::ThemeStats& a, const v1::ThemeStats& b) {
    if (a.stats().case_count() != b.stats().case_count()) {
      return a.stats().case_count() > b.stats().case_count();
    }
    return a.theme().theme_id() < b.theme().theme_id();
  });
  for (v1::ThemeStats& t : out) *summary.add_themes() = std::move(t);
  return summary;
}

}  // namespace flywheel::evalset
