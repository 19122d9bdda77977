#include "services/evalset/comparison.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flywheel::evalset {
namespace {

bool Passed(v1::Verdict v) { return v == v1::VERDICT_PASS; }

struct ThemeAccumulator {
  std::string name;
  int64_t compared = 0;
  int64_t baseline_passed = 0;
  int64_t candidate_passed = 0;
  int64_t regressions = 0;
  int64_t fixes = 0;
};

struct SideTheme {
  std::string name;
  int64_t results = 0;
  int64_t passed = 0;
};

double Rate(int64_t passed, int64_t total) {
  return static_cast<double>(passed) / static_cast<double>(total);
}

int PresenceOrder(v1::ThemePresence p) {
  switch (p) {
    case v1::THEME_PRESENCE_BOTH:
      return 0;
    case v1::THEME_PRESENCE_BASELINE_ONLY:
      return 1;
    default:
      return 2;
  }
}

std::string Percent(double rate) { return absl::StrCat(std::llround(rate * 100), "%"); }

std::string SignedPoints(double points) {
  const long long rounded = std::llround(points);
  return absl::StrCat(rounded > 0 ? "+" : "", rounded, " pts");
}

std::string CasesText(int64_t n) { return absl::StrCat(n, n == 1 ? " case" : " cases"); }

std::string ThemeName(const v1::Theme& theme) {
  return theme.name().empty() ? std::string("(no theme)") : theme.name();
}

}  // namespace

std::string EscapeMarkdown(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\' || c == '`' || c == '*' || c == '_' || c == '[' || c == ']' || c == '<' ||
        c == '>' || c == '|' || c == '#') {
      out += '\\';
    }
    if (c == '\n' || c == '\r') {
      out += ' ';  // a label must not break the notes' line structure
      continue;
    }
    out += c;
  }
  return out;
}

v1::CompareRunsResponse CompareResults(const CompareSide& baseline, const CompareSide& candidate,
                                       const CompareOptions& options) {
  v1::CompareRunsResponse out;
  out.set_eval_set_id(candidate.run->eval_set_id);
  out.set_same_version(baseline.run->version == candidate.run->version);
  out.set_incomplete(baseline.run->state != v1::RUN_STATE_COMPLETED ||
                     candidate.run->state != v1::RUN_STATE_COMPLETED);

  std::map<std::string, const ResultFacts*> base_by_case;
  for (const ResultFacts& r : *baseline.results) base_by_case[r.case_id] = &r;
  std::set<std::string> candidate_cases;

  std::map<std::string, ThemeAccumulator> both;  // by candidate-version theme id
  std::map<std::string, SideTheme> base_themes;  // baseline's own results
  std::map<std::string, SideTheme> cand_themes;  // candidate's own results
  int64_t compared = 0, base_passed = 0, cand_passed = 0, revised = 0;
  int64_t only_candidate = 0;
  std::vector<v1::CaseChange> regressions, fixes;

  for (const ResultFacts& r : *baseline.results) {
    SideTheme& t = base_themes[r.theme_id];
    t.name = r.theme_name;
    ++t.results;
    t.passed += Passed(r.verdict);
  }
  for (const ResultFacts& c : *candidate.results) {
    candidate_cases.insert(c.case_id);
    SideTheme& t = cand_themes[c.theme_id];
    t.name = c.theme_name;
    ++t.results;
    t.passed += Passed(c.verdict);
    auto it = base_by_case.find(c.case_id);
    if (it == base_by_case.end()) {
      ++only_candidate;
      continue;
    }
    const ResultFacts& b = *it->second;
    ++compared;
    base_passed += Passed(b.verdict);
    cand_passed += Passed(c.verdict);
    const bool was_revised = b.case_revision != c.case_revision;
    revised += was_revised;
    ThemeAccumulator& theme = both[c.theme_id];
    theme.name = c.theme_name;
    ++theme.compared;
    theme.baseline_passed += Passed(b.verdict);
    theme.candidate_passed += Passed(c.verdict);
    if (Passed(b.verdict) == Passed(c.verdict)) continue;
    v1::CaseChange change;
    change.set_case_id(c.case_id);
    change.mutable_theme()->set_theme_id(c.theme_id);
    change.mutable_theme()->set_name(c.theme_name);
    change.set_baseline_verdict(b.verdict);
    change.set_candidate_verdict(c.verdict);
    if (b.score) change.set_baseline_score(*b.score);
    if (c.score) change.set_candidate_score(*c.score);
    change.set_revised(was_revised);
    if (Passed(b.verdict)) {
      ++theme.regressions;
      regressions.push_back(std::move(change));
    } else {
      ++theme.fixes;
      fixes.push_back(std::move(change));
    }
  }
  const int64_t only_baseline = static_cast<int64_t>(baseline.results->size()) - compared;

  auto* b = out.mutable_baseline();
  b->set_run_id(baseline.run->run_id);
  b->set_candidate_label(baseline.run->candidate_label);
  b->set_version(baseline.run->version);
  b->set_state(baseline.run->state);
  b->set_only_in_this_run_count(only_baseline);
  auto* c = out.mutable_candidate();
  c->set_run_id(candidate.run->run_id);
  c->set_candidate_label(candidate.run->candidate_label);
  c->set_version(candidate.run->version);
  c->set_state(candidate.run->state);
  c->set_only_in_this_run_count(only_candidate);
  out.set_compared_case_count(compared);
  out.set_revised_case_count(revised);
  if (compared > 0) {
    b->set_pass_rate(Rate(base_passed, compared));
    c->set_pass_rate(Rate(cand_passed, compared));
    out.set_pass_rate_delta_points((c->pass_rate() - b->pass_rate()) * 100);
  }

  std::vector<v1::ThemeDelta> deltas;
  std::set<std::string> seen;
  for (const auto& [theme_id, t] : both) {
    seen.insert(theme_id);
    v1::ThemeDelta d;
    d.mutable_theme()->set_theme_id(theme_id);
    d.mutable_theme()->set_name(t.name);
    d.set_presence(v1::THEME_PRESENCE_BOTH);
    d.set_baseline_pass_rate(Rate(t.baseline_passed, t.compared));
    d.set_candidate_pass_rate(Rate(t.candidate_passed, t.compared));
    d.set_delta_points((d.candidate_pass_rate() - d.baseline_pass_rate()) * 100);
    d.set_case_count(t.compared);
    d.set_regression_count(t.regressions);
    d.set_fix_count(t.fixes);
    deltas.push_back(std::move(d));
  }
  for (const auto& [theme_id, t] : base_themes) {
    if (seen.count(theme_id)) continue;
    v1::ThemeDelta d;
    d.mutable_theme()->set_theme_id(theme_id);
    d.mutable_theme()->set_name(t.name);
    if (cand_themes.count(theme_id)) {
      // Both runs have results for the theme, but on different cases: nothing to compare.
      d.set_presence(v1::THEME_PRESENCE_BOTH);
      d.set_case_count(0);
    } else {
      d.set_presence(v1::THEME_PRESENCE_BASELINE_ONLY);
      d.set_baseline_pass_rate(Rate(t.passed, t.results));
      d.set_case_count(t.results);
    }
    seen.insert(theme_id);
    deltas.push_back(std::move(d));
  }
  for (const auto& [theme_id, t] : cand_themes) {
    if (seen.count(theme_id)) continue;
    v1::ThemeDelta d;
    d.mutable_theme()->set_theme_id(theme_id);
    d.mutable_theme()->set_name(t.name);
    d.set_presence(v1::THEME_PRESENCE_CANDIDATE_ONLY);
    d.set_candidate_pass_rate(Rate(t.passed, t.results));
    d.set_case_count(t.results);
    deltas.push_back(std::move(d));
  }
  std::sort(deltas.begin(), deltas.end(), [](const v1::ThemeDelta& x, const v1::ThemeDelta& y) {
    if (x.presence() != y.presence())
      return PresenceOrder(x.presence()) < PresenceOrder(y.presence());
    if (x.has_delta_points() != y.has_delta_points()) return x.has_delta_points();
    if (x.has_delta_points() && x.delta_points() != y.delta_points()) {
      return x.delta_points() < y.delta_points();
    }
    return x.theme().theme_id() < y.theme().theme_id();
  });
  for (v1::ThemeDelta& d : deltas) *out.add_theme_deltas() = std::move(d);

  auto by_theme_then_case = [](const v1::CaseChange& x, const v1::CaseChange& y) {
    if (x.theme().theme_id() != y.theme().theme_id()) {
      return x.theme().theme_id() < y.theme().theme_id();
    }
    return x.case_id() < y.case_id();
  };
  std::sort(regressions.begin(), regressions.end(), by_theme_then_case);
  std::sort(fixes.begin(), fixes.end(), by_theme_then_case);
  out.set_regression_count(static_cast<int64_t>(regressions.size()));
  out.set_fix_count(static_cast<int64_t>(fixes.size()));
  const size_t cap = static_cast<size_t>(options.max_listed_cases);
  for (size_t i = 0; i < regressions.size() && i < cap; ++i) {
    *out.add_regressions() = std::move(regressions[i]);
  }
  for (size_t i = 0; i < fixes.size() && i < cap; ++i) *out.add_fixes() = std::move(fixes[i]);

  const bool same_cases = only_baseline == 0 && only_candidate == 0;
  if (!out.same_version() || !same_cases) {
    std::string note = out.same_version()
                           ? absl::StrCat("Both runs are on version ", baseline.run->version)
                           : absl::StrCat("Runs are on versions ", baseline.run->version, " and ",
                                          candidate.run->version);
    absl::StrAppend(&note, ": compared on the ", compared, compared == 1 ? " case" : " cases",
                    " with results in both; ", only_baseline, " only in the baseline, ",
                    only_candidate, " only in the candidate");
    if (revised > 0) {
      absl::StrAppend(&note, "; ", revised, " compared ", revised == 1 ? "case was" : "cases were",
                      " revised between the versions");
    }
    note += ".";
    out.set_version_note(note);
  }
  return out;
}

std::string WriteReleaseNotes(const v1::CompareRunsResponse& comparison,
                              const std::string& set_display_name, const CompareOptions& options) {
  const auto& base = comparison.baseline();
  const auto& cand = comparison.candidate();
  std::string notes = absl::StrCat("**", EscapeMarkdown(cand.candidate_label()), "** vs **",
                                   EscapeMarkdown(base.candidate_label()), "** on *",
                                   EscapeMarkdown(set_display_name), "* (");
  if (base.version() == cand.version()) {
    absl::StrAppend(&notes, "v", cand.version(), ")\n");
  } else {
    absl::StrAppend(&notes, "v", base.version(), " → v", cand.version(), ")\n");
  }
  if (comparison.has_pass_rate_delta_points()) {
    absl::StrAppend(&notes, "Overall: ", Percent(base.pass_rate()), " → ",
                    Percent(cand.pass_rate()), " (",
                    SignedPoints(comparison.pass_rate_delta_points()), ", ",
                    CasesText(comparison.compared_case_count()), ")\n");
  } else {
    notes += "Overall: no case has results in both runs\n";
  }
  std::vector<const v1::ThemeDelta*> improved, regressed, added, dropped;
  int64_t others = 0;
  bool others_all_small = true;
  for (const v1::ThemeDelta& d : comparison.theme_deltas()) {
    const bool enough_cases = d.case_count() >= options.release_notes_min_cases;
    switch (d.presence()) {
      case v1::THEME_PRESENCE_BOTH:
        if (d.has_delta_points() && enough_cases &&
            std::fabs(d.delta_points()) >= options.release_notes_min_delta_points) {
          (d.delta_points() > 0 ? improved : regressed).push_back(&d);
        } else {
          ++others;
          if (d.has_delta_points() &&
              std::fabs(d.delta_points()) >= options.release_notes_min_delta_points) {
            others_all_small = false;
          }
        }
        break;
      case v1::THEME_PRESENCE_CANDIDATE_ONLY:
        if (enough_cases) {
          added.push_back(&d);
        } else {
          ++others;
          others_all_small = false;
        }
        break;
      default:
        if (enough_cases) {
          dropped.push_back(&d);
        } else {
          ++others;
          others_all_small = false;
        }
    }
  }
  auto by_abs_delta = [](const v1::ThemeDelta* x, const v1::ThemeDelta* y) {
    if (std::fabs(x->delta_points()) != std::fabs(y->delta_points())) {
      return std::fabs(x->delta_points()) > std::fabs(y->delta_points());
    }
    return x->theme().theme_id() < y->theme().theme_id();
  };
  std::sort(improved.begin(), improved.end(), by_abs_delta);
  std::sort(regressed.begin(), regressed.end(), by_abs_delta);
  for (const auto* list : {&improved, &regressed}) {
    for (const v1::ThemeDelta* d : *list) {
      absl::StrAppend(&notes, "- ", list == &improved ? "Improved" : "Regressed", " on *",
                      EscapeMarkdown(ThemeName(d->theme())),
                      "*: ", Percent(d->baseline_pass_rate()), " → ",
                      Percent(d->candidate_pass_rate()), " (", SignedPoints(d->delta_points()),
                      ", ", CasesText(d->case_count()), ")\n");
    }
  }
  for (const v1::ThemeDelta* d : added) {
    absl::StrAppend(&notes, "- New: *", EscapeMarkdown(ThemeName(d->theme())),
                    "*: ", Percent(d->candidate_pass_rate()), " (", CasesText(d->case_count()),
                    ", not in baseline)\n");
  }
  for (const v1::ThemeDelta* d : dropped) {
    absl::StrAppend(&notes, "- Dropped: *", EscapeMarkdown(ThemeName(d->theme())), "* (",
                    CasesText(d->case_count()), ", not in candidate)\n");
  }
  if (others > 0) {
    const std::string points = absl::StrFormat("%g", options.release_notes_min_delta_points);
    if (others_all_small) {
      absl::StrAppend(&notes, "- ", others, others == 1 ? " other theme" : " other themes",
                      " within ±", points, " pts\n");
    } else {
      absl::StrAppend(&notes, "- ", others, others == 1 ? " other theme" : " other themes",
                      " within ±", points, " pts or under ",
                      CasesText(options.release_notes_min_cases), "\n");
    }
  }
  if (!comparison.version_note().empty()) absl::StrAppend(&notes, comparison.version_note(), "\n");
  return notes;
}

}  // namespace flywheel::evalset
