#pragma once

// Auto-fill sampling of flywheel.annotation.v1 (see SourceRule, SamplingStrategy, SamplingPeriod
// and Sampling in annotation.proto): period bounds, pro-rata quotas, the four strategies, the
// random-baseline count and the source-rule filter. Pure functions: no gRPC, no SQL, no clock
// (callers pass `now`), no global RNG (callers pass a seed).
//
// Pro rata: a per-period quota Q is released linearly over the period. At elapsed fraction f in
// [0, 1] a fill may bring the period's total up to floor(Q * f) (Q itself at f = 1), so quotas
// are never front-loaded, and quota a fill could not use (too few candidates) stays available to
// later fills of the same period.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "flywheel/annotation/v1/annotation.pb.h"
#include "flywheel/common/v1/common.pb.h"

namespace flywheel::annotation {

namespace v1 = ::flywheel::annotation::v1;

// Defaults and limits from the proto comments.
inline constexpr int kDefaultCountPerStratum = 10;
inline constexpr int kMaxCountPerStratum = 10000;
inline constexpr int kDefaultMaxItemsPerPeriod = 1000;
inline constexpr int kMaxMaxItemsPerPeriod = 100000;
inline constexpr double kMaxRandomBaselineShare = 0.2;

// Sampling with defaults applied (UNSPECIFIED strategy = ALL, period = DAY; count_per_stratum 0
// = 10; max_items_per_period 0 = 1000 for ALL and NOVELTY_FIRST, 0 = no cap for the stratified
// strategies).
v1::Sampling EffectiveSampling(const v1::Sampling& sampling);

// Checks the Sampling limits: enum values defined; count_per_stratum 0 (default) or 1..10,000;
// max_items_per_period >= 0 and, for ALL and NOVELTY_FIRST, 0 (default) or 1..100,000;
// random_baseline_share finite and in [0, 0.2]. INVALID_ARGUMENT naming "<path>.<field>".
absl::Status ValidateSampling(const v1::Sampling& sampling,
                              absl::string_view path = "queue.sampling");

// ---------------------------------------------------------------------------------------------
// Periods

struct PeriodBounds {
  absl::Time start;  // inclusive
  absl::Time end;    // exclusive
};

// The calendar UTC day, or the ISO week starting Monday 00:00 UTC, that contains `now`
// (UNSPECIFIED = DAY).
PeriodBounds PeriodContaining(v1::SamplingPeriod period, absl::Time now);

// (now - start) / (end - start), clamped to [0, 1].
double ElapsedFraction(const PeriodBounds& bounds, absl::Time now);

// How many of a per-period quota may have been used by elapsed fraction f: floor(quota * f),
// and quota itself when f >= 1. 0 for quota <= 0.
int64_t ProRataAllowance(int64_t quota, double elapsed_fraction);

// ---------------------------------------------------------------------------------------------
// Candidates and selection

// One candidate trace of a fill (already past the source rule).
struct SamplingCandidate {
  std::string trace_id;
  // Empty: no feature area (one stratum of its own).
  std::string feature_area;
  // Theme from clustering; empty: unassigned (one stratum of its own).
  std::string theme_id;
  // NOVELTY_FIRST only: in [0, 1] (1 = nothing similar in the eval sets).
  double novelty = 1.0;
  absl::Time create_time = absl::InfinitePast();
};

// What auto-fill already enqueued in the current period (SAMPLED items, and RANDOM_BASELINE
// items separately).
struct PeriodUsage {
  // SAMPLED items of this period, all strata together.
  int64_t sampled_total = 0;
  // SAMPLED items of this period per stratum (the Item.stratum they were given).
  absl::flat_hash_map<std::string, int64_t> sampled_per_stratum;
  // RANDOM_BASELINE items of this period.
  int64_t baseline_total = 0;
};

struct SamplingInput {
  // The queue's sampling settings (defaults are applied inside).
  v1::Sampling sampling;
  std::vector<SamplingCandidate> candidates;
  PeriodUsage usage;
  // Elapsed fraction of the current period, in [0, 1] (see ElapsedFraction).
  double elapsed_fraction = 0;
  // NOVELTY_FIRST tie-break: items of this queue per theme id ("" = unassigned), all periods.
  absl::flat_hash_map<std::string, int64_t> queue_items_per_theme;
  // Seed of the uniform choices (STRATIFIED_BY_FEATURE_AREA, CLUSTER_BALANCED). Same input and
  // seed, same output.
  uint64_t seed = 0;
};

struct SampledItem {
  // Index into SamplingInput::candidates.
  size_t candidate_index = 0;
  // Item.stratum: the feature area (STRATIFIED_BY_FEATURE_AREA) or theme id (CLUSTER_BALANCED);
  // empty for ALL and NOVELTY_FIRST.
  std::string stratum;
  // Item.novelty: the candidate's novelty for NOVELTY_FIRST, 0 otherwise.
  double novelty = 0;
};

// Chooses the candidates to enqueue now, in the order they should be enqueued (which for
// NOVELTY_FIRST is the sampling rank: most novel first).
// - ALL: candidates in the given order (feed order), up to the pro-rata cap
//   ProRataAllowance(max_items_per_period, f) - usage.sampled_total.
// - STRATIFIED_BY_FEATURE_AREA / CLUSTER_BALANCED: per stratum up to
//   ProRataAllowance(count_per_stratum, f) - used[stratum], uniformly at random within the
//   stratum; when max_items_per_period > 0 the total is also capped pro rata, and the strata
//   then share it evenly: items are taken one at a time from the stratum with the fewest items
//   this period (used + taken now), ties in a seeded random order.
// - NOVELTY_FIRST: novelty descending, up to the pro-rata cap; ties (equal novelty): the theme
//   with the fewest items in this queue first (counting the items taken by this call), then the
//   earliest create_time, then trace_id.
// Duplicate trace ids among the candidates count once (the first occurrence).
std::vector<SampledItem> SelectCandidates(const SamplingInput& input);

// How many RANDOM_BASELINE items to add now: random_baseline_share s is the baseline's share of
// all auto-filled items of the period, so the period's baseline target is
// floor(sampled_total * s / (1 - s)) (0.1 with 90 sampled items: 10) and this returns that
// target minus what the period already has, never negative. 0 for MANUAL_ONLY queues is the
// caller's business.
int64_t RandomBaselineCount(double random_baseline_share, int64_t sampled_total_in_period,
                            int64_t baseline_total_in_period);

// ---------------------------------------------------------------------------------------------
// Source rule

// What the source rule looks at for one flagged trace.
struct SourceFacts {
  // The trace's theme and its parent group (empty when unassigned / no group).
  std::string theme_id;
  std::string parent_group_id;
  // Signal kinds on the trace (capture's lower_snake_case names, raw and derived).
  std::vector<std::string> signal_kinds;
  std::string feature_area;
  // Capture's quality score; unset when never labeled.
  std::optional<double> quality_score;
  absl::Time create_time = absl::InfinitePast();
};

// Checks the SourceRule limits: cluster_ids <= 100, signal_kinds <= 50 of <= 64 bytes,
// feature_areas <= 100 of <= 128 bytes, score_range min <= max, time_window end >= start,
// time_window and max_trace_age mutually exclusive, max_trace_age 0 or 1 h..365 days.
// INVALID_ARGUMENT naming "<path>.<field>".
absl::Status ValidateSourceRule(const v1::SourceRule& rule,
                                absl::string_view path = "queue.source_rule");

// Whether a flagged trace passes the rule at fill time `now`: criteria AND, values within one
// list OR, empty criteria pass. cluster_ids match the theme or its parent group (merge redirects
// must be resolved by the caller into `resolved_cluster_ids`, which replaces rule.cluster_ids
// when non-empty). A signal kind K of the rule matches the trace's kind K and its derived
// counterpart "derived_K" (capture detects rephrases, regenerations, abandonment and edit
// distance itself). score_range: a trace without a score fails a non-empty range.
bool MatchesSourceRule(const v1::SourceRule& rule, const SourceFacts& facts, absl::Time now,
                       const std::vector<std::string>& resolved_cluster_ids = {});

// The text a trace is compared by (novelty, NearestClusters): the prompt, or the contents of
// the "user" messages joined by "\n" (all messages when none has role "user"), as eval-set
// represents a case's input.
std::string InputText(const ::flywheel::common::v1::LlmInput& input);

}  // namespace flywheel::annotation
