#include "services/capture/labeling.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/util/message_differencer.h"

namespace flywheel::capture {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);  // 2027-01-15
constexpr double kExact = 1e-9;
// Evidence a few minutes old decays by < 0.01% with the default 90-day half-life.
constexpr double kNear = 1e-3;

v1::Trace MakeTrace(const std::string& id, const std::string& prompt, absl::Time start,
                    absl::Duration latency = absl::Seconds(2),
                    const std::string& session = "session-1") {
  v1::Trace trace;
  trace.set_trace_id(id);
  trace.set_session_id(session);
  trace.set_user_id("user-1");
  trace.set_model("gpt-4o");
  trace.mutable_input()->set_prompt(prompt);
  trace.set_output("An answer.");
  *trace.mutable_start_time() = ToProto(start);
  *trace.mutable_end_time() = ToProto(start + latency);
  return trace;
}

TraceEvidence EvidenceFor(const v1::Trace& trace) {
  TraceEvidence evidence;
  evidence.trace = trace;
  return evidence;
}

// A trace with nothing around it: no session, so no session-based derivation.
TraceEvidence Lone() {
  return EvidenceFor(MakeTrace("trace-a", "Summarize this memo", kNow - absl::Minutes(2),
                               absl::Seconds(2), /*session=*/""));
}

v1::Signal OnTrace(const std::string& event_id, absl::Time occur,
                   const std::string& trace_id = "trace-a", const std::string& user = "user-1") {
  v1::Signal signal;
  signal.set_event_id(event_id);
  signal.set_trace_id(trace_id);
  signal.set_user_id(user);
  *signal.mutable_occur_time() = ToProto(occur);
  return signal;
}

v1::Signal Thumb(const std::string& event_id, v1::Thumb thumb, absl::Time occur,
                 const std::string& user = "user-1", const std::string& comment = "") {
  v1::Signal signal = OnTrace(event_id, occur, "trace-a", user);
  signal.mutable_explicit_feedback()->set_thumb(thumb);
  signal.mutable_explicit_feedback()->set_comment(comment);
  return signal;
}

v1::Signal Rating(const std::string& event_id, int rating, absl::Time occur) {
  v1::Signal signal = OnTrace(event_id, occur);
  signal.mutable_explicit_feedback()->set_rating(rating);
  return signal;
}

v1::Signal Copy(const std::string& event_id, int chars, absl::Time occur) {
  v1::Signal signal = OnTrace(event_id, occur);
  signal.mutable_implicit_signal()->mutable_copy()->set_copied_chars(chars);
  return signal;
}

v1::Signal EditText(const std::string& event_id, const std::string& final_text, absl::Time occur) {
  v1::Signal signal = OnTrace(event_id, occur);
  signal.mutable_implicit_signal()->mutable_edit()->set_final_text(final_text);
  return signal;
}

v1::Signal EditRatio(const std::string& event_id, double ratio, absl::Time occur) {
  v1::Signal signal = OnTrace(event_id, occur);
  signal.mutable_implicit_signal()->mutable_edit()->set_edit_ratio(ratio);
  return signal;
}

v1::Signal Dwell(const std::string& event_id, absl::Duration duration, absl::Time occur) {
  v1::Signal signal = OnTrace(event_id, occur);
  *signal.mutable_implicit_signal()->mutable_dwell()->mutable_duration() = ToProto(duration);
  return signal;
}

v1::Signal Outcome(const std::string& event_id, v1::OutcomeStatus status, absl::Time occur) {
  v1::Signal signal = OnTrace(event_id, occur);
  signal.clear_user_id();
  signal.mutable_outcome()->set_name("ticket_resolved");
  signal.mutable_outcome()->set_status(status);
  return signal;
}

const v1::DerivedSignal* Find(const std::vector<v1::DerivedSignal>& derived, v1::SignalKind kind) {
  const v1::DerivedSignal* found = nullptr;
  for (const auto& signal : derived) {
    if (signal.signal_kind() == kind) {
      EXPECT_EQ(found, nullptr) << "two derived signals of kind " << kind;
      found = &signal;
    }
  }
  return found;
}

std::vector<std::string> RuleIds(const v1::TraceLabel& label) {
  std::vector<std::string> ids;
  for (const auto& reason : label.reasons()) ids.push_back(reason.rule_id());
  return ids;
}

v1::TraceLabel LabelOf(const TraceEvidence& evidence,
                       const v1::LabelRuleSet& rules = DefaultRuleSet()) {
  return Score(evidence, Derive(evidence, rules, kNow), rules, kNow);
}

// Score from the prior p = 1 and summed effective weights.
double Expected(double success, double failure) { return (1 + success) / (2 + success + failure); }

// ---------------------------------------------------------------------------------------------
// DefaultRuleSet
// ---------------------------------------------------------------------------------------------

common::v1::DoubleRange Range(std::optional<double> min, std::optional<double> max) {
  common::v1::DoubleRange range;
  if (min) range.set_min(*min);
  if (max) range.set_max(*max);
  return range;
}

TEST(DefaultRuleSetTest, RulesMatchTheDocumentedTable) {
  struct Row {
    const char* id;
    v1::SignalKind kind;
    v1::LabelVote vote;
    double weight;
    v1::LabelRuleMatch match;  // conditions only; signal_kind is filled in below
  };
  auto match = [](auto configure) {
    v1::LabelRuleMatch m;
    configure(m);
    return m;
  };
  auto none = [](v1::LabelRuleMatch&) {};
  const std::vector<Row> table = {
      {"thumbs_down_comment", v1::SIGNAL_KIND_THUMBS_DOWN, v1::LABEL_VOTE_FAILURE, 4.0,
       match([](v1::LabelRuleMatch& m) { m.set_has_comment(true); })},
      {"thumbs_down", v1::SIGNAL_KIND_THUMBS_DOWN, v1::LABEL_VOTE_FAILURE, 3.0,
       match([](v1::LabelRuleMatch& m) { m.set_has_comment(false); })},
      {"thumbs_up", v1::SIGNAL_KIND_THUMBS_UP, v1::LABEL_VOTE_SUCCESS, 1.5, match(none)},
      {"rating_low", v1::SIGNAL_KIND_RATING, v1::LABEL_VOTE_FAILURE, 3.0,
       match([](v1::LabelRuleMatch& m) { *m.mutable_rating() = Range(1, 2); })},
      {"rating_high", v1::SIGNAL_KIND_RATING, v1::LABEL_VOTE_SUCCESS, 1.5,
       match([](v1::LabelRuleMatch& m) { *m.mutable_rating() = Range(4, 5); })},
      {"regenerated", v1::SIGNAL_KIND_DERIVED_REGENERATE_PAIR, v1::LABEL_VOTE_FAILURE, 2.5,
       match(none)},
      {"rephrased", v1::SIGNAL_KIND_DERIVED_REPHRASE, v1::LABEL_VOTE_FAILURE, 2.0, match(none)},
      {"edit_light", v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE, v1::LABEL_VOTE_SUCCESS, 1.0,
       match([](v1::LabelRuleMatch& m) { *m.mutable_edit_ratio() = Range(0, 0.0999); })},
      {"edit_good_enough", v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE, v1::LABEL_VOTE_ABSTAIN, 1.0,
       match([](v1::LabelRuleMatch& m) { *m.mutable_edit_ratio() = Range(0.1, 0.3); })},
      {"edit_heavy", v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE, v1::LABEL_VOTE_FAILURE, 2.0,
       match([](v1::LabelRuleMatch& m) { *m.mutable_edit_ratio() = Range(0.3001, 1); })},
      {"copied", v1::SIGNAL_KIND_COPY, v1::LABEL_VOTE_SUCCESS, 1.0,
       match([](v1::LabelRuleMatch& m) { *m.mutable_copied_chars() = Range(20, std::nullopt); })},
      {"abandoned_one_turn", v1::SIGNAL_KIND_DERIVED_ABANDONMENT, v1::LABEL_VOTE_FAILURE, 0.5,
       match([](v1::LabelRuleMatch& m) { *m.mutable_session_turns() = Range(1, 1); })},
      {"slow_next_action", v1::SIGNAL_KIND_DERIVED_TIME_TO_NEXT_ACTION, v1::LABEL_VOTE_FAILURE,
       0.25, match([](v1::LabelRuleMatch& m) {
         *m.mutable_duration_seconds() = Range(120, std::nullopt);
       })},
      {"outcome_success", v1::SIGNAL_KIND_OUTCOME, v1::LABEL_VOTE_SUCCESS, 4.0,
       match([](v1::LabelRuleMatch& m) { m.set_outcome_status(v1::OUTCOME_STATUS_SUCCESS); })},
      {"outcome_failure", v1::SIGNAL_KIND_OUTCOME, v1::LABEL_VOTE_FAILURE, 4.0,
       match([](v1::LabelRuleMatch& m) { m.set_outcome_status(v1::OUTCOME_STATUS_FAILURE); })},
  };
  const v1::LabelRuleSet rules = DefaultRuleSet();
  ASSERT_EQ(rules.rules_size(), static_cast<int>(table.size()));
  for (size_t i = 0; i < table.size(); ++i) {
    const v1::LabelRule& rule = rules.rules(static_cast<int>(i));
    const Row& row = table[i];
    SCOPED_TRACE(row.id);
    EXPECT_EQ(rule.rule_id(), row.id);
    EXPECT_EQ(rule.match().signal_kind(), row.kind);
    EXPECT_EQ(rule.vote(), row.vote);
    EXPECT_DOUBLE_EQ(rule.weight(), row.weight);
    v1::LabelRuleMatch expected = row.match;
    expected.set_signal_kind(row.kind);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(rule.match(), expected))
        << rule.match().DebugString() << " vs " << expected.DebugString();
  }
}

TEST(DefaultRuleSetTest, ParametersMatchVersionOneDefaults) {
  const v1::LabelRuleSet rules = DefaultRuleSet();
  EXPECT_EQ(rules.version(), 1);
  EXPECT_EQ(rules.base_version(), 0);
  EXPECT_DOUBLE_EQ(rules.flag_threshold(), 0.35);
  EXPECT_DOUBLE_EQ(rules.prior_strength(), 1.0);
  EXPECT_EQ(ToDuration(rules.decay_half_life()), absl::Hours(24 * 90));
  EXPECT_EQ(ToDuration(rules.coverage().window()), absl::Hours(24 * 30));
  EXPECT_DOUBLE_EQ(rules.coverage().loudness_exponent(), 0.5);
  EXPECT_EQ(rules.coverage().invariant_rater_min_ratings(), 10);
  EXPECT_DOUBLE_EQ(rules.coverage().invariant_rater_factor(), 0.25);
  EXPECT_EQ(ToDuration(rules.abandonment_timeout()), absl::Minutes(30));
  EXPECT_DOUBLE_EQ(rules.rephrase_similarity_threshold(), 0.7);
  EXPECT_EQ(ToDuration(rules.rephrase_max_gap()), absl::Minutes(10));
  ASSERT_TRUE(rules.good_enough_edit_band().has_min());
  ASSERT_TRUE(rules.good_enough_edit_band().has_max());
  EXPECT_DOUBLE_EQ(rules.good_enough_edit_band().min(), 0.10);
  EXPECT_DOUBLE_EQ(rules.good_enough_edit_band().max(), 0.30);
  EXPECT_DOUBLE_EQ(rules.session_signal_factor(), 0.5);
  std::vector<std::string> categories;
  for (const auto& category : rules.reason_categories()) {
    categories.push_back(category.id());
    EXPECT_FALSE(category.display_name().empty()) << category.id();
    EXPECT_FALSE(category.retired()) << category.id();
  }
  EXPECT_THAT(categories, ElementsAre("incorrect", "incomplete", "irrelevant", "unsafe",
                                      "formatting", "too_slow", "other"));
}

// ---------------------------------------------------------------------------------------------
// UserText
// ---------------------------------------------------------------------------------------------

TEST(UserTextTest, PromptOrLastUserMessageOrLastMessage) {
  common::v1::LlmInput input;
  input.set_prompt("the prompt");
  EXPECT_EQ(UserText(input), "the prompt");

  auto* messages = input.mutable_messages();
  auto add = [&](const char* role, const char* content) {
    auto* message = messages->add_messages();
    message->set_role(role);
    message->set_content(content);
  };
  add("system", "be nice");
  add("user", "first question");
  add("assistant", "first answer");
  add("user", "second question");
  add("assistant", "second answer");
  EXPECT_EQ(UserText(input), "second question");

  common::v1::LlmInput no_user;
  auto* only = no_user.mutable_messages()->add_messages();
  only->set_role("system");
  only->set_content("a");
  only = no_user.mutable_messages()->add_messages();
  only->set_role("tool");
  only->set_content("b");
  EXPECT_EQ(UserText(no_user), "b");
}

// ---------------------------------------------------------------------------------------------
// Derive: rephrase and retry
// ---------------------------------------------------------------------------------------------

class DeriveSessionTest : public ::testing::Test {
 protected:
  // Trace A, then trace B with `next_prompt` starting `gap` after A ends.
  TraceEvidence WithNext(const std::string& next_prompt, absl::Duration gap) {
    const absl::Time a_start = kNow - absl::Minutes(30);
    TraceEvidence evidence = EvidenceFor(MakeTrace("trace-a", kPrompt, a_start));
    evidence.next_trace = MakeTrace("trace-b", next_prompt, a_start + absl::Seconds(2) + gap);
    evidence.session_turns = 2;
    return evidence;
  }

  static constexpr const char* kPrompt = "how do I reset my password";
  const v1::LabelRuleSet rules_ = DefaultRuleSet();
};

TEST_F(DeriveSessionTest, SimilarNextInputWithinGapIsDerivedRephrase) {
  const TraceEvidence evidence = WithNext("how can I reset my account password", absl::Seconds(30));
  const auto derived = Derive(evidence, rules_, kNow);

  const v1::DerivedSignal* rephrase = Find(derived, v1::SIGNAL_KIND_DERIVED_REPHRASE);
  ASSERT_NE(rephrase, nullptr);
  EXPECT_EQ(rephrase->trace_id(), "trace-a");
  EXPECT_EQ(rephrase->rephrase().next_trace_id(), "trace-b");
  ASSERT_TRUE(rephrase->rephrase().has_similarity());
  EXPECT_GE(rephrase->rephrase().similarity(), 0.7);
  EXPECT_LT(rephrase->rephrase().similarity(), 1.0);
  EXPECT_EQ(ToDuration(rephrase->rephrase().gap()), absl::Seconds(30));
  EXPECT_FALSE(rephrase->rephrase().client_reported());
  EXPECT_EQ(ToTime(rephrase->occur_time()), ToTime(evidence.next_trace->start_time()));
  EXPECT_EQ(ToTime(rephrase->derive_time()), kNow);
  EXPECT_EQ(rephrase->rule_set_version(), 1);
  EXPECT_THAT(rephrase->source_event_ids(), IsEmpty());
  EXPECT_EQ(Find(derived, v1::SIGNAL_KIND_DERIVED_REGENERATE_PAIR), nullptr);
}

TEST_F(DeriveSessionTest, IdenticalNextInputIsRegeneratePairNotRephrase) {
  const TraceEvidence evidence = WithNext("How do I reset my  PASSWORD?", absl::Seconds(5));
  const auto derived = Derive(evidence, rules_, kNow);

  EXPECT_EQ(Find(derived, v1::SIGNAL_KIND_DERIVED_REPHRASE), nullptr);
  const v1::DerivedSignal* pair = Find(derived, v1::SIGNAL_KIND_DERIVED_REGENERATE_PAIR);
  ASSERT_NE(pair, nullptr);
  EXPECT_EQ(pair->regenerate_pair().source(), v1::REGENERATE_SOURCE_IDENTICAL_INPUT);
  EXPECT_EQ(pair->regenerate_pair().next_trace_id(), "trace-b");
  EXPECT_EQ(pair->regenerate_pair().attempt_number(), 0);
  EXPECT_THAT(pair->source_event_ids(), IsEmpty());
}

TEST_F(DeriveSessionTest, UnrelatedNextInputIsNeitherRephraseNorRetry) {
  const auto derived = Derive(WithNext("best pizza in naples", absl::Seconds(30)), rules_, kNow);
  EXPECT_EQ(Find(derived, v1::SIGNAL_KIND_DERIVED_REPHRASE), nullptr);
  EXPECT_EQ(Find(derived, v1::SIGNAL_KIND_DERIVED_REGENERATE_PAIR), nullptr);
}

TEST_F(DeriveSessionTest, SimilarNextInputAfterMaxGapIsNeither) {
  const auto derived =
      Derive(WithNext("how can I reset my account password", absl::Minutes(11)), rules_, kNow);
  EXPECT_EQ(Find(derived, v1::SIGNAL_KIND_DERIVED_REPHRASE), nullptr);
  EXPECT_EQ(Find(derived, v1::SIGNAL_KIND_DERIVED_REGENERATE_PAIR), nullptr);
}

TEST_F(DeriveSessionTest, IdenticalNextInputAfterMaxGapIsNotARetry) {
  const auto derived = Derive(WithNext(kPrompt, absl::Minutes(11)), rules_, kNow);
  EXPECT_EQ(Find(derived, v1::SIGNAL_KIND_DERIVED_REGENERATE_PAIR), nullptr);
  EXPECT_EQ(Find(derived, v1::SIGNAL_KIND_DERIVED_REPHRASE), nullptr);
}

TEST_F(DeriveSessionTest, StricterSimilarityThresholdSuppressesRephrase) {
  v1::LabelRuleSet strict = rules_;
  strict.set_rephrase_similarity_threshold(0.99);
  const auto derived =
      Derive(WithNext("how can I reset my account password", absl::Seconds(30)), strict, kNow);
  EXPECT_EQ(Find(derived, v1::SIGNAL_KIND_DERIVED_REPHRASE), nullptr);
}

TEST_F(DeriveSessionTest, ClientRephraseSignalIsDerivedRephrase) {
  TraceEvidence evidence = Lone();
  v1::Signal signal = OnTrace("rephrase-1", kNow - absl::Minutes(1));
  signal.mutable_implicit_signal()->mutable_rephrase()->set_new_trace_id("trace-z");
  evidence.signals.push_back(signal);
  const auto derived = Derive(evidence, rules_, kNow);
  const v1::DerivedSignal* rephrase = Find(derived, v1::SIGNAL_KIND_DERIVED_REPHRASE);
  ASSERT_NE(rephrase, nullptr);
  EXPECT_TRUE(rephrase->rephrase().client_reported());
  EXPECT_EQ(rephrase->rephrase().next_trace_id(), "trace-z");
  EXPECT_FALSE(rephrase->rephrase().has_similarity());
  EXPECT_THAT(rephrase->source_event_ids(), ElementsAre("rephrase-1"));
}

TEST_F(DeriveSessionTest, RegenerateSignalIsPairWithSignalSource) {
  TraceEvidence evidence = Lone();
  v1::Signal signal = OnTrace("regen-1", kNow - absl::Minutes(1));
  signal.mutable_implicit_signal()->mutable_regenerate()->set_attempt_number(2);
  signal.mutable_implicit_signal()->mutable_regenerate()->set_new_trace_id("trace-b");
  evidence.signals.push_back(signal);

  const auto derived = Derive(evidence, rules_, kNow);
  const v1::DerivedSignal* pair = Find(derived, v1::SIGNAL_KIND_DERIVED_REGENERATE_PAIR);
  ASSERT_NE(pair, nullptr);
  EXPECT_EQ(pair->regenerate_pair().source(), v1::REGENERATE_SOURCE_SIGNAL);
  EXPECT_EQ(pair->regenerate_pair().next_trace_id(), "trace-b");
  EXPECT_EQ(pair->regenerate_pair().attempt_number(), 2);
  EXPECT_THAT(pair->source_event_ids(), ElementsAre("regen-1"));
  EXPECT_EQ(ToTime(pair->occur_time()), kNow - absl::Minutes(1));
}

TEST_F(DeriveSessionTest, SignalsOfOtherTracesAreIgnored) {
  TraceEvidence evidence = Lone();
  v1::Signal signal = OnTrace("regen-1", kNow - absl::Minutes(1), "trace-other");
  signal.mutable_implicit_signal()->mutable_regenerate();
  evidence.signals.push_back(signal);
  evidence.signals.push_back(EditRatio("edit-1", 0.5, kNow));
  evidence.signals.back().set_trace_id("trace-other");
  EXPECT_THAT(Derive(evidence, rules_, kNow), IsEmpty());
}

// ---------------------------------------------------------------------------------------------
// Derive: edits
// ---------------------------------------------------------------------------------------------

TEST(DeriveEditTest, FinalTextInGoodEnoughBandIsComputedServerSide) {
  TraceEvidence evidence = Lone();
  evidence.trace.set_output("the quick brown fox jumps over the lazy dog today");  // 10 tokens
  evidence.signals.push_back(
      EditText("edit-1", "the quick red fox jumps over the lazy cat today", kNow));
  const auto derived = Derive(evidence, DefaultRuleSet(), kNow);
  const v1::DerivedSignal* edit = Find(derived, v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE);
  ASSERT_NE(edit, nullptr);
  EXPECT_NEAR(edit->edit_distance().edit_ratio(), 0.2, kExact);
  EXPECT_TRUE(edit->edit_distance().good_enough());
  EXPECT_FALSE(edit->edit_distance().client_supplied());
  EXPECT_THAT(edit->source_event_ids(), ElementsAre("edit-1"));
}

TEST(DeriveEditTest, HeavyFinalTextEditIsOutsideGoodEnoughBand) {
  TraceEvidence evidence = Lone();
  evidence.trace.set_output("the quick brown fox jumps over the lazy dog today");
  evidence.signals.push_back(
      EditText("edit-1", "a slow red cat jumps over the lazy dog today", kNow));
  const auto derived = Derive(evidence, DefaultRuleSet(), kNow);
  const v1::DerivedSignal* edit = Find(derived, v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE);
  ASSERT_NE(edit, nullptr);
  EXPECT_NEAR(edit->edit_distance().edit_ratio(), 0.4, kExact);
  EXPECT_FALSE(edit->edit_distance().good_enough());
}

TEST(DeriveEditTest, ClientEditRatioIsUsedRoundedToFourDecimals) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(EditRatio("edit-1", 0.123456, kNow));
  const auto derived = Derive(evidence, DefaultRuleSet(), kNow);
  const v1::DerivedSignal* edit = Find(derived, v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE);
  ASSERT_NE(edit, nullptr);
  EXPECT_NEAR(edit->edit_distance().edit_ratio(), 0.1235, kExact);
  EXPECT_TRUE(edit->edit_distance().client_supplied());
  EXPECT_TRUE(edit->edit_distance().good_enough());
}

TEST(DeriveEditTest, GoodEnoughBandBoundsAreInclusive) {
  for (const auto& [ratio, good_enough] : std::vector<std::pair<double, bool>>{
           {0.0999, false}, {0.1, true}, {0.3, true}, {0.3001, false}}) {
    TraceEvidence evidence = Lone();
    evidence.signals.push_back(EditRatio("edit-1", ratio, kNow));
    const auto derived = Derive(evidence, DefaultRuleSet(), kNow);
    const v1::DerivedSignal* edit = Find(derived, v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE);
    ASSERT_NE(edit, nullptr);
    EXPECT_EQ(edit->edit_distance().good_enough(), good_enough) << ratio;
  }
}

TEST(DeriveEditTest, LatestEditWins) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(EditRatio("edit-late", 0.8, kNow - absl::Minutes(1)));
  evidence.signals.push_back(EditRatio("edit-early", 0.05, kNow - absl::Minutes(5)));
  const auto derived = Derive(evidence, DefaultRuleSet(), kNow);
  const v1::DerivedSignal* edit = Find(derived, v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE);
  ASSERT_NE(edit, nullptr);
  EXPECT_NEAR(edit->edit_distance().edit_ratio(), 0.8, kExact);
  EXPECT_THAT(edit->source_event_ids(), ElementsAre("edit-late"));
}

// ---------------------------------------------------------------------------------------------
// Derive: abandonment and time to next action
// ---------------------------------------------------------------------------------------------

TraceEvidence IdleLastTrace(int session_turns = 1) {
  TraceEvidence evidence =
      EvidenceFor(MakeTrace("trace-a", "draft a reply", kNow - absl::Minutes(40)));
  evidence.session_turns = session_turns;
  evidence.session_idle = true;
  return evidence;
}

TEST(DeriveAbandonmentTest, LastTraceOfIdleSessionWithoutPositiveSignalIsAbandoned) {
  const TraceEvidence evidence = IdleLastTrace(3);
  const auto derived = Derive(evidence, DefaultRuleSet(), kNow);
  const v1::DerivedSignal* abandonment = Find(derived, v1::SIGNAL_KIND_DERIVED_ABANDONMENT);
  ASSERT_NE(abandonment, nullptr);
  EXPECT_EQ(abandonment->abandonment().session_turns(), 3);
  EXPECT_FALSE(abandonment->abandonment().client_reported());
  EXPECT_EQ(ToTime(abandonment->occur_time()), ToTime(evidence.trace.end_time()));
  EXPECT_THAT(abandonment->source_event_ids(), IsEmpty());
}

TEST(DeriveAbandonmentTest, CopyPreventsAbandonment) {
  TraceEvidence evidence = IdleLastTrace();
  evidence.signals.push_back(Copy("copy-1", 50, kNow - absl::Minutes(39)));
  EXPECT_EQ(Find(Derive(evidence, DefaultRuleSet(), kNow), v1::SIGNAL_KIND_DERIVED_ABANDONMENT),
            nullptr);
}

TEST(DeriveAbandonmentTest, ThumbsUpPreventsAbandonmentButThumbsDownDoesNot) {
  TraceEvidence up = IdleLastTrace();
  up.signals.push_back(Thumb("up-1", v1::THUMB_UP, kNow - absl::Minutes(39)));
  EXPECT_EQ(Find(Derive(up, DefaultRuleSet(), kNow), v1::SIGNAL_KIND_DERIVED_ABANDONMENT), nullptr);
  TraceEvidence down = IdleLastTrace();
  down.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow - absl::Minutes(39)));
  EXPECT_NE(Find(Derive(down, DefaultRuleSet(), kNow), v1::SIGNAL_KIND_DERIVED_ABANDONMENT),
            nullptr);
}

TEST(DeriveAbandonmentTest, ActiveSessionIsNotAbandoned) {
  TraceEvidence evidence = IdleLastTrace();
  evidence.session_idle = false;
  EXPECT_EQ(Find(Derive(evidence, DefaultRuleSet(), kNow), v1::SIGNAL_KIND_DERIVED_ABANDONMENT),
            nullptr);
}

TEST(DeriveAbandonmentTest, TraceWithANextTraceIsNotAbandoned) {
  TraceEvidence evidence = IdleLastTrace(2);
  evidence.next_trace = MakeTrace("trace-b", "something else entirely", kNow - absl::Minutes(35));
  EXPECT_EQ(Find(Derive(evidence, DefaultRuleSet(), kNow), v1::SIGNAL_KIND_DERIVED_ABANDONMENT),
            nullptr);
}

TEST(DeriveAbandonmentTest, TraceWithoutSessionIsNotAbandoned) {
  TraceEvidence evidence = IdleLastTrace();
  evidence.trace.clear_session_id();
  EXPECT_EQ(Find(Derive(evidence, DefaultRuleSet(), kNow), v1::SIGNAL_KIND_DERIVED_ABANDONMENT),
            nullptr);
}

TEST(DeriveAbandonmentTest, ClientAbandonmentSignalIsReportedEvenInActiveSession) {
  TraceEvidence evidence = IdleLastTrace(1);
  evidence.session_idle = false;
  v1::Signal signal = OnTrace("abandon-1", kNow - absl::Minutes(38));
  signal.mutable_implicit_signal()->mutable_abandonment();
  evidence.signals.push_back(signal);
  const auto derived = Derive(evidence, DefaultRuleSet(), kNow);
  const v1::DerivedSignal* abandonment = Find(derived, v1::SIGNAL_KIND_DERIVED_ABANDONMENT);
  ASSERT_NE(abandonment, nullptr);
  EXPECT_TRUE(abandonment->abandonment().client_reported());
  EXPECT_EQ(abandonment->abandonment().session_turns(), 1);
  EXPECT_THAT(abandonment->source_event_ids(), ElementsAre("abandon-1"));
  EXPECT_EQ(ToTime(abandonment->occur_time()), kNow - absl::Minutes(38));
}

TEST(DeriveTimeToNextActionTest, GapToNextTraceIsMeasured) {
  TraceEvidence evidence = EvidenceFor(MakeTrace("trace-a", "first", kNow - absl::Minutes(20)));
  evidence.next_trace = MakeTrace("trace-b", "unrelated topic",
                                  kNow - absl::Minutes(20) + absl::Seconds(2) + absl::Minutes(3));
  const auto derived = Derive(evidence, DefaultRuleSet(), kNow);
  const v1::DerivedSignal* next = Find(derived, v1::SIGNAL_KIND_DERIVED_TIME_TO_NEXT_ACTION);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(ToDuration(next->time_to_next_action().duration()), absl::Minutes(3));
  EXPECT_EQ(next->time_to_next_action().next_trace_id(), "trace-b");
  EXPECT_FALSE(next->time_to_next_action().client_reported());
  EXPECT_EQ(ToTime(next->occur_time()), ToTime(evidence.trace.end_time()));
}

TEST(DeriveTimeToNextActionTest, DwellSignalTakesPrecedenceOverTraceGap) {
  TraceEvidence evidence = EvidenceFor(MakeTrace("trace-a", "first", kNow - absl::Minutes(20)));
  evidence.next_trace = MakeTrace("trace-b", "unrelated topic",
                                  kNow - absl::Minutes(20) + absl::Seconds(2) + absl::Minutes(3));
  evidence.signals.push_back(Dwell("dwell-1", absl::Seconds(45), kNow - absl::Minutes(19)));
  const auto derived = Derive(evidence, DefaultRuleSet(), kNow);
  const v1::DerivedSignal* next = Find(derived, v1::SIGNAL_KIND_DERIVED_TIME_TO_NEXT_ACTION);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(ToDuration(next->time_to_next_action().duration()), absl::Seconds(45));
  EXPECT_TRUE(next->time_to_next_action().client_reported());
  EXPECT_EQ(next->time_to_next_action().next_trace_id(), "");
  EXPECT_THAT(next->source_event_ids(), ElementsAre("dwell-1"));
}

TEST(DeriveTimeToNextActionTest, NothingToMeasureYieldsNoSignal) {
  EXPECT_EQ(
      Find(Derive(Lone(), DefaultRuleSet(), kNow), v1::SIGNAL_KIND_DERIVED_TIME_TO_NEXT_ACTION),
      nullptr);
}

// ---------------------------------------------------------------------------------------------
// Score: documented examples
// ---------------------------------------------------------------------------------------------

TEST(ScoreTest, NoEvidenceScoresHalfWithoutReasonsAndIsNotFlagged) {
  const v1::TraceLabel label = LabelOf(Lone());
  EXPECT_NEAR(label.quality_score(), 0.5, kExact);
  EXPECT_FALSE(label.flagged());
  EXPECT_THAT(label.reasons(), IsEmpty());
  EXPECT_EQ(label.rule_set_version(), 1);
  EXPECT_EQ(ToTime(label.label_time()), kNow);
}

TEST(ScoreTest, OneThumbsDownScoresPointTwoAndIsFlagged) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow));
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_NEAR(label.quality_score(), 0.2, kExact);
  EXPECT_TRUE(label.flagged());
  ASSERT_EQ(label.reasons_size(), 1);
  const v1::LabelReason& reason = label.reasons(0);
  EXPECT_EQ(reason.rule_id(), "thumbs_down");
  EXPECT_EQ(reason.signal_kind(), v1::SIGNAL_KIND_THUMBS_DOWN);
  EXPECT_EQ(reason.vote(), v1::LABEL_VOTE_FAILURE);
  EXPECT_DOUBLE_EQ(reason.weight(), 3.0);
  EXPECT_NEAR(reason.contribution(), -3.0, kExact);
  EXPECT_EQ(reason.evidence_id(), "down-1");
}

TEST(ScoreTest, ThumbsDownWithCommentUsesTheCommentRuleOnly) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow, "user-1", "Wrong date."));
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_THAT(RuleIds(label), ElementsAre("thumbs_down_comment"));
  EXPECT_NEAR(label.quality_score(), Expected(0, 4), kExact);
  EXPECT_TRUE(label.flagged());
}

TEST(ScoreTest, OneRegenerationScoresAboutPointTwoTwoAndIsFlagged) {
  // A retry of the identical prompt that starts now (so the derived pair has no decay).
  TraceEvidence evidence =
      EvidenceFor(MakeTrace("trace-a", "write a haiku about rain", kNow - absl::Seconds(30)));
  evidence.next_trace = MakeTrace("trace-b", "Write a haiku about rain.", kNow);
  evidence.session_turns = 2;
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_THAT(RuleIds(label), ElementsAre("regenerated"));
  EXPECT_NEAR(label.quality_score(), 1.0 / 4.5, kExact);
  EXPECT_NEAR(label.quality_score(), 0.22, 0.005);
  EXPECT_TRUE(label.flagged());
}

TEST(ScoreTest, OneRegenerateSignalIsFlagged) {
  TraceEvidence evidence = Lone();
  v1::Signal signal = OnTrace("regen-1", kNow);
  signal.mutable_implicit_signal()->mutable_regenerate()->set_attempt_number(2);
  evidence.signals.push_back(signal);
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_THAT(RuleIds(label), ElementsAre("regenerated"));
  EXPECT_NEAR(label.quality_score(), 1.0 / 4.5, kExact);
  EXPECT_TRUE(label.flagged());
}

TEST(ScoreTest, OneRephraseScoresPointTwoFiveAndIsFlagged) {
  TraceEvidence evidence =
      EvidenceFor(MakeTrace("trace-a", "how do I reset my password", kNow - absl::Seconds(30)));
  evidence.next_trace = MakeTrace("trace-b", "how can I reset my account password", kNow);
  evidence.session_turns = 2;
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_THAT(RuleIds(label), ElementsAre("rephrased"));
  EXPECT_NEAR(label.quality_score(), 0.25, kExact);
  EXPECT_TRUE(label.flagged());
}

TEST(ScoreTest, OneHeavyEditScoresPointTwoFiveAndIsFlagged) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(EditRatio("edit-1", 0.6, kNow));
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_THAT(RuleIds(label), ElementsAre("edit_heavy"));
  EXPECT_NEAR(label.quality_score(), 0.25, kExact);
  EXPECT_TRUE(label.flagged());
}

TEST(ScoreTest, LightEditIsSuccess) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(EditRatio("edit-1", 0.05, kNow));
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_THAT(RuleIds(label), ElementsAre("edit_light"));
  EXPECT_NEAR(label.quality_score(), Expected(1, 0), kExact);
  EXPECT_FALSE(label.flagged());
}

TEST(ScoreTest, GoodEnoughEditAbstainsWithZeroContribution) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(EditRatio("edit-1", 0.2, kNow));
  const v1::TraceLabel label = LabelOf(evidence);
  ASSERT_EQ(label.reasons_size(), 1);
  EXPECT_EQ(label.reasons(0).rule_id(), "edit_good_enough");
  EXPECT_EQ(label.reasons(0).vote(), v1::LABEL_VOTE_ABSTAIN);
  EXPECT_EQ(label.reasons(0).signal_kind(), v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE);
  EXPECT_DOUBLE_EQ(label.reasons(0).weight(), 1.0);
  EXPECT_EQ(label.reasons(0).contribution(), 0.0);
  EXPECT_EQ(label.reasons(0).evidence_id(), "");
  EXPECT_NEAR(label.quality_score(), 0.5, kExact);
  EXPECT_FALSE(label.flagged());
}

TEST(ScoreTest, OneTurnAbandonmentAloneScoresPointFourAndIsNotFlagged) {
  const v1::TraceLabel label = LabelOf(IdleLastTrace(1));
  EXPECT_THAT(RuleIds(label), ElementsAre("abandoned_one_turn"));
  EXPECT_NEAR(label.quality_score(), 0.4, kNear);
  EXPECT_FALSE(label.flagged());
}

TEST(ScoreTest, MultiTurnAbandonmentIsNotScored) {
  const v1::TraceLabel label = LabelOf(IdleLastTrace(4));
  EXPECT_THAT(label.reasons(), IsEmpty());
  EXPECT_NEAR(label.quality_score(), 0.5, kExact);
}

TEST(ScoreTest, AbandonmentWithSlowNextActionScoresAboutPointThreeSixAndIsNotFlagged) {
  TraceEvidence evidence = IdleLastTrace(1);
  evidence.signals.push_back(Dwell("dwell-1", absl::Minutes(3), kNow));
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_THAT(RuleIds(label),
              ::testing::UnorderedElementsAre("abandoned_one_turn", "slow_next_action"));
  EXPECT_NEAR(label.quality_score(), 1.0 / 2.75, kNear);
  EXPECT_NEAR(label.quality_score(), 0.36, 0.005);
  EXPECT_FALSE(label.flagged());
}

TEST(ScoreTest, QuickNextActionIsNotScored) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Dwell("dwell-1", absl::Seconds(119), kNow));
  EXPECT_THAT(LabelOf(evidence).reasons(), IsEmpty());
}

TEST(ScoreTest, OutcomeFailureIsFlaggedAndSuccessIsNot) {
  TraceEvidence failure = Lone();
  failure.signals.push_back(Outcome("outcome-1", v1::OUTCOME_STATUS_FAILURE, kNow));
  const v1::TraceLabel failed = LabelOf(failure);
  EXPECT_THAT(RuleIds(failed), ElementsAre("outcome_failure"));
  EXPECT_NEAR(failed.quality_score(), Expected(0, 4), kExact);
  EXPECT_TRUE(failed.flagged());

  TraceEvidence success = Lone();
  success.signals.push_back(Outcome("outcome-1", v1::OUTCOME_STATUS_SUCCESS, kNow));
  const v1::TraceLabel succeeded = LabelOf(success);
  EXPECT_THAT(RuleIds(succeeded), ElementsAre("outcome_success"));
  EXPECT_NEAR(succeeded.quality_score(), Expected(4, 0), kExact);
  EXPECT_FALSE(succeeded.flagged());
}

TEST(ScoreTest, RatingsMapToLowHighOrNoRule) {
  for (const auto& [rating, rule] : std::vector<std::pair<int, std::string>>{
           {1, "rating_low"}, {2, "rating_low"}, {4, "rating_high"}, {5, "rating_high"}}) {
    TraceEvidence evidence = Lone();
    evidence.signals.push_back(Rating("rating-1", rating, kNow));
    EXPECT_THAT(RuleIds(LabelOf(evidence)), ElementsAre(rule)) << rating;
  }
  TraceEvidence neutral = Lone();
  neutral.signals.push_back(Rating("rating-1", 3, kNow));
  const v1::TraceLabel label = LabelOf(neutral);
  EXPECT_THAT(label.reasons(), IsEmpty());
  EXPECT_NEAR(label.quality_score(), 0.5, kExact);
}

TEST(ScoreTest, ShortCopyIsNotScoredAndLongCopyIsSuccess) {
  TraceEvidence short_copy = Lone();
  short_copy.signals.push_back(Copy("copy-1", 19, kNow));
  EXPECT_THAT(LabelOf(short_copy).reasons(), IsEmpty());
  TraceEvidence long_copy = Lone();
  long_copy.signals.push_back(Copy("copy-1", 20, kNow));
  const v1::TraceLabel label = LabelOf(long_copy);
  EXPECT_THAT(RuleIds(label), ElementsAre("copied"));
  EXPECT_NEAR(label.quality_score(), Expected(1, 0), kExact);
}

TEST(ScoreTest, SuccessOnlyEvidenceIsNeverFlaggedEvenBelowThreshold) {
  v1::LabelRuleSet rules = DefaultRuleSet();
  rules.set_flag_threshold(0.9);
  const v1::TraceLabel empty = LabelOf(Lone(), rules);
  EXPECT_NEAR(empty.quality_score(), 0.5, kExact);
  EXPECT_FALSE(empty.flagged());

  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Copy("copy-1", 100, kNow));
  const v1::TraceLabel copied = LabelOf(evidence, rules);
  EXPECT_LT(copied.quality_score(), 0.9);
  EXPECT_FALSE(copied.flagged());
}

TEST(ScoreTest, PriorStrengthShrinksTowardsHalf) {
  v1::LabelRuleSet rules = DefaultRuleSet();
  rules.set_prior_strength(2);
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow));
  EXPECT_NEAR(LabelOf(evidence, rules).quality_score(), 2.0 / 7.0, kExact);
}

// ---------------------------------------------------------------------------------------------
// Score: latest thumb per user
// ---------------------------------------------------------------------------------------------

TEST(ScoreTest, OnlyTheUsersLatestThumbCountsUpThenDownIsFailureOnly) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("up-1", v1::THUMB_UP, kNow - absl::Minutes(2)));
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow));
  const v1::TraceLabel label = LabelOf(evidence);
  ASSERT_EQ(label.reasons_size(), 1);
  EXPECT_EQ(label.reasons(0).rule_id(), "thumbs_down");
  EXPECT_EQ(label.reasons(0).evidence_id(), "down-1");
  EXPECT_NEAR(label.quality_score(), 0.2, kExact);
  EXPECT_TRUE(label.flagged());
}

TEST(ScoreTest, OnlyTheUsersLatestThumbCountsDownThenUpIsSuccessOnly) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("up-1", v1::THUMB_UP, kNow));  // listed first, happened last
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow - absl::Minutes(2)));
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_THAT(RuleIds(label), ElementsAre("thumbs_up"));
  EXPECT_NEAR(label.quality_score(), Expected(1.5, 0), kExact);
  EXPECT_FALSE(label.flagged());
}

TEST(ScoreTest, LatestRatingReplacesEarlierThumbOfTheSameUser) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow - absl::Minutes(2)));
  evidence.signals.push_back(Rating("rating-1", 5, kNow));
  EXPECT_THAT(RuleIds(LabelOf(evidence)), ElementsAre("rating_high"));
}

TEST(ScoreTest, ThumbsOfDifferentUsersAllCount) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow, "user-1"));
  evidence.signals.push_back(Thumb("down-2", v1::THUMB_DOWN, kNow, "user-2"));
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_THAT(RuleIds(label), ElementsAre("thumbs_down", "thumbs_down"));
  EXPECT_NEAR(label.quality_score(), Expected(0, 6), kExact);
}

// ---------------------------------------------------------------------------------------------
// Score: coverage, decay and session factor
// ---------------------------------------------------------------------------------------------

TEST(ScoreTest, LoudRaterWeighsInverseSquareRootOfSignalCount) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow));
  evidence.raters["user-1"] = RaterStats{/*explicit_signals=*/4, /*valued_signals=*/4,
                                         /*distinct_values=*/2};
  const v1::TraceLabel label = LabelOf(evidence);
  ASSERT_EQ(label.reasons_size(), 1);
  EXPECT_NEAR(label.reasons(0).contribution(), -3.0 / 2.0, kExact);
  EXPECT_NEAR(label.quality_score(), Expected(0, 1.5), kExact);
}

TEST(ScoreTest, SingleSignalRaterIsNotDownWeighted) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow));
  evidence.raters["user-1"] = RaterStats{1, 1, 1};
  EXPECT_NEAR(LabelOf(evidence).reasons(0).contribution(), -3.0, kExact);
}

TEST(ScoreTest, LoudnessExponentZeroDisablesCoverageWeighting) {
  v1::LabelRuleSet rules = DefaultRuleSet();
  rules.mutable_coverage()->set_loudness_exponent(0);
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow));
  evidence.raters["user-1"] = RaterStats{25, 5, 2};
  EXPECT_NEAR(LabelOf(evidence, rules).reasons(0).contribution(), -3.0, kExact);
}

TEST(ScoreTest, InvariantRaterIsFurtherDownWeighted) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow));
  evidence.raters["user-1"] = RaterStats{/*explicit_signals=*/16, /*valued_signals=*/16,
                                         /*distinct_values=*/1};
  const v1::TraceLabel label = LabelOf(evidence);
  ASSERT_EQ(label.reasons_size(), 1);
  EXPECT_NEAR(label.reasons(0).contribution(), -3.0 * 0.25 * 0.25, kExact);
}

TEST(ScoreTest, VaryingOrFewRatingsAreNotTreatedAsInvariant) {
  TraceEvidence varying = Lone();
  varying.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow));
  varying.raters["user-1"] = RaterStats{16, 16, 2};
  EXPECT_NEAR(LabelOf(varying).reasons(0).contribution(), -3.0 * 0.25, kExact);

  TraceEvidence few = Lone();
  few.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow));
  few.raters["user-1"] = RaterStats{9, 9, 1};  // below invariant_rater_min_ratings (10)
  EXPECT_NEAR(LabelOf(few).reasons(0).contribution(), -3.0 / 3.0, kExact);
}

TEST(ScoreTest, CoverageAppliesOnlyToUserExplicitFeedback) {
  TraceEvidence reviewer = Lone();
  reviewer.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow));
  reviewer.signals.back().set_actor(common::v1::ACTOR_REVIEWER);
  reviewer.raters["user-1"] = RaterStats{16, 16, 1};
  EXPECT_NEAR(LabelOf(reviewer).reasons(0).contribution(), -3.0, kExact);

  TraceEvidence copy = Lone();
  copy.signals.push_back(Copy("copy-1", 100, kNow));
  copy.raters["user-1"] = RaterStats{16, 16, 1};
  EXPECT_NEAR(LabelOf(copy).reasons(0).contribution(), 1.0, kExact);
}

TEST(ScoreTest, EvidenceOneHalfLifeOldWeighsHalf) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow - absl::Hours(24 * 90)));
  const v1::TraceLabel label = LabelOf(evidence);
  ASSERT_EQ(label.reasons_size(), 1);
  EXPECT_NEAR(label.reasons(0).contribution(), -1.5, kExact);
  EXPECT_NEAR(label.quality_score(), Expected(0, 1.5), kExact);

  TraceEvidence older = Lone();
  older.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow - absl::Hours(24 * 180)));
  EXPECT_NEAR(LabelOf(older).reasons(0).contribution(), -0.75, kExact);
}

TEST(ScoreTest, ZeroHalfLifeDisablesDecay) {
  v1::LabelRuleSet rules = DefaultRuleSet();
  rules.clear_decay_half_life();
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow - absl::Hours(24 * 365)));
  EXPECT_NEAR(LabelOf(evidence, rules).reasons(0).contribution(), -3.0, kExact);
}

TEST(ScoreTest, FutureEvidenceAgeIsClampedAtZero) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Thumb("down-1", v1::THUMB_DOWN, kNow + absl::Minutes(4)));
  EXPECT_NEAR(LabelOf(evidence).reasons(0).contribution(), -3.0, kExact);
}

TEST(ScoreTest, DerivedEvidenceDecaysWithItsOccurTime) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(EditRatio("edit-1", 0.6, kNow - absl::Hours(24 * 90)));
  const v1::TraceLabel label = LabelOf(evidence);
  ASSERT_EQ(label.reasons_size(), 1);
  EXPECT_EQ(label.reasons(0).rule_id(), "edit_heavy");
  EXPECT_NEAR(label.reasons(0).contribution(), -1.0, kExact);
}

TEST(ScoreTest, SessionLevelSignalIsScaledBySessionSignalFactor) {
  TraceEvidence evidence = Lone();
  v1::Signal signal = Outcome("outcome-1", v1::OUTCOME_STATUS_FAILURE, kNow);
  signal.set_session_id("session-1");
  evidence.signals.push_back(signal);
  const v1::TraceLabel label = LabelOf(evidence);
  ASSERT_EQ(label.reasons_size(), 1);
  EXPECT_EQ(label.reasons(0).rule_id(), "outcome_failure");
  EXPECT_EQ(label.reasons(0).evidence_id(), "outcome-1");
  EXPECT_NEAR(label.reasons(0).contribution(), -4.0 * 0.5, kExact);
  EXPECT_NEAR(label.quality_score(), 0.25, kExact);
  EXPECT_TRUE(label.flagged());

  v1::LabelRuleSet rules = DefaultRuleSet();
  rules.set_session_signal_factor(0.25);
  EXPECT_NEAR(LabelOf(evidence, rules).reasons(0).contribution(), -1.0, kExact);
}

TEST(ScoreTest, ConflictingEvidenceCombinesSuccessAndFailure) {
  TraceEvidence evidence = Lone();
  evidence.signals.push_back(Copy("copy-1", 200, kNow));
  v1::Signal regen = OnTrace("regen-1", kNow);
  regen.mutable_implicit_signal()->mutable_regenerate();
  evidence.signals.push_back(regen);
  const v1::TraceLabel label = LabelOf(evidence);
  EXPECT_THAT(RuleIds(label), ::testing::UnorderedElementsAre("copied", "regenerated"));
  EXPECT_NEAR(label.quality_score(), Expected(1.0, 2.5), kExact);
  EXPECT_FALSE(label.flagged());  // 2 / 5.5 = 0.36
}

TEST(ScoreTest, RuleActorConditionUsesDefaultActorWhenUnset) {
  v1::LabelRuleSet rules = DefaultRuleSet();
  rules.clear_rules();
  v1::LabelRule* rule = rules.add_rules();
  rule->set_rule_id("system_outcome_failure");
  rule->mutable_match()->set_signal_kind(v1::SIGNAL_KIND_OUTCOME);
  rule->mutable_match()->add_actors(common::v1::ACTOR_SYSTEM);
  rule->set_vote(v1::LABEL_VOTE_FAILURE);
  rule->set_weight(1.0);

  TraceEvidence unset = Lone();
  unset.signals.push_back(Outcome("outcome-1", v1::OUTCOME_STATUS_FAILURE, kNow));
  EXPECT_THAT(RuleIds(LabelOf(unset, rules)), ElementsAre("system_outcome_failure"));

  TraceEvidence user = unset;
  user.signals.back().set_actor(common::v1::ACTOR_USER);
  EXPECT_THAT(LabelOf(user, rules).reasons(), IsEmpty());
}

}  // namespace
}  // namespace flywheel::capture
