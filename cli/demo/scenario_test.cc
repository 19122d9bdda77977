#include "cli/demo/scenario.h"

#include <gtest/gtest.h>

#include <set>

#include "common/text/text.h"

namespace flywheel::demo {
namespace {

ScenarioOptions Small(uint64_t seed) {
  ScenarioOptions options;
  options.seed = seed;
  options.users = 120;
  options.end = absl::FromUnixSeconds(1800000000);
  return options;
}

TEST(ScenarioTest, SameSeedGivesIdenticalTrafficAndOtherSeedsDiffer) {
  const Scenario a = GenerateScenario(Small(7));
  const Scenario b = GenerateScenario(Small(7));
  const Scenario c = GenerateScenario(Small(8));
  ASSERT_EQ(a.items.size(), b.items.size());
  for (size_t i = 0; i < a.items.size(); ++i) {
    ASSERT_EQ(a.items[i].SerializeAsString(), b.items[i].SerializeAsString()) << i;
  }
  EXPECT_NE(a.items.size(), c.items.size());
}

TEST(ScenarioTest, EveryBadTraceHasAThemeAndOnlyBadOnes) {
  const Scenario s = GenerateScenario(Small(7));
  std::set<std::string> themes;
  int bad = 0;
  for (const auto& [id, truth] : s.truth) {
    if (truth.quality == Quality::kBad) {
      ++bad;
      EXPECT_FALSE(truth.theme.empty()) << id;
      themes.insert(truth.theme);
    } else {
      EXPECT_TRUE(truth.theme.empty()) << id;
    }
  }
  EXPECT_GT(bad, static_cast<int>(s.truth.size() / 10));
  EXPECT_EQ(themes.size(), std::size(kThemes));
}

TEST(ScenarioTest, ExplicitFeedbackIsRareAndImplicitSignalsAreDense) {
  const Scenario s = GenerateScenario(Small(11));
  int explicit_count = 0;
  int implicit_count = 0;
  for (const auto& [id, truth] : s.truth) {
    explicit_count += truth.any_explicit;
    implicit_count += truth.any_implicit;
    if (truth.user_kind == UserKind::kSilent) EXPECT_FALSE(truth.any_explicit) << id;
  }
  const double n = static_cast<double>(s.truth.size());
  EXPECT_LT(explicit_count / n, 0.15);
  EXPECT_GT(implicit_count / n, 0.3);
  EXPECT_GT(implicit_count, 3 * explicit_count);
}

TEST(ScenarioTest, SignalsReferenceKnownTracesAndRephrasesAreSimilar) {
  const Scenario s = GenerateScenario(Small(7));
  std::map<std::string, std::string> inputs;
  for (const auto& item : s.items) {
    if (item.has_trace()) inputs[item.trace().trace_id()] = item.trace().input().prompt();
  }
  int rephrases = 0;
  std::set<std::string> event_ids;
  for (const auto& item : s.items) {
    if (!item.has_signal()) continue;
    const auto& signal = item.signal();
    EXPECT_TRUE(event_ids.insert(signal.event_id()).second) << signal.event_id();
    ASSERT_EQ(inputs.count(signal.trace_id()), 1u) << signal.trace_id();
    if (signal.implicit_signal().has_rephrase()) {
      ++rephrases;
      const auto& rephrase = signal.implicit_signal().rephrase();
      ASSERT_EQ(inputs.count(rephrase.new_trace_id()), 1u);
      EXPECT_EQ(inputs[rephrase.new_trace_id()], rephrase.new_input_text());
      // Capture's server-side detector must see the same: similar, differently worded.
      EXPECT_GE(text::NgramCosine(inputs[signal.trace_id()], rephrase.new_input_text()), 0.7)
          << inputs[signal.trace_id()] << " / " << rephrase.new_input_text();
    }
    if (signal.implicit_signal().has_regenerate()) {
      EXPECT_EQ(inputs.count(signal.implicit_signal().regenerate().new_trace_id()), 1u);
    }
  }
  EXPECT_GT(rephrases, 5);
}

TEST(ScenarioTest, ReadingAResponseFindsExactlyItsHiddenTheme) {
  const Scenario s = GenerateScenario(Small(5));
  int checked = 0;
  for (const auto& item : s.items) {
    if (!item.has_trace()) continue;
    const TraceTruth& truth = s.truth.at(item.trace().trace_id());
    EXPECT_EQ(ReviewOutput(item.trace().output()), truth.theme) << item.trace().output();
    ++checked;
  }
  EXPECT_GT(checked, 100);
}

}  // namespace
}  // namespace flywheel::demo
