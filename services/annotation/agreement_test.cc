#include "services/annotation/agreement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/status/status_matchers.h"

namespace flywheel::annotation {
namespace {

using ::flywheel::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::Optional;

constexpr double kTol = 1e-9;

// --- The metrics on textbook data ---------------------------------------------------------------

// Cohen (Wikipedia "Cohen's kappa", worked example): 50 grant proposals read by A and B.
// Yes/yes 20, A yes B no 5, A no B yes 10, no/no 15.
// p_o = (20 + 15) / 50 = 0.7. A says yes 25/50 = 0.5, B 30/50 = 0.6, so
// p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5 and kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
TEST(CohenKappaTest, WikipediaGrantProposals) {
  std::vector<std::pair<std::string, std::string>> pairs;
  auto add = [&](int times, const char* a, const char* b) {
    for (int i = 0; i < times; ++i) pairs.emplace_back(a, b);
  };
  add(20, "yes", "yes");
  add(5, "yes", "no");
  add(10, "no", "yes");
  add(15, "no", "no");
  MetricResult r = CohenKappa(pairs);
  EXPECT_NEAR(r.observed, 0.7, kTol);
  EXPECT_NEAR(r.expected, 0.5, kTol);
  EXPECT_THAT(r.value, Optional(DoubleNear(0.4, kTol)));
}

TEST(CohenKappaTest, PerfectAgreementOnOneCategoryIsUndefined) {
  // Both always say "yes": p_e = 1, kappa = 0/0.
  MetricResult r = CohenKappa({{"yes", "yes"}, {"yes", "yes"}, {"yes", "yes"}});
  EXPECT_NEAR(r.observed, 1, kTol);
  EXPECT_NEAR(r.expected, 1, kTol);
  EXPECT_EQ(r.value, std::nullopt);
}

// Fleiss (1971), as in Wikipedia "Fleiss' kappa": 10 subjects, 14 raters, 5 categories.
// Rows (counts per category 1..5) and P_i = (sum n_ij^2 - 14) / (14 * 13):
//   0 0 0 0 14 -> (196 - 14) / 182 = 1        0 2 6 4 2 -> (60 - 14) / 182 = 46/182
//   0 0 3 5 6  -> (70 - 14) / 182 = 56/182     0 3 9 2 0 -> (94 - 14) / 182 = 80/182
//   2 2 8 1 1  -> (74 - 14) / 182 = 60/182     7 7 0 0 0 -> (98 - 14) / 182 = 84/182
//   3 2 6 3 0  -> (58 - 14) / 182 = 44/182     2 5 3 2 2 -> (46 - 14) / 182 = 32/182
//   6 5 2 1 0  -> (66 - 14) / 182 = 52/182     0 2 2 3 7 -> (66 - 14) / 182 = 52/182
// P_bar = (182 + 46 + 56 + 80 + 60 + 84 + 44 + 32 + 52 + 52) / 1820 = 688/1820 = 0.378022.
// Column totals 20, 28, 39, 21, 32 of 140: p_j = 0.142857, 0.2, 0.278571, 0.15, 0.228571,
// P_e = sum p_j^2 = 0.212755, kappa = (0.378022 - 0.212755) / (1 - 0.212755) = 0.209931.
TEST(FleissKappaTest, Fleiss1971Example) {
  const int table[10][5] = {{0, 0, 0, 0, 14}, {0, 2, 6, 4, 2}, {0, 0, 3, 5, 6}, {0, 3, 9, 2, 0},
                            {2, 2, 8, 1, 1},  {7, 7, 0, 0, 0}, {3, 2, 6, 3, 0}, {2, 5, 3, 2, 2},
                            {6, 5, 2, 1, 0},  {0, 2, 2, 3, 7}};
  std::vector<std::vector<std::string>> items;
  for (const auto& row : table) {
    std::vector<std::string> ratings;
    for (int category = 0; category < 5; ++category) {
      for (int k = 0; k < row[category]; ++k) ratings.push_back("c" + std::to_string(category));
    }
    items.push_back(ratings);
  }
  MetricResult r = FleissKappa(items);
  EXPECT_NEAR(r.observed, 688.0 / 1820.0, kTol);
  EXPECT_NEAR(r.expected, 0.2127551020408163, kTol);
  EXPECT_THAT(r.value, Optional(DoubleNear(0.2099307044219552, kTol)));
}

// Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with 4 observers
// and 12 units, missing values marked "."):
//   A: 1 2 3 3 2 1 4 1 2 . . .
//   B: 1 2 3 3 2 2 4 1 2 5 . 3
//   C: . 3 3 3 2 3 4 2 2 5 1 .
//   D: 1 2 3 3 2 4 4 1 2 5 1 .
// Unit 12 has one value and is not pairable: n = 40 pairable values.
std::vector<std::vector<double>> KrippendorffUnits() {
  return {{1, 1, 1},    {2, 2, 3, 2}, {3, 3, 3, 3}, {3, 3, 3, 3}, {2, 2, 2, 2}, {1, 2, 3, 4},
          {4, 4, 4, 4}, {1, 1, 2, 1}, {2, 2, 2, 2}, {5, 5, 5},    {1, 1},       {3}};
}

// Nominal: within-unit unequal ordered pairs / (m_u - 1): unit 2 (3x"2", 1x"3"): (16 - 10)/3 = 2;
// unit 6 (all different): (16 - 4)/3 = 4; unit 8: (16 - 10)/3 = 2; others 0. D_o = 8/40 = 0.2.
// Totals: "1" 9, "2" 13, "3" 10, "4" 5, "5" 3; D_e = (40^2 - 384) / (40 * 39) = 152/195.
// alpha = 1 - 0.2 / (152/195) = 113/152 = 0.743421 (the paper's 0.743).
TEST(KrippendorffAlphaTest, NominalPaperExample) {
  std::vector<std::vector<std::string>> items;
  for (const auto& unit : KrippendorffUnits()) {
    std::vector<std::string> values;
    for (double v : unit) values.push_back(std::to_string(static_cast<int>(v)));
    items.push_back(values);
  }
  MetricResult r = KrippendorffAlphaNominal(items);
  EXPECT_NEAR(r.observed, 0.2, kTol);
  EXPECT_NEAR(r.expected, 152.0 / 195.0, kTol);
  EXPECT_THAT(r.value, Optional(DoubleNear(113.0 / 152.0, kTol)));
}

// Interval: within sums of ordered squared differences / (m_u - 1): unit 2: 6/3 = 2; unit 6:
// 2 * (1+4+9+1+4+1) / 3 = 40/3; unit 8: 6/3 = 2; total 52/3, D_o = 52/3 / 40 = 13/30.
// sum x = 100, sum x^2 = 306: sum over ordered pairs = 2*40*306 - 2*100^2 = 4480,
// D_e = 4480 / 1560 = 112/39, alpha = 1 - (13/30) / (112/39) = 951/1120 = 0.849107 (paper 0.849).
TEST(KrippendorffAlphaTest, IntervalPaperExample) {
  MetricResult r = KrippendorffAlphaInterval(KrippendorffUnits());
  EXPECT_NEAR(r.observed, 13.0 / 30.0, kTol);
  EXPECT_NEAR(r.expected, 112.0 / 39.0, kTol);
  EXPECT_THAT(r.value, Optional(DoubleNear(951.0 / 1120.0, kTol)));
}

// Jaccard, by hand: items {a}|{a}; {a,b}|{a}; {b}|{c}; {a,b}|{a,b}|{b}.
// Within: item 2: 2 * (1 - 1/2) / 1 = 1; item 3: 2 * 1 / 1 = 2; item 4: 2 * (0 + 1/2 + 1/2) / 2
// = 1. D_o = 4/9. Totals: {a} 3, {a,b} 3, {b} 2, {c} 1 (n = 9). Unordered sum of n_c n_k delta:
// {a}{a,b} 9*1/2 + {a}{b} 6 + {a}{c} 3 + {a,b}{b} 6*1/2 + {a,b}{c} 3 + {b}{c} 2 = 21.5;
// D_e = 43 / 72; alpha = 1 - (4/9) / (43/72) = 11/43.
TEST(KrippendorffAlphaTest, JaccardHandExample) {
  MetricResult r = KrippendorffAlphaJaccard(
      {{{"a"}, {"a"}}, {{"a", "b"}, {"a"}}, {{"b"}, {"c"}}, {{"a", "b"}, {"b", "a"}, {"b"}}});
  EXPECT_NEAR(r.observed, 4.0 / 9.0, kTol);
  EXPECT_NEAR(r.expected, 43.0 / 72.0, kTol);
  EXPECT_THAT(r.value, Optional(DoubleNear(11.0 / 43.0, kTol)));
}

TEST(KrippendorffAlphaTest, NoVariationIsUndefined) {
  MetricResult r = KrippendorffAlphaInterval({{3, 3}, {3, 3, 3}});
  EXPECT_EQ(r.value, std::nullopt);
  EXPECT_NEAR(r.expected, 0, kTol);
}

// --- Metric choice and counts on annotations ---------------------------------------------------

v1::RubricField BoolField(const std::string& key) {
  v1::RubricField f;
  f.set_key(key);
  f.mutable_boolean();
  return f;
}

v1::RubricField CategoricalField(const std::string& key, bool multi) {
  v1::RubricField f;
  f.set_key(key);
  for (const char* v : {"a", "b", "c"}) f.mutable_categorical()->add_options()->set_value(v);
  f.mutable_categorical()->set_multi_select(multi);
  return f;
}

AnnotationRow Bool(const std::string& item, const std::string& reviewer, const std::string& key,
                   bool value) {
  AnnotationRow row{item, reviewer, {}};
  row.values[key].set_boolean(value);
  return row;
}

TEST(ComputeFieldAgreementTest, SameTwoReviewersEverywhereIsCohen) {
  // r1/r2 on items: (T,T) (T,F) (F,F) (F,F). p_o = 3/4; r1 T 2/4, r2 T 1/4:
  // p_e = 0.5*0.25 + 0.5*0.75 = 0.5; kappa = (0.75 - 0.5) / 0.5 = 0.5.
  std::vector<AnnotationRow> rows = {Bool("i1", "r1", "ok", true), Bool("i1", "r2", "ok", true),
                                     Bool("i2", "r1", "ok", true), Bool("i2", "r2", "ok", false),
                                     Bool("i3", "r1", "ok", false), Bool("i3", "r2", "ok", false),
                                     Bool("i4", "r2", "ok", false), Bool("i4", "r1", "ok", false),
                                     // Single-label item: not counted.
                                     Bool("i5", "r1", "ok", true)};
  v1::FieldAgreement a = ComputeFieldAgreement(BoolField("ok"), rows);
  EXPECT_EQ(a.field_key(), "ok");
  EXPECT_EQ(a.metric(), v1::AGREEMENT_METRIC_COHEN_KAPPA);
  EXPECT_NEAR(a.observed_agreement(), 0.75, kTol);
  EXPECT_NEAR(a.expected_agreement(), 0.5, kTol);
  ASSERT_TRUE(a.has_value());
  EXPECT_NEAR(a.value(), 0.5, kTol);
  EXPECT_EQ(a.items_with_multiple_labels(), 4);
  EXPECT_EQ(a.label_count(), 8);
  EXPECT_EQ(a.reviewer_count(), 2);
  EXPECT_FALSE(a.has_observed_disagreement());
}

TEST(ComputeFieldAgreementTest, TwoLabelsByDifferentPairsIsFleiss) {
  // Every item has 2 values, but not by the same 2 reviewers: Fleiss with n = 2.
  // Items (T,T) (T,F) (F,F): P_i = 1, 0, 1 -> P_bar = 2/3; p_T = p_F = 1/2 -> P_e = 1/2;
  // kappa = (2/3 - 1/2) / (1/2) = 1/3.
  std::vector<AnnotationRow> rows = {Bool("i1", "r1", "ok", true),  Bool("i1", "r2", "ok", true),
                                     Bool("i2", "r1", "ok", true),  Bool("i2", "r3", "ok", false),
                                     Bool("i3", "r2", "ok", false), Bool("i3", "r3", "ok", false)};
  v1::FieldAgreement a = ComputeFieldAgreement(BoolField("ok"), rows);
  EXPECT_EQ(a.metric(), v1::AGREEMENT_METRIC_FLEISS_KAPPA);
  EXPECT_NEAR(a.observed_agreement(), 2.0 / 3.0, kTol);
  EXPECT_NEAR(a.expected_agreement(), 0.5, kTol);
  EXPECT_NEAR(a.value(), 1.0 / 3.0, kTol);
  EXPECT_EQ(a.reviewer_count(), 3);
}

TEST(ComputeFieldAgreementTest, UnequalLabelCountsUseNominalAlpha) {
  // Items: {a,a,a} and {a,b}. n = 5; within: item 2: (4 - 2)/1 = 2 -> D_o = 2/5.
  // Totals a 4, b 1: D_e = (25 - 17) / 20 = 2/5 -> alpha = 0.
  v1::RubricField field = CategoricalField("topic", /*multi=*/false);
  auto row = [](const std::string& item, const std::string& reviewer, const std::string& v) {
    AnnotationRow r{item, reviewer, {}};
    r.values["topic"].mutable_categorical()->add_values(v);
    return r;
  };
  std::vector<AnnotationRow> rows = {row("i1", "r1", "a"), row("i1", "r2", "a"),
                                     row("i1", "r3", "a"), row("i2", "r1", "a"),
                                     row("i2", "r2", "b")};
  v1::FieldAgreement a = ComputeFieldAgreement(field, rows);
  EXPECT_EQ(a.metric(), v1::AGREEMENT_METRIC_KRIPPENDORFF_ALPHA_NOMINAL);
  EXPECT_NEAR(a.observed_disagreement(), 0.4, kTol);
  EXPECT_NEAR(a.expected_disagreement(), 0.4, kTol);
  EXPECT_NEAR(a.value(), 0.0, kTol);
  EXPECT_FALSE(a.has_observed_agreement());
}

TEST(ComputeFieldAgreementTest, NumericUsesIntervalAlphaAndMultiSelectJaccard) {
  v1::RubricField score;
  score.set_key("score");
  score.mutable_numeric()->set_min(0);
  score.mutable_numeric()->set_max(10);
  std::vector<AnnotationRow> rows;
  for (const auto& [item, values] : std::vector<std::pair<std::string, std::vector<double>>>{
           {"i1", {1, 2}}, {"i2", {5, 5}}, {"i3", {9, 8}}}) {
    for (size_t r = 0; r < values.size(); ++r) {
      AnnotationRow row{item, "r" + std::to_string(r), {}};
      row.values["score"].set_numeric(values[r]);
      row.values["tags"].mutable_categorical()->add_values(r == 0 ? "a" : "b");
      rows.push_back(row);
    }
  }
  // Interval, by hand: within = 2*1 + 0 + 2*1 = 4 (m - 1 = 1), n = 6, D_o = 2/3;
  // sum x = 30, sum x^2 = 200: ordered pairs sum = 2*6*200 - 2*900 = 600, D_e = 600/30 = 20;
  // alpha = 1 - (2/3)/20 = 29/30.
  v1::FieldAgreement a = ComputeFieldAgreement(score, rows);
  EXPECT_EQ(a.metric(), v1::AGREEMENT_METRIC_KRIPPENDORFF_ALPHA_INTERVAL);
  EXPECT_NEAR(a.value(), 29.0 / 30.0, kTol);

  // Every item {a}|{b}: within 3 * 2 = 6, D_o = 6/6 = 1; totals {a} 3, {b} 3: ordered pairs
  // 2 * 3 * 3 = 18, D_e = 18/30 = 0.6; alpha = 1 - 1/0.6 = -2/3 (systematic disagreement).
  v1::FieldAgreement t = ComputeFieldAgreement(CategoricalField("tags", /*multi=*/true), rows);
  EXPECT_EQ(t.metric(), v1::AGREEMENT_METRIC_KRIPPENDORFF_ALPHA_JACCARD);
  EXPECT_NEAR(t.observed_disagreement(), 1.0, kTol);
  EXPECT_NEAR(t.expected_disagreement(), 0.6, kTol);
  EXPECT_NEAR(t.value(), -2.0 / 3.0, kTol);
}

TEST(ComputeFieldAgreementTest, FreeTextHasNoMetricButCounts) {
  v1::RubricField note;
  note.set_key("note");
  note.mutable_free_text();
  AnnotationRow a{"i1", "r1", {}}, b{"i1", "r2", {}}, c{"i2", "r1", {}};
  a.values["note"].set_free_text("x");
  b.values["note"].set_free_text("y");
  c.values["note"].set_free_text("z");
  v1::FieldAgreement r = ComputeFieldAgreement(note, {a, b, c});
  EXPECT_EQ(r.metric(), v1::AGREEMENT_METRIC_NONE);
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(r.items_with_multiple_labels(), 1);
  EXPECT_EQ(r.label_count(), 2);
}

TEST(ComputeFieldAgreementTest, FewerThanTwoItemsLeavesValueUnset) {
  std::vector<AnnotationRow> rows = {Bool("i1", "r1", "ok", true), Bool("i1", "r2", "ok", false)};
  v1::FieldAgreement a = ComputeFieldAgreement(BoolField("ok"), rows);
  EXPECT_EQ(a.items_with_multiple_labels(), 1);
  EXPECT_FALSE(a.has_value());
  EXPECT_TRUE(a.has_observed_agreement());
}

TEST(ComputeFieldAgreementTest, OptionalFieldMissingValuesAreNotCounted) {
  // r3 left the optional field out on i1: i1 has 2 values, i2 has 3 -> alpha nominal.
  std::vector<AnnotationRow> rows = {Bool("i1", "r1", "ok", true),  Bool("i1", "r2", "ok", true),
                                     AnnotationRow{"i1", "r3", {}}, Bool("i2", "r1", "ok", false),
                                     Bool("i2", "r2", "ok", false), Bool("i2", "r3", "ok", true)};
  v1::FieldAgreement a = ComputeFieldAgreement(BoolField("ok"), rows);
  EXPECT_EQ(a.metric(), v1::AGREEMENT_METRIC_KRIPPENDORFF_ALPHA_NOMINAL);
  EXPECT_EQ(a.label_count(), 5);
}

TEST(ComputeAgreementTest, UnknownFieldKeyIsInvalidArgumentAndOrderIsRubricOrder) {
  v1::Rubric rubric;
  *rubric.add_fields() = BoolField("first");
  *rubric.add_fields() = BoolField("second");
  EXPECT_THAT(ComputeAgreement(rubric, {"nope"}, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  auto all = ComputeAgreement(rubric, {"second", "first"}, {});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].field_key(), "first");
  EXPECT_EQ((*all)[1].field_key(), "second");
}

// --- ON_AGREEMENT promotion ---------------------------------------------------------------------

AgreementCandidate Candidate(const std::string& id, int minute, bool ok, bool opted_out = false) {
  AgreementCandidate c{id, {}, absl::UnixEpoch() + absl::Minutes(minute), opted_out};
  c.values["ok"].set_boolean(ok);
  return c;
}

TEST(ChooseAgreedAnnotationTest, UnanimousByDefaultPicksEarliest) {
  std::vector<AgreementCandidate> all = {Candidate("b", 2, true), Candidate("a", 1, true),
                                         Candidate("c", 3, true)};
  EXPECT_EQ(ChooseAgreedAnnotation(all, {"ok"}, 0, 3), "a");
  all[2].values["ok"].set_boolean(false);
  EXPECT_EQ(ChooseAgreedAnnotation(all, {"ok"}, 0, 3), std::nullopt);
}

TEST(ChooseAgreedAnnotationTest, MajorityShareAndOptOut) {
  // ceil(0.6 * 3) = 2 of 3 agree; the earliest of them opted out, so the next one is chosen.
  std::vector<AgreementCandidate> all = {Candidate("x", 1, false),
                                         Candidate("y", 2, true, /*opted_out=*/true),
                                         Candidate("z", 3, true)};
  EXPECT_EQ(ChooseAgreedAnnotation(all, {"ok"}, 0.6, 3), "z");
  all[2].opted_out = true;
  EXPECT_EQ(ChooseAgreedAnnotation(all, {"ok"}, 0.6, 3), std::nullopt);
}

TEST(ChooseAgreedAnnotationTest, MissingKeyNeverAgrees) {
  std::vector<AgreementCandidate> all = {Candidate("a", 1, true), Candidate("b", 2, true)};
  all[1].values.erase("ok");
  EXPECT_EQ(ChooseAgreedAnnotation(all, {"ok"}, 1, 2), std::nullopt);
  EXPECT_EQ(ChooseAgreedAnnotation(all, {}, 1, 2), std::nullopt);
}

}  // namespace
}  // namespace flywheel::annotation
