#include "services/annotation/sampling.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "common/status/status_matchers.h"

namespace flywheel::annotation {
namespace {

using ::flywheel::testing::IsOk;
using ::flywheel::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::StartsWith;

absl::Time Utc(int y, int m, int d, int hh = 0, int mm = 0) {
  return absl::FromCivil(absl::CivilMinute(y, m, d, hh, mm), absl::UTCTimeZone());
}

SamplingCandidate Cand(const std::string& id, const std::string& area = "",
                       const std::string& theme = "", double novelty = 1.0, int minute = 0) {
  return {id, area, theme, novelty, absl::UnixEpoch() + absl::Minutes(minute)};
}

std::vector<std::string> Ids(const SamplingInput& input, const std::vector<SampledItem>& items) {
  std::vector<std::string> ids;
  for (const auto& item : items) ids.push_back(input.candidates[item.candidate_index].trace_id);
  return ids;
}

// --- Periods and pro rata -----------------------------------------------------------------------

TEST(PeriodTest, DayIsTheUtcCalendarDay) {
  PeriodBounds b = PeriodContaining(v1::SAMPLING_PERIOD_DAY, Utc(2026, 11, 23, 17, 45));
  EXPECT_EQ(b.start, Utc(2026, 11, 23));
  EXPECT_EQ(b.end, Utc(2026, 11, 24));
  // UNSPECIFIED means DAY.
  EXPECT_EQ(PeriodContaining(v1::SAMPLING_PERIOD_UNSPECIFIED, Utc(2026, 11, 23, 1)).start,
            Utc(2026, 11, 23));
}

TEST(PeriodTest, WeekStartsMondayMidnightUtc) {
  // 2026-11-23 is a Monday; 2026-11-29 a Sunday; 2027-01-01 a Friday (ISO week 53 of 2026).
  EXPECT_EQ(PeriodContaining(v1::SAMPLING_PERIOD_WEEK, Utc(2026, 11, 23)).start, Utc(2026, 11, 23));
  PeriodBounds sunday = PeriodContaining(v1::SAMPLING_PERIOD_WEEK, Utc(2026, 11, 29, 23, 59));
  EXPECT_EQ(sunday.start, Utc(2026, 11, 23));
  EXPECT_EQ(sunday.end, Utc(2026, 11, 30));
  EXPECT_EQ(PeriodContaining(v1::SAMPLING_PERIOD_WEEK, Utc(2027, 1, 1, 12)).start,
            Utc(2026, 12, 28));
}

TEST(PeriodTest, ElapsedFractionIsClamped) {
  PeriodBounds b{Utc(2026, 11, 23), Utc(2026, 11, 24)};
  EXPECT_DOUBLE_EQ(ElapsedFraction(b, Utc(2026, 11, 23, 6)), 0.25);
  EXPECT_DOUBLE_EQ(ElapsedFraction(b, Utc(2026, 11, 22)), 0);
  EXPECT_DOUBLE_EQ(ElapsedFraction(b, Utc(2026, 11, 25)), 1);
}

TEST(ProRataTest, AllowanceGrowsLinearlyAndNeverFrontLoads) {
  EXPECT_EQ(ProRataAllowance(10, 0), 0);
  EXPECT_EQ(ProRataAllowance(10, 0.05), 0);
  EXPECT_EQ(ProRataAllowance(10, 0.1), 1);
  EXPECT_EQ(ProRataAllowance(10, 0.3), 3);  // 0.3 * 10 is 2.9999999999999996 in doubles
  EXPECT_EQ(ProRataAllowance(10, 0.999), 9);
  EXPECT_EQ(ProRataAllowance(10, 1), 10);
  EXPECT_EQ(ProRataAllowance(0, 0.5), 0);
}

// --- ALL ----------------------------------------------------------------------------------------

TEST(SelectAllTest, TakesFeedOrderUpToTheProRataCapMinusUsed) {
  SamplingInput in;
  in.sampling.set_max_items_per_period(10);
  for (int i = 0; i < 8; ++i) in.candidates.push_back(Cand("t" + std::to_string(i)));
  in.elapsed_fraction = 0.5;  // allowance 5
  in.usage.sampled_total = 2;
  auto out = SelectCandidates(in);
  EXPECT_THAT(Ids(in, out), ElementsAre("t0", "t1", "t2"));
  EXPECT_EQ(out[0].stratum, "");
  EXPECT_EQ(out[0].novelty, 0);
}

TEST(SelectAllTest, DefaultCapIsThousandAndDuplicatesCountOnce) {
  SamplingInput in;  // UNSPECIFIED strategy = ALL, cap 1000
  in.elapsed_fraction = 1;
  in.candidates = {Cand("a"), Cand("b"), Cand("a"), Cand("c")};
  EXPECT_THAT(Ids(in, SelectCandidates(in)), ElementsAre("a", "b", "c"));
  in.usage.sampled_total = 999;
  EXPECT_THAT(Ids(in, SelectCandidates(in)), ElementsAre("a"));
  in.usage.sampled_total = 1000;
  EXPECT_TRUE(SelectCandidates(in).empty());
}

TEST(SelectAllTest, SuccessiveFillsOverADayNeverExceedTheAllowance) {
  // Hourly fills with plenty of candidates: the running total tracks floor(24 * f) exactly.
  SamplingInput in;
  in.sampling.set_max_items_per_period(24);
  for (int i = 0; i < 100; ++i) in.candidates.push_back(Cand("t" + std::to_string(i)));
  for (int hour = 0; hour <= 24; ++hour) {
    in.elapsed_fraction = hour / 24.0;
    in.usage.sampled_total += static_cast<int64_t>(SelectCandidates(in).size());
    EXPECT_EQ(in.usage.sampled_total, hour) << "hour " << hour;
  }
}

// --- Stratified ---------------------------------------------------------------------------------

TEST(StratifiedTest, PerStratumQuotaProRataAndLabels) {
  SamplingInput in;
  in.sampling.set_strategy(v1::SAMPLING_STRATEGY_STRATIFIED_BY_FEATURE_AREA);
  in.sampling.set_count_per_stratum(4);
  for (int i = 0; i < 10; ++i) {
    in.candidates.push_back(Cand("s" + std::to_string(i), "search"));
    in.candidates.push_back(Cand("e" + std::to_string(i), "email"));
  }
  in.candidates.push_back(Cand("n0", ""));  // no feature area: a stratum of its own
  in.elapsed_fraction = 0.5;                // 2 per stratum so far
  in.usage.sampled_per_stratum["email"] = 1;
  auto out = SelectCandidates(in);
  std::map<std::string, int> per;
  for (const auto& item : out) {
    ++per[item.stratum];
    EXPECT_EQ(in.candidates[item.candidate_index].feature_area, item.stratum);
  }
  EXPECT_EQ(per["search"], 2);
  EXPECT_EQ(per["email"], 1);
  EXPECT_EQ(per[""], 1);
  EXPECT_EQ(out.size(), 4u);
}

TEST(StratifiedTest, TotalCapIsSharedEvenlyAcrossStrata) {
  SamplingInput in;
  in.sampling.set_strategy(v1::SAMPLING_STRATEGY_CLUSTER_BALANCED);
  in.sampling.set_count_per_stratum(100);
  in.sampling.set_max_items_per_period(9);
  for (int i = 0; i < 50; ++i) in.candidates.push_back(Cand("big" + std::to_string(i), "", "th1"));
  for (int i = 0; i < 3; ++i) in.candidates.push_back(Cand("mid" + std::to_string(i), "", "th2"));
  in.candidates.push_back(Cand("small", "", "th3"));
  in.elapsed_fraction = 1;
  // th1 already has 2 this period: the others catch up first.
  in.usage.sampled_per_stratum["th1"] = 2;
  in.usage.sampled_total = 2;
  auto out = SelectCandidates(in);
  ASSERT_EQ(out.size(), 7u);  // 9 - 2 used
  std::map<std::string, int> per;
  for (const auto& item : out) ++per[item.stratum];
  // th3 runs out after 1, th2 after 3; th1 gets the rest: period counts 5 / 3 / 1.
  EXPECT_EQ(per["th3"], 1);
  EXPECT_EQ(per["th2"], 3);
  EXPECT_EQ(per["th1"], 3);
}

TEST(StratifiedTest, BalancedWhenStrataAreEqual) {
  SamplingInput in;
  in.sampling.set_strategy(v1::SAMPLING_STRATEGY_CLUSTER_BALANCED);
  in.sampling.set_max_items_per_period(6);
  for (const char* theme : {"a", "b", "c"}) {
    for (int i = 0; i < 10; ++i)
      in.candidates.push_back(Cand(theme + std::to_string(i), "", theme));
  }
  in.elapsed_fraction = 1;
  std::map<std::string, int> per;
  for (const auto& item : SelectCandidates(in)) ++per[item.stratum];
  EXPECT_EQ(per["a"], 2);
  EXPECT_EQ(per["b"], 2);
  EXPECT_EQ(per["c"], 2);
}

TEST(StratifiedTest, SameSeedSameChoiceAndSeedsDiffer) {
  SamplingInput in;
  in.sampling.set_strategy(v1::SAMPLING_STRATEGY_STRATIFIED_BY_FEATURE_AREA);
  in.sampling.set_count_per_stratum(5);
  for (int i = 0; i < 100; ++i) in.candidates.push_back(Cand("t" + std::to_string(i), "x"));
  in.elapsed_fraction = 1;
  in.seed = 42;
  const auto first = Ids(in, SelectCandidates(in));
  EXPECT_EQ(first, Ids(in, SelectCandidates(in)));
  EXPECT_EQ(first.size(), 5u);
  in.seed = 43;
  EXPECT_NE(first, Ids(in, SelectCandidates(in)));
}

TEST(StratifiedTest, ChoiceIsUniformWithinAStratum) {
  // 2 of 10 per draw over 5000 seeds: each candidate is chosen ~1000 times (binomial sd ~28).
  SamplingInput in;
  in.sampling.set_strategy(v1::SAMPLING_STRATEGY_STRATIFIED_BY_FEATURE_AREA);
  in.sampling.set_count_per_stratum(2);
  for (int i = 0; i < 10; ++i) in.candidates.push_back(Cand("t" + std::to_string(i), "x"));
  in.elapsed_fraction = 1;
  std::map<std::string, int> hits;
  for (uint64_t seed = 0; seed < 5000; ++seed) {
    in.seed = seed;
    for (const auto& id : Ids(in, SelectCandidates(in))) ++hits[id];
  }
  ASSERT_EQ(hits.size(), 10u);
  for (const auto& [id, count] : hits) {
    EXPECT_GT(count, 850) << id;
    EXPECT_LT(count, 1150) << id;
  }
}

// --- NOVELTY_FIRST ------------------------------------------------------------------------------

TEST(NoveltyFirstTest, MostNovelFirstUpToCap) {
  SamplingInput in;
  in.sampling.set_strategy(v1::SAMPLING_STRATEGY_NOVELTY_FIRST);
  in.sampling.set_max_items_per_period(3);
  in.elapsed_fraction = 1;
  in.candidates = {Cand("low", "", "", 0.1), Cand("high", "", "", 0.9), Cand("mid", "", "", 0.5),
                   Cand("top", "", "", 1.0)};
  auto out = SelectCandidates(in);
  EXPECT_THAT(Ids(in, out), ElementsAre("top", "high", "mid"));
  EXPECT_DOUBLE_EQ(out[1].novelty, 0.9);
  EXPECT_EQ(out[1].stratum, "");
}

TEST(NoveltyFirstTest, TiesGoToThemesWithFewestItemsThenEarliest) {
  // No eval cases yet: every novelty is 1. Queue already holds 2 items of theme A, 0 of B and 1
  // unassigned. Expected order: B (0), then the unassigned one and B again tie at 1 item; the
  // earlier trace wins; and so on, A last.
  SamplingInput in;
  in.sampling.set_strategy(v1::SAMPLING_STRATEGY_NOVELTY_FIRST);
  in.elapsed_fraction = 1;
  in.queue_items_per_theme = {{"A", 2}, {"", 1}};
  in.candidates = {Cand("a1", "", "A", 1, 1), Cand("b1", "", "B", 1, 5), Cand("b2", "", "B", 1, 2),
                   Cand("u1", "", "", 1, 3)};
  // Step 1: counts A2 B0 U1 -> B, earliest b2 (minute 2). Step 2: A2 B1 U1 -> tie B/U: earliest
  // of b1 (5) and u1 (3) is u1. Step 3: A2 B1 U2 -> b1. Step 4: a1.
  EXPECT_THAT(Ids(in, SelectCandidates(in)), ElementsAre("b2", "u1", "b1", "a1"));
}

TEST(NoveltyFirstTest, ProRataCapApplies) {
  SamplingInput in;
  in.sampling.set_strategy(v1::SAMPLING_STRATEGY_NOVELTY_FIRST);
  in.sampling.set_max_items_per_period(100);
  for (int i = 0; i < 100; ++i) in.candidates.push_back(Cand("t" + std::to_string(i)));
  in.elapsed_fraction = 0.25;
  in.usage.sampled_total = 20;
  EXPECT_EQ(SelectCandidates(in).size(), 5u);
}

// --- Random baseline ----------------------------------------------------------------------------

TEST(RandomBaselineTest, ShareOfAllAutoFilledItems) {
  EXPECT_EQ(RandomBaselineCount(0.1, 90, 0), 10);  // the proto's example
  EXPECT_EQ(RandomBaselineCount(0.1, 90, 4), 6);
  EXPECT_EQ(RandomBaselineCount(0.1, 90, 12), 0);
  EXPECT_EQ(RandomBaselineCount(0.2, 8, 0), 2);  // 8 * 0.25
  EXPECT_EQ(RandomBaselineCount(0.1, 5, 0), 0);  // 0.55 rounds down
  EXPECT_EQ(RandomBaselineCount(0, 1000, 0), 0);
  EXPECT_EQ(RandomBaselineCount(0.5, 100, 0), 25);  // clamped to 0.2
}

// --- Validation and source rule -----------------------------------------------------------------

TEST(ValidateSamplingTest, Limits) {
  v1::Sampling s;
  EXPECT_THAT(ValidateSampling(s), IsOk());
  s.set_count_per_stratum(10001);
  EXPECT_THAT(ValidateSampling(s), StatusIs(absl::StatusCode::kInvalidArgument));
  s.set_count_per_stratum(10000);
  s.set_max_items_per_period(100001);
  absl::Status status = ValidateSampling(s);
  EXPECT_THAT(std::string(status.message()), StartsWith("queue.sampling.max_items_per_period"));
  s.set_max_items_per_period(5);
  s.set_random_baseline_share(0.21);
  EXPECT_THAT(ValidateSampling(s), StatusIs(absl::StatusCode::kInvalidArgument));
  s.set_random_baseline_share(0.2);
  EXPECT_THAT(ValidateSampling(s), IsOk());
  s.set_strategy(static_cast<v1::SamplingStrategy>(99));
  EXPECT_THAT(ValidateSampling(s), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(EffectiveSamplingTest, Defaults) {
  v1::Sampling all = EffectiveSampling(v1::Sampling());
  EXPECT_EQ(all.strategy(), v1::SAMPLING_STRATEGY_ALL);
  EXPECT_EQ(all.period(), v1::SAMPLING_PERIOD_DAY);
  EXPECT_EQ(all.max_items_per_period(), 1000);
  v1::Sampling strat;
  strat.set_strategy(v1::SAMPLING_STRATEGY_CLUSTER_BALANCED);
  strat = EffectiveSampling(strat);
  EXPECT_EQ(strat.count_per_stratum(), 10);
  EXPECT_EQ(strat.max_items_per_period(), 0);
}

TEST(SourceRuleTest, CriteriaCombineWithAndValuesWithOr) {
  const absl::Time now = Utc(2026, 11, 23, 12);
  v1::SourceRule rule;
  rule.add_cluster_ids("group1");
  rule.add_cluster_ids("theme9");
  rule.add_signal_kinds("rephrase");
  rule.add_signal_kinds("thumbs_down");
  rule.add_feature_areas("search");
  rule.mutable_score_range()->set_max(0.4);
  rule.mutable_max_trace_age()->set_seconds(24 * 3600);
  SourceFacts f;
  f.theme_id = "theme3";
  f.parent_group_id = "group1";                   // a group id stands for all its themes
  f.signal_kinds = {"copy", "derived_rephrase"};  // derived counterpart matches
  f.feature_area = "search";
  f.quality_score = 0.2;
  f.create_time = now - absl::Hours(3);
  EXPECT_TRUE(MatchesSourceRule(rule, f, now));

  SourceFacts g = f;
  g.parent_group_id = "";
  EXPECT_FALSE(MatchesSourceRule(rule, g, now));  // theme not listed
  g = f;
  g.signal_kinds = {"copy"};
  EXPECT_FALSE(MatchesSourceRule(rule, g, now));
  g = f;
  g.feature_area = "email";
  EXPECT_FALSE(MatchesSourceRule(rule, g, now));
  g = f;
  g.quality_score = 0.5;
  EXPECT_FALSE(MatchesSourceRule(rule, g, now));
  g.quality_score.reset();
  EXPECT_FALSE(MatchesSourceRule(rule, g, now));
  g = f;
  g.create_time = now - absl::Hours(25);
  EXPECT_FALSE(MatchesSourceRule(rule, g, now));
  // Resolved ids (merge redirects) replace the rule's list.
  EXPECT_TRUE(MatchesSourceRule(rule, f, now, {"theme3"}));
  EXPECT_FALSE(MatchesSourceRule(rule, f, now, {"other"}));
  // An empty rule passes everything.
  EXPECT_TRUE(MatchesSourceRule(v1::SourceRule(), SourceFacts(), now));
}

TEST(SourceRuleTest, TimeWindowIsHalfOpen) {
  v1::SourceRule rule;
  rule.mutable_time_window()->mutable_start_time()->set_seconds(
      absl::ToUnixSeconds(Utc(2026, 1, 1)));
  rule.mutable_time_window()->mutable_end_time()->set_seconds(absl::ToUnixSeconds(Utc(2026, 1, 2)));
  SourceFacts f;
  f.create_time = Utc(2026, 1, 1);
  EXPECT_TRUE(MatchesSourceRule(rule, f, Utc(2026, 6, 1)));
  f.create_time = Utc(2026, 1, 2);
  EXPECT_FALSE(MatchesSourceRule(rule, f, Utc(2026, 6, 1)));
}

TEST(SourceRuleTest, ValidationNamesTheField) {
  v1::SourceRule rule;
  EXPECT_THAT(ValidateSourceRule(rule), IsOk());
  rule.mutable_time_window()->mutable_start_time()->set_seconds(100);
  rule.mutable_max_trace_age()->set_seconds(7200);
  EXPECT_THAT(std::string(ValidateSourceRule(rule).message()),
              StartsWith("queue.source_rule.max_trace_age"));
  rule.clear_time_window();
  rule.mutable_max_trace_age()->set_seconds(60);  // below 1 h
  EXPECT_THAT(ValidateSourceRule(rule), StatusIs(absl::StatusCode::kInvalidArgument));
  rule.clear_max_trace_age();
  rule.mutable_score_range()->set_min(0.8);
  rule.mutable_score_range()->set_max(0.2);
  EXPECT_THAT(std::string(ValidateSourceRule(rule).message()),
              StartsWith("queue.source_rule.score_range"));
  rule.clear_score_range();
  for (int i = 0; i < 101; ++i) rule.add_feature_areas("a");
  EXPECT_THAT(ValidateSourceRule(rule), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(InputTextTest, PromptOrUserMessages) {
  ::flywheel::common::v1::LlmInput prompt;
  prompt.set_prompt("hello");
  EXPECT_EQ(InputText(prompt), "hello");
  ::flywheel::common::v1::LlmInput chat;
  auto* m = chat.mutable_messages()->add_messages();
  m->set_role("system");
  m->set_content("be nice");
  m = chat.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content("q1");
  m = chat.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content("q2");
  EXPECT_EQ(InputText(chat), "q1\nq2");
  chat.mutable_messages()->mutable_messages()->DeleteSubrange(1, 2);
  EXPECT_EQ(InputText(chat), "be nice");
}

}  // namespace
}  // namespace flywheel::annotation
