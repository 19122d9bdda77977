#include "services/capture/labeling.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "common/text/text.h"
#include "services/capture/validation.h"

namespace flywheel::capture {
namespace {

using common::v1::DoubleRange;

void AddRule(v1::LabelRuleSet& set, const char* id, v1::SignalKind kind, v1::LabelVote vote,
             double weight, const char* description,
             void (*configure)(v1::LabelRuleMatch&) = nullptr) {
  v1::LabelRule* rule = set.add_rules();
  rule->set_rule_id(id);
  rule->set_description(description);
  rule->mutable_match()->set_signal_kind(kind);
  if (configure != nullptr) configure(*rule->mutable_match());
  rule->set_vote(vote);
  rule->set_weight(weight);
}

DoubleRange Range(std::optional<double> min, std::optional<double> max) {
  DoubleRange range;
  if (min) range.set_min(*min);
  if (max) range.set_max(*max);
  return range;
}

bool InRange(const DoubleRange& range, double value) {
  if (range.has_min() && value < range.min()) return false;
  if (range.has_max() && value > range.max()) return false;
  return true;
}

double Round4(double value) { return std::round(value * 10000.0) / 10000.0; }

bool IsPositive(const v1::Signal& signal) {
  switch (KindOf(signal)) {
    case v1::SIGNAL_KIND_THUMBS_UP:
    case v1::SIGNAL_KIND_COPY:
      return true;
    case v1::SIGNAL_KIND_RATING:
      return signal.explicit_feedback().rating() >= 4;
    case v1::SIGNAL_KIND_OUTCOME:
      return signal.outcome().status() == v1::OUTCOME_STATUS_SUCCESS;
    default:
      return false;
  }
}

const v1::Signal* Latest(const std::vector<v1::Signal>& signals, v1::SignalKind kind,
                         const std::string& trace_id) {
  const v1::Signal* latest = nullptr;
  for (const v1::Signal& signal : signals) {
    if (signal.trace_id() != trace_id || KindOf(signal) != kind) continue;
    if (latest == nullptr || OccurTime(signal) >= OccurTime(*latest)) latest = &signal;
  }
  return latest;
}

}  // namespace

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

google::protobuf::Timestamp ToProto(absl::Time time) {
  google::protobuf::Timestamp ts;
  const int64_t nanos = absl::ToUnixNanos(time);
  ts.set_seconds(nanos / 1000000000);
  ts.set_nanos(static_cast<int32_t>(nanos % 1000000000));
  if (ts.nanos() < 0) {
    ts.set_seconds(ts.seconds() - 1);
    ts.set_nanos(ts.nanos() + 1000000000);
  }
  return ts;
}

absl::Duration ToDuration(const google::protobuf::Duration& duration) {
  return absl::Seconds(duration.seconds()) + absl::Nanoseconds(duration.nanos());
}

google::protobuf::Duration ToProto(absl::Duration duration) {
  google::protobuf::Duration out;
  const int64_t nanos = absl::ToInt64Nanoseconds(duration);
  out.set_seconds(nanos / 1000000000);
  out.set_nanos(static_cast<int32_t>(nanos % 1000000000));
  return out;
}

absl::Time OccurTime(const v1::Signal& signal) {
  return signal.has_occur_time() ? ToTime(signal.occur_time()) : ToTime(signal.receive_time());
}

v1::LabelRuleSet DefaultRuleSet() {
  v1::LabelRuleSet set;
  set.set_version(1);
  set.set_base_version(0);
  set.set_flag_threshold(0.35);
  set.set_prior_strength(1);
  *set.mutable_decay_half_life() = ToProto(absl::Hours(24 * 90));
  auto* coverage = set.mutable_coverage();
  *coverage->mutable_window() = ToProto(absl::Hours(24 * 30));
  coverage->set_loudness_exponent(0.5);
  coverage->set_invariant_rater_min_ratings(10);
  coverage->set_invariant_rater_factor(0.25);
  *set.mutable_abandonment_timeout() = ToProto(absl::Minutes(30));
  set.set_rephrase_similarity_threshold(0.7);
  *set.mutable_rephrase_max_gap() = ToProto(absl::Minutes(10));
  *set.mutable_good_enough_edit_band() = Range(0.10, 0.30);
  set.set_session_signal_factor(0.5);
  for (const char* id :
       {"incorrect", "incomplete", "irrelevant", "unsafe", "formatting", "too_slow", "other"}) {
    auto* category = set.add_reason_categories();
    category->set_id(id);
    std::string display = id;
    display[0] = static_cast<char>(std::toupper(display[0]));
    for (char& c : display) c = c == '_' ? ' ' : c;
    category->set_display_name(display);
  }
  using v1::LABEL_VOTE_ABSTAIN;
  using v1::LABEL_VOTE_FAILURE;
  using v1::LABEL_VOTE_SUCCESS;
  AddRule(set, "thumbs_down_comment", v1::SIGNAL_KIND_THUMBS_DOWN, LABEL_VOTE_FAILURE, 4.0,
          "A thumbs down with an explanation: the strongest explicit failure signal.",
          [](v1::LabelRuleMatch& m) { m.set_has_comment(true); });
  AddRule(set, "thumbs_down", v1::SIGNAL_KIND_THUMBS_DOWN, LABEL_VOTE_FAILURE, 3.0,
          "A thumbs down without comment.",
          [](v1::LabelRuleMatch& m) { m.set_has_comment(false); });
  AddRule(set, "thumbs_up", v1::SIGNAL_KIND_THUMBS_UP, LABEL_VOTE_SUCCESS, 1.5,
          "A thumbs up: mostly from power users, so weaker than a thumbs down.");
  AddRule(set, "rating_low", v1::SIGNAL_KIND_RATING, LABEL_VOTE_FAILURE, 3.0, "1 or 2 stars.",
          [](v1::LabelRuleMatch& m) { *m.mutable_rating() = Range(1, 2); });
  AddRule(set, "rating_high", v1::SIGNAL_KIND_RATING, LABEL_VOTE_SUCCESS, 1.5, "4 or 5 stars.",
          [](v1::LabelRuleMatch& m) { *m.mutable_rating() = Range(4, 5); });
  AddRule(set, "regenerated", v1::SIGNAL_KIND_DERIVED_REGENERATE_PAIR, LABEL_VOTE_FAILURE, 2.5,
          "The user asked for another answer.");
  AddRule(set, "rephrased", v1::SIGNAL_KIND_DERIVED_REPHRASE, LABEL_VOTE_FAILURE, 2.0,
          "The user's next input rephrased this one: the answer missed.");
  AddRule(set, "edit_light", v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE, LABEL_VOTE_SUCCESS, 1.0,
          "Used with under 10% edits.",
          [](v1::LabelRuleMatch& m) { *m.mutable_edit_ratio() = Range(0, 0.0999); });
  AddRule(set, "edit_good_enough", v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE, LABEL_VOTE_ABSTAIN, 1.0,
          "10-30% edits: good enough, could be great (reported, not scored).",
          [](v1::LabelRuleMatch& m) { *m.mutable_edit_ratio() = Range(0.1, 0.3); });
  AddRule(set, "edit_heavy", v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE, LABEL_VOTE_FAILURE, 2.0,
          "Over 30% rewritten before use.",
          [](v1::LabelRuleMatch& m) { *m.mutable_edit_ratio() = Range(0.3001, 1); });
  AddRule(set, "copied", v1::SIGNAL_KIND_COPY, LABEL_VOTE_SUCCESS, 1.0,
          "Copied at least 20 characters.",
          [](v1::LabelRuleMatch& m) { *m.mutable_copied_chars() = Range(20, std::nullopt); });
  AddRule(set, "abandoned_one_turn", v1::SIGNAL_KIND_DERIVED_ABANDONMENT, LABEL_VOTE_FAILURE, 0.5,
          "The session ended after one turn with no positive signal (failure or done).",
          [](v1::LabelRuleMatch& m) { *m.mutable_session_turns() = Range(1, 1); });
  AddRule(set, "slow_next_action", v1::SIGNAL_KIND_DERIVED_TIME_TO_NEXT_ACTION, LABEL_VOTE_FAILURE,
          0.25, "Two minutes or more before the next action.",
          [](v1::LabelRuleMatch& m) { *m.mutable_duration_seconds() = Range(120, std::nullopt); });
  AddRule(set, "outcome_success", v1::SIGNAL_KIND_OUTCOME, LABEL_VOTE_SUCCESS, 4.0,
          "A downstream success: the most reliable signal.",
          [](v1::LabelRuleMatch& m) { m.set_outcome_status(v1::OUTCOME_STATUS_SUCCESS); });
  AddRule(set, "outcome_failure", v1::SIGNAL_KIND_OUTCOME, LABEL_VOTE_FAILURE, 4.0,
          "A downstream failure: the most reliable signal.",
          [](v1::LabelRuleMatch& m) { m.set_outcome_status(v1::OUTCOME_STATUS_FAILURE); });
  return set;
}

std::vector<std::pair<std::string, std::string>> ResolveRegenerateChains(
    const std::map<std::string, std::string>& next) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& [rejected, first_next] : next) {
    if (first_next.empty()) continue;
    std::string chosen = first_next;
    std::set<std::string> visited = {rejected};
    bool cycle = false;
    while (true) {
      auto it = next.find(chosen);
      if (it == next.end() || it->second.empty()) break;
      if (!visited.insert(chosen).second) {
        cycle = true;
        break;
      }
      chosen = it->second;
    }
    if (!cycle && chosen != rejected) pairs.emplace_back(rejected, chosen);
  }
  return pairs;
}

std::string UserText(const common::v1::LlmInput& input) {
  if (input.kind_case() == common::v1::LlmInput::kPrompt) return input.prompt();
  const auto& messages = input.messages().messages();
  for (int i = messages.size() - 1; i >= 0; --i) {
    if (messages[i].role() == "user") return messages[i].content();
  }
  return messages.empty() ? "" : messages[messages.size() - 1].content();
}

std::vector<v1::DerivedSignal> Derive(const TraceEvidence& evidence, const v1::LabelRuleSet& rules,
                                      absl::Time now) {
  std::vector<v1::DerivedSignal> derived;
  const v1::Trace& trace = evidence.trace;
  const std::string& id = trace.trace_id();
  const absl::Time end = ToTime(trace.end_time());
  auto make = [&](v1::SignalKind kind, absl::Time occur) -> v1::DerivedSignal& {
    v1::DerivedSignal& signal = derived.emplace_back();
    signal.set_trace_id(id);
    signal.set_signal_kind(kind);
    *signal.mutable_occur_time() = ToProto(occur);
    *signal.mutable_derive_time() = ToProto(now);
    signal.set_rule_set_version(rules.version());
    return signal;
  };

  // Consecutive inputs: identical (a retry) or similar with different wording (a rephrase).
  std::optional<double> similarity;
  bool identical_retry = false;
  absl::Duration gap;
  if (evidence.next_trace.has_value()) {
    gap = std::max(absl::ZeroDuration(), ToTime(evidence.next_trace->start_time()) - end);
    if (gap <= ToDuration(rules.rephrase_max_gap())) {
      const std::string a = UserText(trace.input());
      const std::string b = UserText(evidence.next_trace->input());
      if (text::Normalize(a) == text::Normalize(b)) {
        identical_retry = !a.empty();
      } else {
        similarity = Round4(text::NgramCosine(a, b));
      }
    }
  }

  const v1::Signal* rephrase_signal = Latest(evidence.signals, v1::SIGNAL_KIND_REPHRASE, id);
  if (rephrase_signal != nullptr ||
      (similarity.has_value() && *similarity >= rules.rephrase_similarity_threshold())) {
    v1::DerivedSignal& signal =
        make(v1::SIGNAL_KIND_DERIVED_REPHRASE, rephrase_signal != nullptr
                                                   ? OccurTime(*rephrase_signal)
                                                   : ToTime(evidence.next_trace->start_time()));
    auto* details = signal.mutable_rephrase();
    if (rephrase_signal != nullptr) {
      signal.add_source_event_ids(rephrase_signal->event_id());
      details->set_client_reported(true);
      details->set_next_trace_id(rephrase_signal->implicit_signal().rephrase().new_trace_id());
    }
    if (similarity.has_value() && *similarity >= rules.rephrase_similarity_threshold()) {
      details->set_next_trace_id(evidence.next_trace->trace_id());
      details->set_similarity(*similarity);
      *details->mutable_gap() = ToProto(gap);
    }
  }

  const v1::Signal* regenerate = Latest(evidence.signals, v1::SIGNAL_KIND_REGENERATE, id);
  if (regenerate != nullptr || identical_retry) {
    v1::DerivedSignal& signal = make(
        v1::SIGNAL_KIND_DERIVED_REGENERATE_PAIR,
        regenerate != nullptr ? OccurTime(*regenerate) : ToTime(evidence.next_trace->start_time()));
    auto* details = signal.mutable_regenerate_pair();
    if (regenerate != nullptr) {
      signal.add_source_event_ids(regenerate->event_id());
      details->set_source(v1::REGENERATE_SOURCE_SIGNAL);
      details->set_next_trace_id(regenerate->implicit_signal().regenerate().new_trace_id());
      details->set_attempt_number(regenerate->implicit_signal().regenerate().attempt_number());
    } else {
      details->set_source(v1::REGENERATE_SOURCE_IDENTICAL_INPUT);
      details->set_next_trace_id(evidence.next_trace->trace_id());
    }
  }

  if (const v1::Signal* edit = Latest(evidence.signals, v1::SIGNAL_KIND_EDIT, id)) {
    const auto& body = edit->implicit_signal().edit();
    v1::DerivedSignal& signal = make(v1::SIGNAL_KIND_DERIVED_EDIT_DISTANCE, OccurTime(*edit));
    signal.add_source_event_ids(edit->event_id());
    auto* details = signal.mutable_edit_distance();
    if (body.edit_case() == v1::EditSignal::kEditRatio) {
      details->set_edit_ratio(Round4(body.edit_ratio()));
      details->set_client_supplied(true);
    } else {
      details->set_edit_ratio(
          Round4(text::NormalizedTokenEditDistance(trace.output(), body.final_text())));
    }
    details->set_good_enough(InRange(rules.good_enough_edit_band(), details->edit_ratio()));
  }

  const v1::Signal* abandon = Latest(evidence.signals, v1::SIGNAL_KIND_ABANDONMENT, id);
  const bool positive =
      std::any_of(evidence.signals.begin(), evidence.signals.end(),
                  [&](const v1::Signal& s) { return s.trace_id() == id && IsPositive(s); });
  const bool last_and_idle = !evidence.next_trace.has_value() && evidence.session_idle &&
                             !trace.session_id().empty() && !positive;
  if (abandon != nullptr || last_and_idle) {
    v1::DerivedSignal& signal =
        make(v1::SIGNAL_KIND_DERIVED_ABANDONMENT, abandon != nullptr ? OccurTime(*abandon) : end);
    auto* details = signal.mutable_abandonment();
    details->set_session_turns(evidence.session_turns);
    if (abandon != nullptr) {
      signal.add_source_event_ids(abandon->event_id());
      details->set_client_reported(true);
    }
  }

  const v1::Signal* dwell = Latest(evidence.signals, v1::SIGNAL_KIND_DWELL, id);
  if (dwell != nullptr || evidence.next_trace.has_value()) {
    v1::DerivedSignal& signal = make(v1::SIGNAL_KIND_DERIVED_TIME_TO_NEXT_ACTION,
                                     dwell != nullptr ? OccurTime(*dwell) : end);
    auto* details = signal.mutable_time_to_next_action();
    if (dwell != nullptr) {
      signal.add_source_event_ids(dwell->event_id());
      details->set_client_reported(true);
      *details->mutable_duration() = dwell->implicit_signal().dwell().duration();
    } else {
      details->set_next_trace_id(evidence.next_trace->trace_id());
      *details->mutable_duration() =
          ToProto(std::max(absl::ZeroDuration(), ToTime(evidence.next_trace->start_time()) - end));
    }
  }
  return derived;
}

namespace {

// The numeric attribute a rule condition tests, per signal.
bool RawMatches(const v1::LabelRuleMatch& match, const v1::Signal& signal) {
  const v1::SignalKind kind = KindOf(signal);
  if (kind != match.signal_kind()) return false;
  if (match.actors_size() > 0) {
    common::v1::Actor actor = signal.actor();
    if (actor == common::v1::ACTOR_UNSPECIFIED) {
      actor = (kind == v1::SIGNAL_KIND_OUTCOME || kind == v1::SIGNAL_KIND_CUSTOM)
                  ? common::v1::ACTOR_SYSTEM
                  : common::v1::ACTOR_USER;
    }
    if (std::find(match.actors().begin(), match.actors().end(), actor) == match.actors().end()) {
      return false;
    }
  }
  if (signal.has_explicit_feedback()) {
    const auto& feedback = signal.explicit_feedback();
    if (match.has_rating() && (feedback.value_case() != v1::ExplicitFeedback::kRating ||
                               !InRange(match.rating(), feedback.rating()))) {
      return false;
    }
    if (match.has_has_comment() && match.has_comment() != !feedback.comment().empty()) return false;
    if (match.reason_categories_size() > 0 &&
        std::none_of(match.reason_categories().begin(), match.reason_categories().end(),
                     [&](const std::string& category) {
                       return std::find(feedback.reason_categories().begin(),
                                        feedback.reason_categories().end(),
                                        category) != feedback.reason_categories().end();
                     })) {
      return false;
    }
  }
  if (match.has_copied_chars() &&
      !InRange(match.copied_chars(), signal.implicit_signal().copy().copied_chars())) {
    return false;
  }
  if (match.has_attempt_number() &&
      !InRange(match.attempt_number(), signal.implicit_signal().regenerate().attempt_number())) {
    return false;
  }
  if (match.has_duration_seconds() &&
      !InRange(match.duration_seconds(),
               absl::ToDoubleSeconds(ToDuration(signal.implicit_signal().dwell().duration())))) {
    return false;
  }
  if (kind == v1::SIGNAL_KIND_OUTCOME) {
    const auto& outcome = signal.outcome();
    if (!match.outcome_name().empty() && match.outcome_name() != outcome.name()) return false;
    if (match.outcome_status() != v1::OUTCOME_STATUS_UNSPECIFIED &&
        match.outcome_status() != outcome.status()) {
      return false;
    }
    if (match.has_outcome_value() &&
        (!outcome.has_value() || !InRange(match.outcome_value(), outcome.value()))) {
      return false;
    }
  }
  if (kind == v1::SIGNAL_KIND_CUSTOM && !match.custom_name().empty() &&
      match.custom_name() != signal.custom().name()) {
    return false;
  }
  return true;
}

bool DerivedMatches(const v1::LabelRuleMatch& match, const v1::DerivedSignal& signal) {
  if (signal.signal_kind() != match.signal_kind()) return false;
  if (match.actors_size() > 0 && std::find(match.actors().begin(), match.actors().end(),
                                           common::v1::ACTOR_FLYWHEEL) == match.actors().end()) {
    return false;
  }
  if (match.has_edit_ratio() && !InRange(match.edit_ratio(), signal.edit_distance().edit_ratio())) {
    return false;
  }
  if (match.has_similarity() && (!signal.rephrase().has_similarity() ||
                                 !InRange(match.similarity(), signal.rephrase().similarity()))) {
    return false;
  }
  if (match.has_attempt_number() &&
      !InRange(match.attempt_number(), signal.regenerate_pair().attempt_number())) {
    return false;
  }
  if (match.has_session_turns() &&
      !InRange(match.session_turns(), signal.abandonment().session_turns())) {
    return false;
  }
  if (match.has_duration_seconds() &&
      !InRange(match.duration_seconds(),
               absl::ToDoubleSeconds(ToDuration(signal.time_to_next_action().duration())))) {
    return false;
  }
  return true;
}

// "Latest thumb or rating counts" is per user and subject (a trace, or a session).
std::string SubjectKey(const v1::Signal& signal) {
  return signal.user_id() +
         (signal.subject_case() == v1::Signal::kSessionId ? "\x1fs:" : "\x1ft:") +
         (signal.subject_case() == v1::Signal::kSessionId ? signal.session_id()
                                                          : signal.trace_id());
}

bool IsExplicit(v1::SignalKind kind) {
  return kind == v1::SIGNAL_KIND_THUMBS_UP || kind == v1::SIGNAL_KIND_THUMBS_DOWN ||
         kind == v1::SIGNAL_KIND_RATING || kind == v1::SIGNAL_KIND_COMMENT;
}

}  // namespace

v1::TraceLabel Score(const TraceEvidence& evidence, const std::vector<v1::DerivedSignal>& derived,
                     const v1::LabelRuleSet& rules, absl::Time now) {
  v1::TraceLabel label;
  label.set_rule_set_version(rules.version());
  *label.mutable_label_time() = ToProto(now);
  const absl::Duration half_life = ToDuration(rules.decay_half_life());
  auto decay = [&](absl::Time occur) {
    if (half_life <= absl::ZeroDuration()) return 1.0;
    const double age = std::max(0.0, absl::ToDoubleSeconds(now - occur));
    return std::pow(0.5, age / absl::ToDoubleSeconds(half_life));
  };

  // Only each user's latest thumb or rating on the trace counts: people change their minds.
  std::map<std::string, const v1::Signal*> latest_value;
  for (const v1::Signal& signal : evidence.signals) {
    const v1::SignalKind kind = KindOf(signal);
    if (kind != v1::SIGNAL_KIND_THUMBS_UP && kind != v1::SIGNAL_KIND_THUMBS_DOWN &&
        kind != v1::SIGNAL_KIND_RATING) {
      continue;
    }
    const v1::Signal*& slot = latest_value[SubjectKey(signal)];
    if (slot == nullptr || OccurTime(signal) >= OccurTime(*slot)) slot = &signal;
  }

  double success = 0, failure = 0;
  auto add_reason = [&](const v1::LabelRule& rule, v1::SignalKind kind, double effective,
                        const std::string& evidence_id) {
    v1::LabelReason* reason = label.add_reasons();
    reason->set_rule_id(rule.rule_id());
    reason->set_signal_kind(kind);
    reason->set_vote(rule.vote());
    reason->set_weight(rule.weight());
    reason->set_evidence_id(evidence_id);
    if (rule.vote() == v1::LABEL_VOTE_SUCCESS) {
      reason->set_contribution(effective);
      success += effective;
    } else if (rule.vote() == v1::LABEL_VOTE_FAILURE) {
      reason->set_contribution(-effective);
      failure += effective;
    }
  };

  const auto& coverage = rules.coverage();
  for (const v1::Signal& signal : evidence.signals) {
    const v1::SignalKind kind = KindOf(signal);
    if ((kind == v1::SIGNAL_KIND_THUMBS_UP || kind == v1::SIGNAL_KIND_THUMBS_DOWN ||
         kind == v1::SIGNAL_KIND_RATING) &&
        latest_value[SubjectKey(signal)] != &signal) {
      continue;
    }
    double factor = decay(OccurTime(signal));
    if (signal.subject_case() == v1::Signal::kSessionId) factor *= rules.session_signal_factor();
    const bool user_actor =
        signal.actor() == common::v1::ACTOR_USER || signal.actor() == common::v1::ACTOR_UNSPECIFIED;
    if (IsExplicit(kind) && user_actor) {
      auto it = evidence.raters.find(signal.user_id());
      if (it != evidence.raters.end()) {
        const RaterStats& stats = it->second;
        factor *= std::pow(std::max(1, stats.explicit_signals), -coverage.loudness_exponent());
        if (stats.valued_signals >= coverage.invariant_rater_min_ratings() &&
            stats.distinct_values == 1) {
          factor *= coverage.invariant_rater_factor();
        }
      }
    }
    for (const v1::LabelRule& rule : rules.rules()) {
      if (RawMatches(rule.match(), signal)) {
        add_reason(rule, kind, rule.weight() * factor, signal.event_id());
      }
    }
  }
  for (const v1::DerivedSignal& signal : derived) {
    const double factor = decay(ToTime(signal.occur_time()));
    for (const v1::LabelRule& rule : rules.rules()) {
      if (DerivedMatches(rule.match(), signal)) {
        add_reason(rule, signal.signal_kind(), rule.weight() * factor, "");
      }
    }
  }
  const double prior = rules.prior_strength();
  label.set_quality_score((prior + success) / (2 * prior + success + failure));
  label.set_flagged(failure > 0 && label.quality_score() < rules.flag_threshold());
  return label;
}

}  // namespace flywheel::capture
