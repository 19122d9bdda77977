#include "services/annotation/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"

namespace flywheel::annotation {
namespace {

absl::Status Invalid(absl::string_view path, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ".", field, ": ", what));
}

bool IsStratified(v1::SamplingStrategy strategy) {
  return strategy == v1::SAMPLING_STRATEGY_STRATIFIED_BY_FEATURE_AREA ||
         strategy == v1::SAMPLING_STRATEGY_CLUSTER_BALANCED;
}

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// Uniform index in [0, bound) from a 64-bit generator (rejection sampling: no modulo bias, and
// the same sequence on every platform, unlike std::uniform_int_distribution).
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % bound;
  uint64_t r;
  do {
    r = rng();
  } while (r >= limit);
  return r % bound;
}

template <typename T>
void Shuffle(std::vector<T>& items, std::mt19937_64& rng) {
  for (size_t i = items.size(); i > 1; --i) {
    std::swap(items[i - 1], items[UniformBelow(rng, i)]);
  }
}

// Indices of the first occurrence of each trace id.
std::vector<size_t> DistinctCandidates(const std::vector<SamplingCandidate>& candidates) {
  absl::flat_hash_set<absl::string_view> seen;
  std::vector<size_t> out;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (seen.insert(candidates[i].trace_id).second) out.push_back(i);
  }
  return out;
}

int64_t Remaining(int64_t quota, double elapsed_fraction, int64_t used) {
  return std::max<int64_t>(0, ProRataAllowance(quota, elapsed_fraction) - used);
}

std::vector<SampledItem> SelectAll(const SamplingInput& input, const v1::Sampling& sampling) {
  int64_t budget =
      Remaining(sampling.max_items_per_period(), input.elapsed_fraction, input.usage.sampled_total);
  std::vector<SampledItem> out;
  for (size_t index : DistinctCandidates(input.candidates)) {
    if (budget-- <= 0) break;
    out.push_back({index, "", 0});
  }
  return out;
}

std::vector<SampledItem> SelectNoveltyFirst(const SamplingInput& input,
                                            const v1::Sampling& sampling) {
  int64_t budget =
      Remaining(sampling.max_items_per_period(), input.elapsed_fraction, input.usage.sampled_total);
  const auto& c = input.candidates;
  std::vector<size_t> order = DistinctCandidates(c);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return c[a].novelty > c[b].novelty; });
  absl::flat_hash_map<std::string, int64_t> theme_items = input.queue_items_per_theme;
  std::vector<SampledItem> out;
  // Walk groups of equal novelty; inside a group take, one at a time, the candidate whose theme
  // has the fewest items in the queue (counting those taken so far), then the earliest, then the
  // smallest trace id.
  for (size_t begin = 0; begin < order.size() && budget > 0;) {
    size_t end = begin;
    while (end < order.size() && c[order[end]].novelty == c[order[begin]].novelty) ++end;
    std::vector<size_t> group(order.begin() + static_cast<std::ptrdiff_t>(begin),
                              order.begin() + static_cast<std::ptrdiff_t>(end));
    while (!group.empty() && budget > 0) {
      auto best = group.begin();
      for (auto it = group.begin() + 1; it != group.end(); ++it) {
        const SamplingCandidate& x = c[*it];
        const SamplingCandidate& y = c[*best];
        const int64_t nx = theme_items[x.theme_id];
        const int64_t ny = theme_items[y.theme_id];
        if (nx != ny) {
          if (nx < ny) best = it;
        } else if (x.create_time != y.create_time) {
          if (x.create_time < y.create_time) best = it;
        } else if (x.trace_id < y.trace_id) {
          best = it;
        }
      }
      ++theme_items[c[*best].theme_id];
      out.push_back({*best, "", c[*best].novelty});
      group.erase(best);
      --budget;
    }
    begin = end;
  }
  return out;
}

std::vector<SampledItem> SelectStratified(const SamplingInput& input,
                                          const v1::Sampling& sampling) {
  const bool by_theme = sampling.strategy() == v1::SAMPLING_STRATEGY_CLUSTER_BALANCED;
  std::mt19937_64 rng(input.seed);
  // Strata in name order, each with its candidates in input order, then shuffled.
  std::map<std::string, std::vector<size_t>> strata;
  for (size_t index : DistinctCandidates(input.candidates)) {
    const SamplingCandidate& candidate = input.candidates[index];
    strata[by_theme ? candidate.theme_id : candidate.feature_area].push_back(index);
  }
  struct Stratum {
    std::string name;
    std::vector<size_t> shuffled;
    size_t next = 0;
    int64_t budget = 0;
    int64_t period_count = 0;  // used this period + taken now
    uint64_t tie_rank = 0;
  };
  std::vector<Stratum> states;
  for (auto& [name, indices] : strata) {
    Stratum s;
    s.name = name;
    s.shuffled = std::move(indices);
    Shuffle(s.shuffled, rng);
    auto used = input.usage.sampled_per_stratum.find(name);
    s.period_count = used == input.usage.sampled_per_stratum.end() ? 0 : used->second;
    s.budget = Remaining(sampling.count_per_stratum(), input.elapsed_fraction, s.period_count);
    states.push_back(std::move(s));
  }
  // A random order among strata with equal counts.
  std::vector<uint64_t> ranks(states.size());
  for (size_t i = 0; i < ranks.size(); ++i) ranks[i] = i;
  Shuffle(ranks, rng);
  for (size_t i = 0; i < states.size(); ++i) states[i].tie_rank = ranks[i];

  int64_t total = std::numeric_limits<int64_t>::max();
  if (sampling.max_items_per_period() > 0) {
    total = Remaining(sampling.max_items_per_period(), input.elapsed_fraction,
                      input.usage.sampled_total);
  }
  std::vector<SampledItem> out;
  while (total > 0) {
    Stratum* pick = nullptr;
    for (Stratum& s : states) {
      if (s.budget <= 0 || s.next >= s.shuffled.size()) continue;
      if (pick == nullptr || s.period_count < pick->period_count ||
          (s.period_count == pick->period_count && s.tie_rank < pick->tie_rank)) {
        pick = &s;
      }
    }
    if (pick == nullptr) break;
    out.push_back({pick->shuffled[pick->next++], pick->name, 0});
    --pick->budget;
    ++pick->period_count;
    --total;
  }
  return out;
}

bool Contains(const google::protobuf::RepeatedPtrField<std::string>& list,
              absl::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

}  // namespace

v1::Sampling EffectiveSampling(const v1::Sampling& sampling) {
  v1::Sampling out = sampling;
  if (out.strategy() == v1::SAMPLING_STRATEGY_UNSPECIFIED) {
    out.set_strategy(v1::SAMPLING_STRATEGY_ALL);
  }
  if (out.period() == v1::SAMPLING_PERIOD_UNSPECIFIED) out.set_period(v1::SAMPLING_PERIOD_DAY);
  if (out.count_per_stratum() <= 0) out.set_count_per_stratum(kDefaultCountPerStratum);
  if (out.max_items_per_period() <= 0 && !IsStratified(out.strategy())) {
    out.set_max_items_per_period(kDefaultMaxItemsPerPeriod);
  }
  if (out.max_items_per_period() < 0) out.set_max_items_per_period(0);
  return out;
}

absl::Status ValidateSampling(const v1::Sampling& sampling, absl::string_view path) {
  if (!v1::SamplingStrategy_IsValid(sampling.strategy())) {
    return Invalid(path, "strategy", "unknown value");
  }
  if (!v1::SamplingPeriod_IsValid(sampling.period())) {
    return Invalid(path, "period", "unknown value");
  }
  if (sampling.count_per_stratum() < 0 || sampling.count_per_stratum() > kMaxCountPerStratum) {
    return Invalid(path, "count_per_stratum",
                   absl::StrCat("must be in 1..", kMaxCountPerStratum, " (0 = default ",
                                kDefaultCountPerStratum, ")"));
  }
  if (sampling.max_items_per_period() < 0 ||
      sampling.max_items_per_period() > kMaxMaxItemsPerPeriod) {
    return Invalid(path, "max_items_per_period",
                   absl::StrCat("must be in 0..", kMaxMaxItemsPerPeriod));
  }
  const double share = sampling.random_baseline_share();
  if (!std::isfinite(share) || share < 0 || share > kMaxRandomBaselineShare) {
    return Invalid(path, "random_baseline_share", "must be in [0, 0.2]");
  }
  return absl::OkStatus();
}

PeriodBounds PeriodContaining(v1::SamplingPeriod period, absl::Time now) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  absl::CivilDay day = absl::ToCivilDay(now, utc);
  if (period == v1::SAMPLING_PERIOD_WEEK) {
    // absl::Weekday counts from monday = 0.
    day -= static_cast<int>(absl::GetWeekday(day));
    return {absl::FromCivil(day, utc), absl::FromCivil(day + 7, utc)};
  }
  return {absl::FromCivil(day, utc), absl::FromCivil(day + 1, utc)};
}

double ElapsedFraction(const PeriodBounds& bounds, absl::Time now) {
  const absl::Duration length = bounds.end - bounds.start;
  if (length <= absl::ZeroDuration()) return 1;
  return std::clamp(absl::FDivDuration(now - bounds.start, length), 0.0, 1.0);
}

int64_t ProRataAllowance(int64_t quota, double elapsed_fraction) {
  if (quota <= 0) return 0;
  if (!(elapsed_fraction < 1)) return quota;  // also NaN
  if (elapsed_fraction <= 0) return 0;
  // The small epsilon keeps 0.3 * 10 from flooring to 2.
  const double allowed = std::floor(static_cast<double>(quota) * elapsed_fraction + 1e-9);
  return std::min<int64_t>(quota, static_cast<int64_t>(allowed));
}

std::vector<SampledItem> SelectCandidates(const SamplingInput& input) {
  const v1::Sampling sampling = EffectiveSampling(input.sampling);
  switch (sampling.strategy()) {
    case v1::SAMPLING_STRATEGY_STRATIFIED_BY_FEATURE_AREA:
    case v1::SAMPLING_STRATEGY_CLUSTER_BALANCED:
      return SelectStratified(input, sampling);
    case v1::SAMPLING_STRATEGY_NOVELTY_FIRST:
      return SelectNoveltyFirst(input, sampling);
    default:
      return SelectAll(input, sampling);
  }
}

int64_t RandomBaselineCount(double random_baseline_share, int64_t sampled_total_in_period,
                            int64_t baseline_total_in_period) {
  if (!std::isfinite(random_baseline_share) || random_baseline_share <= 0 ||
      sampled_total_in_period <= 0) {
    return 0;
  }
  const double share = std::min(random_baseline_share, kMaxRandomBaselineShare);
  const double target =
      std::floor(static_cast<double>(sampled_total_in_period) * share / (1 - share) + 1e-9);
  return std::max<int64_t>(0, static_cast<int64_t>(target) - baseline_total_in_period);
}

absl::Status ValidateSourceRule(const v1::SourceRule& rule, absl::string_view path) {
  if (!v1::QueueSource_IsValid(rule.source())) return Invalid(path, "source", "unknown value");
  if (rule.cluster_ids_size() > 100) return Invalid(path, "cluster_ids", "at most 100");
  for (int i = 0; i < rule.cluster_ids_size(); ++i) {
    const std::string& id = rule.cluster_ids(i);
    if (id.empty() || id.size() > 128) {
      return Invalid(path, absl::StrCat("cluster_ids[", i, "]"), "must be 1..128 bytes");
    }
  }
  if (rule.signal_kinds_size() > 50) return Invalid(path, "signal_kinds", "at most 50");
  for (int i = 0; i < rule.signal_kinds_size(); ++i) {
    const std::string& kind = rule.signal_kinds(i);
    if (kind.empty() || kind.size() > 64) {
      return Invalid(path, absl::StrCat("signal_kinds[", i, "]"), "must be 1..64 bytes");
    }
  }
  if (rule.feature_areas_size() > 100) return Invalid(path, "feature_areas", "at most 100");
  for (int i = 0; i < rule.feature_areas_size(); ++i) {
    const std::string& area = rule.feature_areas(i);
    if (area.empty() || area.size() > 128) {
      return Invalid(path, absl::StrCat("feature_areas[", i, "]"), "must be 1..128 bytes");
    }
  }
  const auto& score = rule.score_range();
  if ((score.has_min() && !std::isfinite(score.min())) ||
      (score.has_max() && !std::isfinite(score.max()))) {
    return Invalid(path, "score_range", "bounds must be finite");
  }
  if (score.has_min() && score.has_max() && score.min() > score.max()) {
    return Invalid(path, "score_range", "min is above max");
  }
  const auto& window = rule.time_window();
  const bool has_window = window.has_start_time() || window.has_end_time();
  if (window.has_start_time() && window.has_end_time() &&
      ToTime(window.end_time()) < ToTime(window.start_time())) {
    return Invalid(path, "time_window", "end_time is before start_time");
  }
  if (rule.has_max_trace_age()) {
    const absl::Duration age = ToDuration(rule.max_trace_age());
    if (has_window && age != absl::ZeroDuration()) {
      return Invalid(path, "max_trace_age", "mutually exclusive with time_window");
    }
    if (age != absl::ZeroDuration() && (age < absl::Hours(1) || age > absl::Hours(24 * 365))) {
      return Invalid(path, "max_trace_age", "must be in 1 h..365 days");
    }
  }
  return absl::OkStatus();
}

bool MatchesSourceRule(const v1::SourceRule& rule, const SourceFacts& facts, absl::Time now,
                       const std::vector<std::string>& resolved_cluster_ids) {
  if (!resolved_cluster_ids.empty()) {
    auto in = [&](const std::string& id) {
      return !id.empty() && std::find(resolved_cluster_ids.begin(), resolved_cluster_ids.end(),
                                      id) != resolved_cluster_ids.end();
    };
    if (!in(facts.theme_id) && !in(facts.parent_group_id)) return false;
  } else if (rule.cluster_ids_size() > 0) {
    const bool theme = !facts.theme_id.empty() && Contains(rule.cluster_ids(), facts.theme_id);
    const bool group =
        !facts.parent_group_id.empty() && Contains(rule.cluster_ids(), facts.parent_group_id);
    if (!theme && !group) return false;
  }
  if (rule.signal_kinds_size() > 0) {
    bool any = false;
    for (const std::string& kind : facts.signal_kinds) {
      for (const std::string& wanted : rule.signal_kinds()) {
        if (kind == wanted || kind == absl::StrCat("derived_", wanted)) any = true;
      }
    }
    if (!any) return false;
  }
  if (rule.feature_areas_size() > 0 && !Contains(rule.feature_areas(), facts.feature_area)) {
    return false;
  }
  const auto& score = rule.score_range();
  if (score.has_min() || score.has_max()) {
    if (!facts.quality_score) return false;
    if (score.has_min() && *facts.quality_score < score.min()) return false;
    if (score.has_max() && *facts.quality_score > score.max()) return false;
  }
  const auto& window = rule.time_window();
  if (window.has_start_time() && facts.create_time < ToTime(window.start_time())) return false;
  if (window.has_end_time() && facts.create_time >= ToTime(window.end_time())) return false;
  if (rule.has_max_trace_age() && ToDuration(rule.max_trace_age()) > absl::ZeroDuration() &&
      facts.create_time < now - ToDuration(rule.max_trace_age())) {
    return false;
  }
  return true;
}

std::string InputText(const ::flywheel::common::v1::LlmInput& input) {
  if (input.has_messages()) {
    std::string user, all;
    bool any_user = false;
    for (int i = 0; i < input.messages().messages_size(); ++i) {
      const auto& message = input.messages().messages(i);
      if (message.role() == "user") {
        absl::StrAppend(&user, any_user ? "\n" : "", message.content());
        any_user = true;
      }
      absl::StrAppend(&all, i > 0 ? "\n" : "", message.content());
    }
    return any_user ? user : all;
  }
  return input.prompt();
}

}  // namespace flywheel::annotation
