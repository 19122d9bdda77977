#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "flywheel/capture/v1/capture.pb.h"

namespace flywheel::demo {

// A simulated LLM product, used by `flywheel demo` and the end-to-end test. Everything is drawn
// from one seeded generator, so a seed always yields the same traffic.
//
// The product has four feature areas (support answers, code help, research summaries, e-mail
// drafts). Every response has a hidden true quality: good, mediocre or bad; every bad response
// belongs to one of five hidden failure themes, each with its own wording:
//   hallucinated_citation  research answers citing papers that do not exist
//   refused_valid_request  a policy refusal of a harmless request
//   stale_data             answers from an outdated snapshot ("as of my last update in 2021")
//   wrong_tone             condescending or curt e-mail drafts
//   truncated_code         code answers cut off mid-function
// Users are power users (rate often), casual users (rarely rate) or silent users (never rate), and
// behave according to the hidden quality: they copy good answers, edit mediocre ones, regenerate
// or rephrase bad ones (or abandon the session), and a few click thumbs (with a comment
// sometimes). Support answers get a downstream outcome (ticket resolved or reopened) for a share
// of sessions.
struct ScenarioOptions {
  uint64_t seed = 7;
  // Prefix of every trace, session, user and event id. Two runs with the same seed and prefix
  // send identical traffic (a re-run is all duplicates); a new prefix makes new traffic.
  std::string id_prefix = "demo";
  int users = 300;
  // Share of users of each kind (the rest are silent).
  double power_share = 0.08;
  double casual_share = 0.42;
  // Probability that a power / casual user rates a response.
  double power_rating_rate = 0.35;
  double casual_rating_rate = 0.03;
  // Traffic spans [end - span, end]; end should be at least the project's abandonment timeout
  // (30 min by default) in the past so that abandonment is detectable.
  absl::Time end = absl::UnixEpoch();
  absl::Duration span = absl::Hours(72);
  // Share of first attempts that are bad (each bad one gets a theme) and mediocre.
  double bad_share = 0.22;
  double mediocre_share = 0.15;
};

enum class Quality { kGood, kMediocre, kBad };

inline constexpr const char* kThemes[] = {"hallucinated_citation", "refused_valid_request",
                                          "stale_data", "wrong_tone", "truncated_code"};

enum class UserKind { kPower, kCasual, kSilent };

struct TraceTruth {
  Quality quality = Quality::kGood;
  std::string theme;  // set iff quality is kBad
  std::string user_id;
  UserKind user_kind = UserKind::kSilent;
  bool thumbs_down = false;  // the user clicked thumbs down
  bool thumbs_up = false;
  bool any_explicit = false;  // thumbs, rating or comment
  bool any_implicit = false;  // copy, edit, regenerate, rephrase, abandonment, dwell
  bool outcome = false;
  // What a good answer would have been (a reviewer's correction stands in for it).
  std::string good_output;
};

struct Scenario {
  // In the order a backend would send them: each trace, then the signals about it (some
  // signals reference the next trace of the session, which follows).
  std::vector<capture::v1::IngestItem> items;
  std::map<std::string, TraceTruth> truth;  // by trace id
  int sessions = 0;
  std::map<UserKind, int> users_by_kind;
};

Scenario GenerateScenario(const ScenarioOptions& options);

// What a careful reviewer concludes from reading a response of the simulated product: the
// failure theme it shows, or "" when it is not a failure. Exact on this generator's responses
// (tested), so a simulated reviewer can label traces of any demo run, not only its own.
std::string ReviewOutput(const std::string& output);

const char* QualityName(Quality quality);
const char* UserKindName(UserKind kind);

}  // namespace flywheel::demo
