#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "flywheel/capture/v1/capture.pb.h"

// Labeling: derived signals and the trace label, as pure functions of a trace's evidence and a
// rule set version. Collection is separate from labeling: raw signals are never changed here.
namespace flywheel::capture {

// Version 1: the built-in defaults documented on LabelRuleSet (from ../shared/SIGNALS.md).
v1::LabelRuleSet DefaultRuleSet();

// A user's explicit-feedback history in the coverage window (for coverage weighting).
struct RaterStats {
  int explicit_signals = 0;  // explicit signals in the window
  int valued_signals = 0;    // thumbs and ratings in the window
  int distinct_values = 0;   // distinct thumb/rating values among them
};

// Everything the labeler knows about one trace.
struct TraceEvidence {
  v1::Trace trace;
  // Raw signals on the trace, and session-level signals of its session.
  std::vector<v1::Signal> signals;
  // The next trace of the session by start_time, if any.
  std::optional<v1::Trace> next_trace;
  // Traces in the session (1 when the trace has no session).
  int session_turns = 1;
  // Whether the session has been idle for the rule set's abandonment_timeout.
  bool session_idle = false;
  // Coverage statistics of the users who gave explicit feedback on the trace.
  std::map<std::string, RaterStats> raters;
};

// The user's text of an input: the prompt, or the last "user" message (the last message if none
// has role "user").
std::string UserText(const common::v1::LlmInput& input);

// Derived signals of a trace (at most one per derived kind), computed with `rules`' parameters.
std::vector<v1::DerivedSignal> Derive(const TraceEvidence& evidence, const v1::LabelRuleSet& rules,
                                      absl::Time now);

// The label: rule matches over raw and derived signals, combined as documented on TraceLabel.
v1::TraceLabel Score(const TraceEvidence& evidence, const std::vector<v1::DerivedSignal>& derived,
                     const v1::LabelRuleSet& rules, absl::Time now);

// Preference pairs from regenerate links (trace -> the attempt that replaced it; "" = unknown):
// every trace that was regenerated pairs with the final attempt of its chain
// (A -> B -> C yields (A, C) and (B, C)). Cycles are cut; unknown next attempts yield nothing.
std::vector<std::pair<std::string, std::string>> ResolveRegenerateChains(
    const std::map<std::string, std::string>& next);

absl::Time ToTime(const google::protobuf::Timestamp& ts);
google::protobuf::Timestamp ToProto(absl::Time time);
absl::Duration ToDuration(const google::protobuf::Duration& duration);
google::protobuf::Duration ToProto(absl::Duration duration);

// A signal's effective occur time (occur_time, else receive_time).
absl::Time OccurTime(const v1::Signal& signal);

}  // namespace flywheel::capture
