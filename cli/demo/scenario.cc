#include "cli/demo/scenario.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/proto/proto_time.h"

namespace flywheel::demo {
namespace {

using capture::v1::IngestItem;
using capture::v1::Signal;
using capture::v1::Trace;

template <size_t N>
const char* Pick(std::mt19937_64& rng, const char* const (&list)[N]) {
  return list[std::uniform_int_distribution<size_t>(0, N - 1)(rng)];
}

bool Chance(std::mt19937_64& rng, double p) {
  return std::uniform_real_distribution<double>(0, 1)(rng) < p;
}

int Uniform(std::mt19937_64& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

// ---- Feature areas: what users ask, and what good, mediocre and failing answers look like ----

enum class Area { kSupport, kCode, kResearch, kEmail };
constexpr Area kAreas[] = {Area::kSupport, Area::kCode, Area::kResearch, Area::kEmail};
constexpr const char* kAreaNames[] = {"support_answers", "code_assistant", "research_summaries",
                                      "email_drafts"};

// Which hidden themes each area suffers from (first one more often).
const std::vector<std::string>& AreaThemes(Area area) {
  static const auto* themes = new std::map<Area, std::vector<std::string>>{
      {Area::kSupport, {"stale_data", "refused_valid_request"}},
      {Area::kCode, {"truncated_code", "refused_valid_request"}},
      {Area::kResearch, {"hallucinated_citation", "stale_data"}},
      {Area::kEmail, {"wrong_tone", "refused_valid_request"}},
  };
  return themes->at(area);
}

constexpr const char* kSupportActions[] = {"reset",    "export", "cancel", "upgrade",
                                           "transfer", "merge",  "archive"};
constexpr const char* kSupportObjects[] = {
    "account password", "invoice history", "team workspace", "billing plan",
    "API quota",        "SSO settings",    "project data",   "notification preferences"};
constexpr const char* kSettingsSections[] = {"Account", "Billing", "Workspace", "Security",
                                             "Data & privacy"};
constexpr const char* kLanguages[] = {"Python", "Go", "Rust", "TypeScript", "C++"};
constexpr const char* kCodeTasks[] = {"parses ISO 8601 dates from log lines",
                                      "deduplicates a list of orders by customer id",
                                      "retries an HTTP request with exponential backoff",
                                      "merges two sorted arrays",
                                      "validates an e-mail address",
                                      "computes a moving average over a sliding window",
                                      "reads a CSV file into a list of records"};
constexpr const char* kResearchTopics[] = {"sleep and memory consolidation",
                                           "remote work and productivity",
                                           "microplastics in rivers",
                                           "urban heat islands",
                                           "lithium battery recycling",
                                           "gut microbiome diversity",
                                           "intermittent fasting"};
constexpr const char* kRecipients[] = {"a customer", "my manager", "our vendor", "a new hire",
                                       "the finance team"};
constexpr const char* kEmailSubjects[] = {"a delayed shipment", "the quarterly review",
                                          "a contract renewal", "the onboarding schedule",
                                          "an overdue invoice"};
constexpr const char* kNames[] = {"Alex", "Sam", "Jordan", "Priya", "Chen", "Maria", "Tom"};
constexpr const char* kAuthors[] = {"Harlow", "Brennan", "Okafor", "Lindqvist", "Moreau", "Tanaka"};
constexpr const char* kFields[] = {"Applied Cognition", "Environmental Metrics",
                                   "Behavioral Economics", "Clinical Nutrition"};

struct Request {
  Area area;
  std::string input;      // the user's words
  std::string rephrased;  // the same request in other words
  std::string subject;    // what it is about (for answers)
  std::string detail;
};

Request MakeRequest(std::mt19937_64& rng, Area area) {
  Request r{area, "", "", "", ""};
  switch (area) {
    case Area::kSupport: {
      const std::string action = Pick(rng, kSupportActions);
      const std::string object = Pick(rng, kSupportObjects);
      r.subject = action + " your " + object;
      r.detail = Pick(rng, kSettingsSections);
      r.input = absl::StrCat("How do I ", action, " my ", object, "?");
      r.rephrased = absl::StrCat("how can I ", action, " my ", object, "?");
      break;
    }
    case Area::kCode: {
      const std::string language = Pick(rng, kLanguages);
      const std::string task = Pick(rng, kCodeTasks);
      r.subject = task;
      r.detail = language;
      r.input = absl::StrCat("Write a ", language, " function that ", task, ".");
      r.rephrased = absl::StrCat("Write a ", language, " function which ", task);
      break;
    }
    case Area::kResearch: {
      const std::string topic = Pick(rng, kResearchTopics);
      r.subject = topic;
      r.input = absl::StrCat("Summarize recent research findings on ", topic, ".");
      r.rephrased = absl::StrCat("Summarize the recent research findings on ", topic);
      break;
    }
    case Area::kEmail: {
      const std::string recipient = Pick(rng, kRecipients);
      const std::string subject = Pick(rng, kEmailSubjects);
      r.subject = subject;
      r.detail = Pick(rng, kNames);
      r.input = absl::StrCat("Draft an email to ", recipient, " about ", subject, ".");
      r.rephrased = absl::StrCat("Draft an e-mail to ", recipient, " about ", subject);
      break;
    }
  }
  return r;
}

std::string GoodAnswer(std::mt19937_64& rng, const Request& r) {
  switch (r.area) {
    case Area::kSupport:
      return absl::StrCat("To ", r.subject, ", open Settings, choose ", r.detail,
                          ", and select the option at the bottom of the page. The change applies "
                          "right away and you will receive a confirmation e-mail. Admins can do "
                          "this for the whole team from the same page.");
    case Area::kCode:
      return absl::StrCat(
          "Here is a ", r.detail, " function that ", r.subject,
          ":\n```\nfunction process(input) {\n  if (input.length === 0) return [];\n"
          "  const out = [];\n  for (const item of input) out.push(transform(item));\n"
          "  return out;\n}\n```\nIt handles empty input and runs in linear time. "
          "Add unit tests for the edge cases before shipping.");
    case Area::kResearch:
      return absl::StrCat("Recent studies on ", r.subject,
                          " point to three consistent findings: effects are moderate, they vary "
                          "strongly between populations, and most trials are short. Evidence is "
                          "still mixed on long-term outcomes; several larger trials are underway. ",
                          Chance(rng, 0.5) ? "Reviews from the last two years agree on this."
                                           : "Treat single studies with caution.");
    case Area::kEmail:
      return absl::StrCat("Hi ", r.detail, ",\n\nThank you for your patience regarding ", r.subject,
                          ". I wanted to share a quick update and the next steps on our side. "
                          "Please let me know if a short call this week would help.\n\nBest "
                          "regards,\nDana");
  }
  return "";
}

std::string MediocreAnswer(std::mt19937_64& rng, const Request& r) {
  // Right direction, but incomplete or generic: users fix it up before using it.
  std::string good = GoodAnswer(rng, r);
  size_t cut = good.size() * 2 / 3;
  // Code stays complete (a closed fence); only the explanation is thin.
  const size_t fence = good.rfind("```");
  if (fence != std::string::npos) cut = std::max(cut, fence + 3);
  return good.substr(0, cut) + " (More details depend on your setup.)";
}

std::string FailingAnswer(std::mt19937_64& rng, const Request& r, const std::string& theme) {
  if (theme == "hallucinated_citation") {
    return absl::StrCat("According to ", Pick(rng, kAuthors), " et al. (", Uniform(rng, 2015, 2023),
                        "), published in the Journal of ", Pick(rng, kFields), ", ", r.subject,
                        " improves outcomes by ", Uniform(rng, 12, 67), "% (doi:10.",
                        Uniform(rng, 1000, 9999), "/jx.", Uniform(rng, 100, 999),
                        "). A follow-up study by ", Pick(rng, kAuthors),
                        " and colleagues confirmed these results in a trial of ",
                        Uniform(rng, 200, 5000), " participants.");
  }
  if (theme == "refused_valid_request") {
    return absl::StrCat(
        "I'm sorry, but I can't help with that request. It may involve content that "
        "goes against my usage policy. If you believe this is a mistake, please "
        "rephrase your question about ",
        r.subject, ".");
  }
  if (theme == "stale_data") {
    return absl::StrCat("As of my last update in 2021, ", r.subject,
                        " was only possible by contacting support by phone, and the old pricing "
                        "page listed it under the legacy plan. This information may be outdated.");
  }
  if (theme == "wrong_tone") {
    return absl::StrCat(r.detail.empty() ? "Hello" : r.detail, ", obviously ", r.subject,
                        " is not our problem. You should have read the terms before writing to "
                        "us. Figure it out and stop sending reminders.");
  }
  // truncated_code
  return absl::StrCat("Here is a ", r.detail, " function that ", r.subject,
                      ":\n```\ndef helper(items):\n    result = []\n    for item in items:\n"
                      "        if item");
}

std::string ThemeComment(std::mt19937_64& rng, const std::string& theme) {
  static const auto* comments = new std::map<std::string, std::vector<std::string>>{
      {"hallucinated_citation",
       {"this paper does not exist", "fake citation, could not find the study",
        "the doi is made up"}},
      {"refused_valid_request",
       {"why refuse? this is a normal question", "refused a harmless request",
        "it won't answer a basic question"}},
      {"stale_data",
       {"outdated info, this changed last year", "the answer is old", "pricing is wrong now"}},
      {"wrong_tone", {"way too rude", "tone is condescending", "I can't send this to a customer"}},
      {"truncated_code", {"code is cut off", "the function is incomplete", "answer stops midway"}},
  };
  const auto& list = comments->at(theme);
  return list[std::uniform_int_distribution<size_t>(0, list.size() - 1)(rng)];
}

// The user's final text after editing: about a fifth of the words replaced.
std::string EditedText(std::mt19937_64& rng, const std::string& output) {
  std::vector<std::string> words = absl::StrSplit(output, ' ');
  for (std::string& word : words) {
    if (Chance(rng, 0.2)) word = Chance(rng, 0.5) ? "our" : "updated";
  }
  return absl::StrJoin(words, " ");
}

class Builder {
 public:
  Builder(const ScenarioOptions& options, Scenario* out)
      : options_(options), out_(out), rng_(options.seed) {}

  void Run() {
    const absl::Time start = options_.end - options_.span;
    for (int u = 0; u < options_.users; ++u) {
      const double draw = std::uniform_real_distribution<double>(0, 1)(rng_);
      const UserKind kind = draw < options_.power_share ? UserKind::kPower
                            : draw < options_.power_share + options_.casual_share
                                ? UserKind::kCasual
                                : UserKind::kSilent;
      ++out_->users_by_kind[kind];
      const std::string user_id = absl::StrCat(options_.id_prefix, "-user-", options_.seed, "-", u);
      const int sessions = kind == UserKind::kPower    ? Uniform(rng_, 4, 8)
                           : kind == UserKind::kCasual ? Uniform(rng_, 1, 4)
                                                       : Uniform(rng_, 1, 3);
      // Each user mostly works in one or two feature areas.
      const Area home = kAreas[Uniform(rng_, 0, 3)];
      for (int s = 0; s < sessions; ++s) {
        // Sessions end at least an hour before `end` so abandonment is detectable.
        const double at = std::uniform_real_distribution<double>(0, 0.97)(rng_);
        Session(user_id, kind, Chance(rng_, 0.75) ? home : kAreas[Uniform(rng_, 0, 3)],
                start + options_.span * at);
      }
    }
  }

 private:
  double RatingRate(UserKind kind) const {
    return kind == UserKind::kPower    ? options_.power_rating_rate
           : kind == UserKind::kCasual ? options_.casual_rating_rate
                                       : 0.0;
  }

  void Session(const std::string& user_id, UserKind kind, Area area, absl::Time t) {
    const std::string session_id =
        absl::StrCat(options_.id_prefix, "-session-", options_.seed, "-", out_->sessions++);
    const int intents = Uniform(rng_, 1, 4);
    std::string last_trace;
    Quality last_quality = Quality::kGood;
    bool abandoned = false;
    for (int i = 0; i < intents && !abandoned; ++i) {
      const Request request = MakeRequest(rng_, area);
      std::string input = request.input;
      // First attempt: the product's base quality. Retries are usually better.
      Quality quality = DrawQuality();
      std::string theme = quality == Quality::kBad ? DrawTheme(area) : "";
      for (int attempt = 1; attempt <= 3; ++attempt) {
        t += absl::Seconds(Uniform(rng_, 15, 90));
        const std::string trace_id =
            AddTrace(user_id, kind, session_id, area, request, input, quality, theme, t);
        last_trace = trace_id;
        last_quality = quality;
        TraceTruth& truth = out_->truth[trace_id];
        const absl::Time seen = t + absl::Seconds(Uniform(rng_, 3, 40));
        // Explicit feedback from the users who rate.
        if (Chance(rng_, RatingRate(kind))) {
          if (quality == Quality::kBad) {
            AddThumb(trace_id, user_id, capture::v1::THUMB_DOWN,
                     Chance(rng_, 0.45) ? ThemeComment(rng_, theme) : "", seen);
            truth.thumbs_down = true;
            truth.any_explicit = true;
          } else if (quality == Quality::kGood && Chance(rng_, 0.5)) {
            AddThumb(trace_id, user_id, capture::v1::THUMB_UP, "", seen);
            truth.thumbs_up = true;
            truth.any_explicit = true;
          } else if (quality == Quality::kMediocre && Chance(rng_, 0.4)) {
            AddThumb(trace_id, user_id, capture::v1::THUMB_DOWN, "", seen);
            truth.thumbs_down = true;
            truth.any_explicit = true;
          }
        }
        if (quality == Quality::kGood) {
          if (Chance(rng_, 0.6)) {
            AddCopy(trace_id, user_id, seen);
            truth.any_implicit = true;
          } else if (Chance(rng_, 0.4)) {
            AddDwell(trace_id, user_id, seen, Uniform(rng_, 20, 90));
            truth.any_implicit = true;
          }
          break;
        }
        if (quality == Quality::kMediocre) {
          if (Chance(rng_, 0.6)) {
            AddEdit(trace_id, user_id, EditedText(rng_, last_output_), seen);
            truth.any_implicit = true;
          } else if (Chance(rng_, 0.3)) {
            AddCopy(trace_id, user_id, seen);
            truth.any_implicit = true;
          }
          break;
        }
        // Bad: retry, rephrase, give up, or move on.
        const double action = std::uniform_real_distribution<double>(0, 1)(rng_);
        if (attempt < 3 && action < 0.35) {
          const std::string next_id = PeekTraceId();
          AddRegenerate(trace_id, user_id, attempt + 1, next_id, seen);
          truth.any_implicit = true;
        } else if (attempt < 3 && action < 0.65) {
          input = request.rephrased;
          if (Chance(rng_, 0.5)) {
            AddRephrase(trace_id, user_id, input, PeekTraceId(), seen);
            truth.any_implicit = true;
          }
        } else if (action < 0.9) {
          abandoned = true;
          if (Chance(rng_, 0.5)) {
            AddAbandon(trace_id, user_id, seen);
            truth.any_implicit = true;
          }
          break;
        } else {
          break;  // moves on to something else
        }
        // The retry: usually fixed, else the same failure again.
        quality = Chance(rng_, 0.65) ? Quality::kGood : Quality::kBad;
        if (quality == Quality::kGood) theme.clear();
      }
    }
    // Support tickets report a downstream outcome for some sessions.
    if (area == Area::kSupport && !last_trace.empty() && Chance(rng_, 0.45)) {
      const bool success = last_quality == Quality::kGood && !abandoned;
      AddOutcome(last_trace, user_id, success, t + absl::Minutes(Uniform(rng_, 5, 45)));
      out_->truth[last_trace].outcome = true;
    }
  }

  Quality DrawQuality() {
    const double draw = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (draw < options_.bad_share) return Quality::kBad;
    if (draw < options_.bad_share + options_.mediocre_share) return Quality::kMediocre;
    return Quality::kGood;
  }

  std::string DrawTheme(Area area) {
    const auto& themes = AreaThemes(area);
    return Chance(rng_, 0.7) ? themes[0] : themes[1];
  }

  std::string PeekTraceId() const {
    return absl::StrCat(options_.id_prefix, "-trace-", options_.seed, "-", traces_);
  }

  std::string AddTrace(const std::string& user_id, UserKind kind, const std::string& session_id,
                       Area area, const Request& request, const std::string& input, Quality quality,
                       const std::string& theme, absl::Time t) {
    const std::string trace_id = PeekTraceId();
    ++traces_;
    std::string output = quality == Quality::kGood       ? GoodAnswer(rng_, request)
                         : quality == Quality::kMediocre ? MediocreAnswer(rng_, request)
                                                         : FailingAnswer(rng_, request, theme);
    last_output_ = output;
    IngestItem item;
    Trace* trace = item.mutable_trace();
    trace->set_trace_id(trace_id);
    trace->set_session_id(session_id);
    trace->set_user_id(user_id);
    trace->set_feature_area(kAreaNames[static_cast<int>(area)]);
    trace->set_prompt_template_id(absl::StrCat(kAreaNames[static_cast<int>(area)], "-v3"));
    trace->set_model("acme-llm");
    trace->set_model_version("2026-10");
    trace->set_prompt_version("v3");
    trace->mutable_input()->set_prompt(input);
    trace->set_output(output);
    const int latency_ms = Uniform(rng_, 400, 3500);
    trace->mutable_latency()->set_seconds(latency_ms / 1000);
    trace->mutable_latency()->set_nanos((latency_ms % 1000) * 1000000);
    trace->set_input_tokens(static_cast<int64_t>(input.size() / 4 + 20));
    trace->set_output_tokens(static_cast<int64_t>(output.size() / 4));
    *trace->mutable_start_time() = ToProtoTime(t);
    *trace->mutable_end_time() = ToProtoTime(t + absl::Milliseconds(latency_ms));
    out_->items.push_back(std::move(item));
    TraceTruth& truth = out_->truth[trace_id];
    truth.quality = quality;
    truth.theme = theme;
    truth.user_id = user_id;
    truth.user_kind = kind;
    truth.good_output = quality == Quality::kGood ? output : GoodAnswer(rng_, request);
    return trace_id;
  }

  Signal* NewSignal(const std::string& trace_id, const std::string& user_id, absl::Time t) {
    IngestItem& item = out_->items.emplace_back();
    Signal* signal = item.mutable_signal();
    signal->set_event_id(
        absl::StrCat(options_.id_prefix, "-event-", options_.seed, "-", events_++));
    signal->set_trace_id(trace_id);
    signal->set_user_id(user_id);
    *signal->mutable_occur_time() = ToProtoTime(t);
    return signal;
  }

  void AddThumb(const std::string& trace_id, const std::string& user_id, capture::v1::Thumb thumb,
                const std::string& comment, absl::Time t) {
    auto* feedback = NewSignal(trace_id, user_id, t)->mutable_explicit_feedback();
    feedback->set_thumb(thumb);
    if (!comment.empty()) feedback->set_comment(comment);
  }
  void AddCopy(const std::string& trace_id, const std::string& user_id, absl::Time t) {
    auto* copy = NewSignal(trace_id, user_id, t)->mutable_implicit_signal()->mutable_copy();
    copy->set_copied_chars(static_cast<int32_t>(last_output_.size()));
    copy->set_scope(capture::v1::COPY_SCOPE_FULL_OUTPUT);
  }
  void AddDwell(const std::string& trace_id, const std::string& user_id, absl::Time t,
                int seconds) {
    auto* dwell = NewSignal(trace_id, user_id, t)->mutable_implicit_signal()->mutable_dwell();
    dwell->mutable_duration()->set_seconds(seconds);
    dwell->set_next_action("new_query");
  }
  void AddEdit(const std::string& trace_id, const std::string& user_id,
               const std::string& final_text, absl::Time t) {
    NewSignal(trace_id, user_id, t)
        ->mutable_implicit_signal()
        ->mutable_edit()
        ->set_final_text(final_text);
  }
  void AddRegenerate(const std::string& trace_id, const std::string& user_id, int attempt,
                     const std::string& next_id, absl::Time t) {
    auto* regen = NewSignal(trace_id, user_id, t)->mutable_implicit_signal()->mutable_regenerate();
    regen->set_attempt_number(attempt);
    regen->set_new_trace_id(next_id);
  }
  void AddRephrase(const std::string& trace_id, const std::string& user_id,
                   const std::string& new_input, const std::string& next_id, absl::Time t) {
    auto* rephrase = NewSignal(trace_id, user_id, t)->mutable_implicit_signal()->mutable_rephrase();
    rephrase->set_new_input_text(new_input);
    rephrase->set_new_trace_id(next_id);
  }
  void AddAbandon(const std::string& trace_id, const std::string& user_id, absl::Time t) {
    NewSignal(trace_id, user_id, t)->mutable_implicit_signal()->mutable_abandonment();
  }
  void AddOutcome(const std::string& trace_id, const std::string& user_id, bool success,
                  absl::Time t) {
    auto* outcome = NewSignal(trace_id, user_id, t)->mutable_outcome();
    outcome->set_name("ticket_resolved");
    outcome->set_status(success ? capture::v1::OUTCOME_STATUS_SUCCESS
                                : capture::v1::OUTCOME_STATUS_FAILURE);
  }

  const ScenarioOptions& options_;
  Scenario* out_;
  std::mt19937_64 rng_;
  int traces_ = 0;
  int events_ = 0;
  std::string last_output_;
};

}  // namespace

Scenario GenerateScenario(const ScenarioOptions& options) {
  Scenario scenario;
  Builder(options, &scenario).Run();
  return scenario;
}

std::string ReviewOutput(const std::string& output) {
  if (output.find(" et al. (") != std::string::npos) return "hallucinated_citation";
  if (output.find("I can't help with that request") != std::string::npos) {
    return "refused_valid_request";
  }
  if (output.find("As of my last update in 2021") != std::string::npos) return "stale_data";
  if (output.find("is not our problem") != std::string::npos) return "wrong_tone";
  // Code answers open a fence and close it; a truncated one never closes it.
  const size_t open = output.find("```");
  if (open != std::string::npos && output.find("```", open + 3) == std::string::npos) {
    return "truncated_code";
  }
  return "";
}

const char* QualityName(Quality quality) {
  switch (quality) {
    case Quality::kGood:
      return "good";
    case Quality::kMediocre:
      return "mediocre";
    case Quality::kBad:
      break;
  }
  return "bad";
}

const char* UserKindName(UserKind kind) {
  switch (kind) {
    case UserKind::kPower:
      return "power";
    case UserKind::kCasual:
      return "casual";
    case UserKind::kSilent:
      break;
  }
  return "silent";
}

}  // namespace flywheel::demo
