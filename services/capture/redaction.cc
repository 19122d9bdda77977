#include "services/capture/redaction.h"

#include <re2/re2.h>
#include <re2/set.h>

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace flywheel::capture {
namespace {

bool LuhnValid(const std::string& match) {
  int sum = 0;
  int digits = 0;
  bool double_it = false;
  for (auto it = match.rbegin(); it != match.rend(); ++it) {
    if (*it < '0' || *it > '9') continue;
    int d = *it - '0';
    if (double_it) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double_it = !double_it;
    ++digits;
  }
  return digits >= 13 && digits <= 19 && sum % 10 == 0;
}

// The card number inside a run of digit groups whose whole fails Luhn. The card pattern is
// greedy, so a card next to other digits ("4111111111111111 12/27", "ref 12 4111 1111 ...")
// matches as one longer run: try the runs of whole groups with 13-19 digits, leftmost start
// and longest first. Returns {offset, length} within `match`, or {0, 0} if there is none.
std::pair<size_t, size_t> CardWithin(const std::string& match) {
  std::vector<std::pair<size_t, size_t>> groups;  // [begin, end) of each digit group
  for (size_t i = 0; i < match.size();) {
    if (match[i] < '0' || match[i] > '9') {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < match.size() && match[j] >= '0' && match[j] <= '9') ++j;
    groups.emplace_back(i, j);
    i = j;
  }
  for (size_t first = 0; first < groups.size(); ++first) {
    for (size_t last = groups.size(); last-- > first;) {
      const std::string candidate =
          match.substr(groups[first].first, groups[last].second - groups[first].first);
      if (LuhnValid(candidate)) return {groups[first].first, candidate.size()};
    }
  }
  return {0, 0};
}

// Long tokens count as secrets only when they look random: letters and digits mixed, and high
// character entropy (so long words, paths and hex-free identifiers are left alone).
bool LooksRandom(const std::string& match) {
  if (match.rfind("sk-", 0) == 0 || match.rfind("AKIA", 0) == 0 || match.rfind("ghp_", 0) == 0 ||
      match.rfind("xox", 0) == 0 || match.rfind("fw_", 0) == 0) {
    return true;
  }
  int counts[256] = {0};
  bool has_digit = false, has_alpha = false;
  for (unsigned char c : match) {
    ++counts[c];
    has_digit |= c >= '0' && c <= '9';
    has_alpha |= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  }
  if (!has_digit || !has_alpha) return false;
  double entropy = 0;
  for (int count : counts) {
    if (count == 0) continue;
    const double p = static_cast<double>(count) / static_cast<double>(match.size());
    entropy -= p * std::log2(p);
  }
  return entropy >= 3.5;
}

struct BuiltinSpec {
  v1::BuiltinDetector id;
  const char* name;
  const char* pattern;
  bool (*accept)(const std::string&);
};

const BuiltinSpec kBuiltins[] = {
    {v1::BUILTIN_DETECTOR_EMAIL, "email",
     R"([A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})", nullptr},
    {v1::BUILTIN_DETECTOR_API_KEY, "api_key",
     R"(\b(?:sk-[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{30,}|xox[abpors]-[A-Za-z0-9\-]{10,}|fw_[ps]k_[0-9a-f]{16}_[0-9a-f]{64}|[A-Za-z0-9_\-]{32,})\b)",
     &LooksRandom},
    {v1::BUILTIN_DETECTOR_CARD_NUMBER, "card_number", R"(\b(?:\d[ \-]?){12,18}\d\b)", &LuhnValid},
    {v1::BUILTIN_DETECTOR_IP_ADDRESS, "ip_address",
     R"(\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b|\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b|\b(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?\b)",
     nullptr},
    {v1::BUILTIN_DETECTOR_PHONE, "phone",
     R"(\+[1-9]\d{7,14}\b|(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)[ .\-]?|\b\d{2,4}[ .\-])\d{3,4}[ .\-]?\d{3,4}\b)",
     nullptr},
};

}  // namespace

struct Redactor::Prefilter {
  explicit Prefilter(const RE2::Options& options) : set(options, RE2::UNANCHORED) {}
  RE2::Set set;
};

Redactor::Redactor() = default;
Redactor::~Redactor() = default;

v1::RedactionConfig Redactor::DefaultConfig() {
  v1::RedactionConfig config;
  for (const BuiltinSpec& spec : kBuiltins) {
    auto* setting = config.add_builtin_detectors();
    setting->set_detector(spec.id);
    setting->set_enabled(true);
  }
  return config;
}

absl::StatusOr<std::unique_ptr<Redactor>> Redactor::Create(const v1::RedactionConfig& config) {
  std::unique_ptr<Redactor> redactor(new Redactor());
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(1 << 20);
  for (const BuiltinSpec& spec : kBuiltins) {
    bool enabled = true;
    for (const auto& setting : config.builtin_detectors()) {
      if (setting.detector() == spec.id) enabled = setting.enabled();
    }
    if (!enabled) continue;
    auto pattern = std::make_unique<re2::RE2>(spec.pattern, options);
    if (!pattern->ok()) return absl::InternalError(absl::StrCat("built-in ", spec.name));
    redactor->detectors_.push_back(Detector{spec.name, std::move(pattern), spec.accept});
  }
  for (int i = 0; i < config.custom_patterns_size(); ++i) {
    const auto& custom = config.custom_patterns(i);
    if (!custom.enabled()) continue;
    auto pattern = std::make_unique<re2::RE2>(custom.pattern(), options);
    if (!pattern->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.custom_patterns[", i, "].pattern: does not compile as RE2"));
    }
    redactor->detectors_.push_back(
        Detector{absl::StrCat("custom:", custom.name()), std::move(pattern), nullptr});
  }
  RE2::Options set_options = options;
  set_options.set_max_mem(8 << 20);
  auto prefilter = std::make_unique<Prefilter>(set_options);
  bool complete = !redactor->detectors_.empty();
  for (const Detector& detector : redactor->detectors_) {
    complete = complete && prefilter->set.Add(detector.pattern->pattern(), nullptr) >= 0;
  }
  if (complete && prefilter->set.Compile()) redactor->prefilter_ = std::move(prefilter);
  return redactor;
}

void Redactor::Redact(std::string* text, v1::RedactionCounts* counts) const {
  if (text->empty()) return;
  if (prefilter_ != nullptr) {
    // No pattern matches anywhere: nothing to replace. Otherwise (or when the set's DFA gives
    // up) every detector searches in turn, as below.
    RE2::Set::ErrorInfo error{RE2::Set::kNoError};
    if (!prefilter_->set.Match(*text, nullptr, &error) && error.kind == RE2::Set::kNoError) return;
  }
  for (const Detector& detector : detectors_) {
    re2::StringPiece input(*text);
    re2::StringPiece match;
    size_t position = 0;
    std::string out;
    int replaced = 0;
    size_t copied = 0;  // end of the text already copied to `out`
    while (position <= text->size() &&
           detector.pattern->Match(input, position, text->size(), RE2::UNANCHORED, &match, 1)) {
      size_t start = static_cast<size_t>(match.data() - text->data());
      size_t end = start + match.size();
      if (match.empty()) {
        position = end + 1;
        continue;
      }
      position = end;
      if (detector.accept != nullptr && !detector.accept(std::string(match))) {
        if (detector.accept != &LuhnValid) continue;
        const auto [offset, length] = CardWithin(std::string(match));
        if (length == 0) continue;
        start += offset;
        end = start + length;
        position = end;
      }
      out.append(*text, copied, start - copied);
      absl::StrAppend(&out, "[REDACTED:", detector.name, "]");
      copied = end;
      ++replaced;
    }
    if (replaced == 0) continue;
    out.append(*text, copied, std::string::npos);
    *text = std::move(out);
    (*counts->mutable_by_detector())[detector.name] += replaced;
    counts->set_total(counts->total() + replaced);
  }
}

void Redactor::RedactValue(google::protobuf::Value* value, v1::RedactionCounts* counts) const {
  switch (value->kind_case()) {
    case google::protobuf::Value::kStringValue:
      Redact(value->mutable_string_value(), counts);
      break;
    case google::protobuf::Value::kStructValue:
      for (auto& [key, field] : *value->mutable_struct_value()->mutable_fields()) {
        RedactValue(&field, counts);
      }
      break;
    case google::protobuf::Value::kListValue:
      for (auto& item : *value->mutable_list_value()->mutable_values()) RedactValue(&item, counts);
      break;
    default:
      break;
  }
}

void Redactor::RedactTrace(v1::Trace* trace) const {
  v1::RedactionCounts* counts = trace->mutable_redactions();
  auto* input = trace->mutable_input();
  if (input->has_messages()) {
    for (auto& message : *input->mutable_messages()->mutable_messages()) {
      Redact(message.mutable_content(), counts);
    }
  } else if (input->kind_case() == common::v1::LlmInput::kPrompt) {
    Redact(input->mutable_prompt(), counts);
  }
  Redact(trace->mutable_output(), counts);
  if (trace->has_metadata()) {  // mutable_metadata() would add an empty one
    for (auto& [key, value] : *trace->mutable_metadata()->mutable_fields()) {
      RedactValue(&value, counts);
    }
  }
}

void Redactor::RedactSignal(v1::Signal* signal) const {
  v1::RedactionCounts* counts = signal->mutable_redactions();
  if (signal->has_explicit_feedback()) {
    Redact(signal->mutable_explicit_feedback()->mutable_comment(), counts);
  } else if (signal->has_implicit_signal()) {
    auto* implicit = signal->mutable_implicit_signal();
    if (implicit->has_edit() && implicit->edit().edit_case() == v1::EditSignal::kFinalText) {
      Redact(implicit->mutable_edit()->mutable_final_text(), counts);
    } else if (implicit->has_rephrase()) {
      Redact(implicit->mutable_rephrase()->mutable_new_input_text(), counts);
    }
  } else if (signal->has_custom() && signal->custom().has_value()) {
    for (auto& [key, value] : *signal->mutable_custom()->mutable_value()->mutable_fields()) {
      RedactValue(&value, counts);
    }
  }
}

bool Redactor::MatchesEntirely(const std::string& text) const {
  for (const Detector& detector : detectors_) {
    // Hashed ids look like API keys, and hashing is exactly what clients are told to do.
    if (detector.name.rfind("custom:", 0) == 0 || detector.name == "api_key") continue;
    if (RE2::FullMatch(text, *detector.pattern) &&
        (detector.accept == nullptr || detector.accept(text))) {
      return true;
    }
  }
  return false;
}

}  // namespace flywheel::capture
