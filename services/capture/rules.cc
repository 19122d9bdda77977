#include "services/capture/rules.h"

#include <re2/re2.h>

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/capture/labeling.h"
#include "services/capture/validation.h"

namespace flywheel::capture {
namespace {

absl::Status Invalid(const std::string& field, const std::string& reason) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", reason));
}

bool ValidRuleId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

absl::Status CheckRange(const common::v1::DoubleRange& range, const std::string& field, double lo,
                        double hi) {
  if (range.has_min() && (!std::isfinite(range.min()) || range.min() < lo || range.min() > hi)) {
    return Invalid(field + ".min", absl::StrCat("in [", lo, ", ", hi, "]"));
  }
  if (range.has_max() && (!std::isfinite(range.max()) || range.max() < lo || range.max() > hi)) {
    return Invalid(field + ".max", absl::StrCat("in [", lo, ", ", hi, "]"));
  }
  if (range.has_min() && range.has_max() && range.min() > range.max()) {
    return Invalid(field, "min must not exceed max");
  }
  return absl::OkStatus();
}

absl::Status CheckDuration(const google::protobuf::Duration& value, const std::string& field,
                           absl::Duration lo, absl::Duration hi, bool zero_ok) {
  const absl::Duration d = ToDuration(value);
  if (zero_ok && d == absl::ZeroDuration()) return absl::OkStatus();
  if (d < lo || d > hi) {
    return Invalid(field, absl::StrCat("between ", absl::FormatDuration(lo), " and ",
                                       absl::FormatDuration(hi)));
  }
  return absl::OkStatus();
}

bool Is(v1::SignalKind kind, std::initializer_list<v1::SignalKind> kinds) {
  for (v1::SignalKind k : kinds) {
    if (k == kind) return true;
  }
  return false;
}

absl::Status CheckMatch(const v1::LabelRuleMatch& match, const std::string& field,
                        const std::set<std::string>& categories) {
  const v1::SignalKind kind = match.signal_kind();
  if (kind == v1::SIGNAL_KIND_UNSPECIFIED || !v1::SignalKind_IsValid(kind)) {
    return Invalid(field + ".signal_kind", "required, a defined kind");
  }
  for (int actor : match.actors()) {
    if (!common::v1::Actor_IsValid(actor) || actor == common::v1::ACTOR_UNSPECIFIED) {
      return Invalid(field + ".actors", "defined actors only");
    }
  }
  using K = v1::SignalKind;
  struct Condition {
    bool set;
    const char* name;
    std::initializer_list<v1::SignalKind> kinds;
  };
  const Condition conditions[] = {
      {match.has_rating(), "rating", {K::SIGNAL_KIND_RATING}},
      {match.has_has_comment(),
       "has_comment",
       {K::SIGNAL_KIND_THUMBS_UP, K::SIGNAL_KIND_THUMBS_DOWN, K::SIGNAL_KIND_RATING}},
      {match.reason_categories_size() > 0,
       "reason_categories",
       {K::SIGNAL_KIND_THUMBS_UP, K::SIGNAL_KIND_THUMBS_DOWN, K::SIGNAL_KIND_RATING,
        K::SIGNAL_KIND_COMMENT}},
      {match.has_copied_chars(), "copied_chars", {K::SIGNAL_KIND_COPY}},
      {match.has_edit_ratio(), "edit_ratio", {K::SIGNAL_KIND_DERIVED_EDIT_DISTANCE}},
      {match.has_similarity(), "similarity", {K::SIGNAL_KIND_DERIVED_REPHRASE}},
      {match.has_attempt_number(),
       "attempt_number",
       {K::SIGNAL_KIND_REGENERATE, K::SIGNAL_KIND_DERIVED_REGENERATE_PAIR}},
      {match.has_session_turns(), "session_turns", {K::SIGNAL_KIND_DERIVED_ABANDONMENT}},
      {match.has_duration_seconds(),
       "duration_seconds",
       {K::SIGNAL_KIND_DWELL, K::SIGNAL_KIND_DERIVED_TIME_TO_NEXT_ACTION}},
      {!match.outcome_name().empty(), "outcome_name", {K::SIGNAL_KIND_OUTCOME}},
      {match.outcome_status() != v1::OUTCOME_STATUS_UNSPECIFIED,
       "outcome_status",
       {K::SIGNAL_KIND_OUTCOME}},
      {match.has_outcome_value(), "outcome_value", {K::SIGNAL_KIND_OUTCOME}},
      {!match.custom_name().empty(), "custom_name", {K::SIGNAL_KIND_CUSTOM}},
  };
  for (const Condition& condition : conditions) {
    if (condition.set && !Is(kind, condition.kinds)) {
      return Invalid(field + "." + condition.name, "does not apply to this signal_kind");
    }
  }
  const double kHuge = 1e12;
  RETURN_IF_ERROR(CheckRange(match.rating(), field + ".rating", 1, 5));
  RETURN_IF_ERROR(CheckRange(match.copied_chars(), field + ".copied_chars", 0, kHuge));
  RETURN_IF_ERROR(CheckRange(match.edit_ratio(), field + ".edit_ratio", 0, 1));
  RETURN_IF_ERROR(CheckRange(match.similarity(), field + ".similarity", 0, 1));
  RETURN_IF_ERROR(CheckRange(match.attempt_number(), field + ".attempt_number", 0, kHuge));
  RETURN_IF_ERROR(CheckRange(match.session_turns(), field + ".session_turns", 0, kHuge));
  RETURN_IF_ERROR(CheckRange(match.duration_seconds(), field + ".duration_seconds", 0, kHuge));
  RETURN_IF_ERROR(CheckRange(match.outcome_value(), field + ".outcome_value", -kHuge, kHuge));
  if (!v1::OutcomeStatus_IsValid(match.outcome_status())) {
    return Invalid(field + ".outcome_status", "unknown value");
  }
  for (int i = 0; i < match.reason_categories_size(); ++i) {
    if (categories.count(match.reason_categories(i)) == 0) {
      return Invalid(absl::StrCat(field, ".reason_categories[", i, "]"),
                     "not a reason category of the rule set");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::LabelRuleSet> MergeRuleSet(const v1::LabelRuleSet& base,
                                              const v1::LabelRuleSet& update,
                                              const google::protobuf::FieldMask& mask) {
  if (mask.paths_size() == 0) {
    return Invalid("update_mask", "required (e.g. [\"rules\"], or [\"*\"] for everything)");
  }
  v1::LabelRuleSet merged = base;
  const auto* descriptor = v1::LabelRuleSet::descriptor();
  const auto* reflection = v1::LabelRuleSet::GetReflection();
  const std::set<std::string> output_only = {"version", "base_version", "create_time"};
  for (const std::string& path : mask.paths()) {
    if (path == "*") {
      for (int i = 0; i < descriptor->field_count(); ++i) {
        const auto* field = descriptor->field(i);
        if (output_only.count(field->name()) > 0) continue;
        reflection->ClearField(&merged, field);
      }
      v1::LabelRuleSet client = update;
      client.clear_version();
      client.clear_base_version();
      client.clear_create_time();
      merged.MergeFrom(client);
      continue;
    }
    if (path.rfind("coverage.", 0) == 0) {
      const std::string sub = path.substr(9);
      const auto* coverage_field = v1::CoverageWeighting::descriptor()->FindFieldByName(sub);
      if (coverage_field == nullptr) return Invalid("update_mask", "unknown path " + path);
      const auto* coverage_reflection = v1::CoverageWeighting::GetReflection();
      coverage_reflection->ClearField(merged.mutable_coverage(), coverage_field);
      v1::CoverageWeighting one;
      const auto& source = update.coverage();
      one.CopyFrom(source);
      for (int i = 0; i < v1::CoverageWeighting::descriptor()->field_count(); ++i) {
        const auto* other = v1::CoverageWeighting::descriptor()->field(i);
        if (other != coverage_field) coverage_reflection->ClearField(&one, other);
      }
      merged.mutable_coverage()->MergeFrom(one);
      continue;
    }
    const auto* field = descriptor->FindFieldByName(path);
    if (field == nullptr || output_only.count(path) > 0) {
      return Invalid("update_mask", "unknown or output-only path " + path);
    }
    reflection->ClearField(&merged, field);
    v1::LabelRuleSet one = update;
    for (int i = 0; i < descriptor->field_count(); ++i) {
      if (descriptor->field(i) != field) reflection->ClearField(&one, descriptor->field(i));
    }
    merged.MergeFrom(one);
  }
  return merged;
}

absl::Status ValidateRuleSet(const v1::LabelRuleSet& rules, const v1::LabelRuleSet& base) {
  if (rules.rules_size() > kMaxRules) {
    return absl::ResourceExhaustedError("rule_set.rules: at most 200 rules");
  }
  if (rules.reason_categories_size() > kMaxRuleSetReasonCategories) {
    return absl::ResourceExhaustedError("rule_set.reason_categories: at most 100");
  }
  std::set<std::string> categories;
  for (int i = 0; i < rules.reason_categories_size(); ++i) {
    const auto& category = rules.reason_categories(i);
    const std::string field = absl::StrCat("rule_set.reason_categories[", i, "]");
    if (!IsValidId(category.id(), 64))
      return Invalid(field + ".id", "1..64 of A-Z a-z 0-9 . _ : -");
    if (!categories.insert(category.id()).second) return Invalid(field + ".id", "duplicate id");
    if (category.display_name().empty() || category.display_name().size() > 128) {
      return Invalid(field + ".display_name", "1..128 bytes");
    }
    if (category.description().size() > 1024) return Invalid(field + ".description", "<= 1 KiB");
  }
  for (const auto& category : base.reason_categories()) {
    if (categories.count(category.id()) == 0) {
      return Invalid("rule_set.reason_categories",
                     absl::StrCat("category \"", category.id(), "\" cannot be removed; retire it"));
    }
  }
  std::set<std::string> ids;
  for (int i = 0; i < rules.rules_size(); ++i) {
    const v1::LabelRule& rule = rules.rules(i);
    const std::string field = absl::StrCat("rule_set.rules[", i, "]");
    if (!ValidRuleId(rule.rule_id())) return Invalid(field + ".rule_id", "1..64 of a-z 0-9 . _ -");
    if (!ids.insert(rule.rule_id()).second) return Invalid(field + ".rule_id", "duplicate id");
    if (rule.description().size() > 1024) return Invalid(field + ".description", "<= 1 KiB");
    if (rule.vote() == v1::LABEL_VOTE_UNSPECIFIED || !v1::LabelVote_IsValid(rule.vote())) {
      return Invalid(field + ".vote", "FAILURE, SUCCESS or ABSTAIN");
    }
    if (!std::isfinite(rule.weight()) || rule.weight() <= 0 || rule.weight() > 100) {
      return Invalid(field + ".weight", "in (0, 100]");
    }
    if (!rule.has_match()) return Invalid(field + ".match", "required");
    if (absl::Status status = CheckMatch(rule.match(), field + ".match", categories);
        !status.ok()) {
      return status;
    }
  }
  if (!(rules.flag_threshold() > 0 && rules.flag_threshold() < 1)) {
    return Invalid("rule_set.flag_threshold", "in (0, 1)");
  }
  if (!(rules.prior_strength() > 0 && rules.prior_strength() <= 100)) {
    return Invalid("rule_set.prior_strength", "in (0, 100]");
  }
  RETURN_IF_ERROR(CheckDuration(rules.decay_half_life(), "rule_set.decay_half_life",
                                absl::Hours(24), absl::Hours(24 * 3650), true));
  if (!rules.has_coverage()) return Invalid("rule_set.coverage", "required");
  const auto& coverage = rules.coverage();
  RETURN_IF_ERROR(CheckDuration(coverage.window(), "rule_set.coverage.window", absl::Hours(24),
                                absl::Hours(24 * 365), false));
  if (!(coverage.loudness_exponent() >= 0 && coverage.loudness_exponent() <= 2)) {
    return Invalid("rule_set.coverage.loudness_exponent", "in [0, 2]");
  }
  if (coverage.invariant_rater_min_ratings() < 2 || coverage.invariant_rater_min_ratings() > 1000) {
    return Invalid("rule_set.coverage.invariant_rater_min_ratings", "in [2, 1000]");
  }
  if (!(coverage.invariant_rater_factor() > 0 && coverage.invariant_rater_factor() <= 1)) {
    return Invalid("rule_set.coverage.invariant_rater_factor", "in (0, 1]");
  }
  RETURN_IF_ERROR(CheckDuration(rules.abandonment_timeout(), "rule_set.abandonment_timeout",
                                absl::Minutes(1), absl::Hours(24), false));
  if (!(rules.rephrase_similarity_threshold() > 0 && rules.rephrase_similarity_threshold() <= 1)) {
    return Invalid("rule_set.rephrase_similarity_threshold", "in (0, 1]");
  }
  RETURN_IF_ERROR(CheckDuration(rules.rephrase_max_gap(), "rule_set.rephrase_max_gap",
                                absl::Seconds(1), absl::Hours(24), false));
  const auto& band = rules.good_enough_edit_band();
  if (!band.has_min() || !band.has_max()) {
    return Invalid("rule_set.good_enough_edit_band", "both bounds required");
  }
  RETURN_IF_ERROR(CheckRange(band, "rule_set.good_enough_edit_band", 0, 1));
  if (!(rules.session_signal_factor() > 0 && rules.session_signal_factor() <= 1)) {
    return Invalid("rule_set.session_signal_factor", "in (0, 1]");
  }
  if (rules.change_note().size() > 1024) return Invalid("rule_set.change_note", "<= 1 KiB");
  return absl::OkStatus();
}

bool SameRuleContent(const v1::LabelRuleSet& a, const v1::LabelRuleSet& b) {
  v1::LabelRuleSet x = a, y = b;
  for (v1::LabelRuleSet* set : {&x, &y}) {
    set->clear_version();
    set->clear_base_version();
    set->clear_create_time();
  }
  return x.SerializeAsString() == y.SerializeAsString();
}

absl::StatusOr<v1::RedactionConfig> MergeRedactionConfig(const v1::RedactionConfig& base,
                                                         const v1::RedactionConfig& update,
                                                         const google::protobuf::FieldMask& mask) {
  if (mask.paths_size() == 0) {
    return Invalid("update_mask", "required: builtin_detectors and/or custom_patterns");
  }
  v1::RedactionConfig merged = base;
  for (const std::string& path : mask.paths()) {
    if (path == "builtin_detectors") {
      std::set<int> seen;
      for (int i = 0; i < update.builtin_detectors_size(); ++i) {
        const auto& setting = update.builtin_detectors(i);
        const std::string field = absl::StrCat("config.builtin_detectors[", i, "].detector");
        if (setting.detector() == v1::BUILTIN_DETECTOR_UNSPECIFIED ||
            !v1::BuiltinDetector_IsValid(setting.detector())) {
          return Invalid(field, "a defined detector");
        }
        if (!seen.insert(setting.detector()).second) return Invalid(field, "listed twice");
        bool found = false;
        for (auto& existing : *merged.mutable_builtin_detectors()) {
          if (existing.detector() == setting.detector()) {
            existing.set_enabled(setting.enabled());
            found = true;
          }
        }
        if (!found) *merged.add_builtin_detectors() = setting;
      }
    } else if (path == "custom_patterns") {
      if (update.custom_patterns_size() > kMaxCustomPatterns) {
        return absl::ResourceExhaustedError("config.custom_patterns: at most 50");
      }
      std::set<std::string> names;
      for (int i = 0; i < update.custom_patterns_size(); ++i) {
        const auto& pattern = update.custom_patterns(i);
        const std::string field = absl::StrCat("config.custom_patterns[", i, "]");
        bool name_ok = !pattern.name().empty() && pattern.name().size() <= 32;
        for (char c : pattern.name()) {
          name_ok &= (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        }
        if (!name_ok) return Invalid(field + ".name", "[a-z0-9_]{1,32}");
        if (!names.insert(pattern.name()).second) return Invalid(field + ".name", "duplicate");
        if (pattern.pattern().size() > 1024) {
          return absl::ResourceExhaustedError(field + ".pattern: at most 1 KiB");
        }
        if (pattern.description().size() > 1024) return Invalid(field + ".description", "<= 1 KiB");
        RE2::Options options;
        options.set_log_errors(false);
        options.set_max_mem(1 << 20);
        RE2 compiled(pattern.pattern(), options);
        if (!compiled.ok()) return Invalid(field + ".pattern", "does not compile as RE2");
        if (RE2::FullMatch("", compiled))
          return Invalid(field + ".pattern", "matches the empty string");
      }
      *merged.mutable_custom_patterns() = update.custom_patterns();
    } else {
      return Invalid("update_mask", "unknown path " + path);
    }
  }
  return merged;
}

}  // namespace flywheel::capture
