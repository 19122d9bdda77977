#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flywheel/capture/v1/capture.pb.h"

namespace re2 {
class RE2;
}

namespace flywheel::capture {

// Replaces personal data in free text with "[REDACTED:<detector>]" before anything is stored,
// and counts each replacement. Built-in detectors: email, phone, card_number (Luhn-checked),
// api_key (known prefixes and long mixed-character tokens) and ip_address; plus the project's
// own RE2 patterns ("custom:<name>"). Immutable after construction; thread-safe.
class Redactor {
 public:
  // Builds a redactor from a project's settings (unset config = every built-in on).
  // INVALID_ARGUMENT naming "config.custom_patterns[i].pattern" when a pattern does not compile.
  static absl::StatusOr<std::unique_ptr<Redactor>> Create(const v1::RedactionConfig& config);
  ~Redactor();

  // Redacts `text` in place, adding to `counts`.
  void Redact(std::string* text, v1::RedactionCounts* counts) const;
  // Redacts every redactable field of a trace (input texts, output, string values in metadata).
  void RedactTrace(v1::Trace* trace) const;
  // Redacts a signal's comment, edit final_text, rephrase new_input_text and custom value strings.
  void RedactSignal(v1::Signal* signal) const;
  // True if a built-in detector other than api_key matches `text` entirely (used to refuse
  // e-mails, phone numbers, card numbers and IP addresses as user ids; hashes are fine).
  bool MatchesEntirely(const std::string& text) const;

  // The defaults: every built-in detector enabled, no custom pattern, version 0.
  static v1::RedactionConfig DefaultConfig();

 private:
  struct Detector {
    std::string name;
    std::unique_ptr<re2::RE2> pattern;
    bool (*accept)(const std::string& match) = nullptr;  // extra check, e.g. Luhn
  };
  struct Prefilter;  // every pattern in one RE2::Set
  Redactor();
  void RedactValue(google::protobuf::Value* value, v1::RedactionCounts* counts) const;

  std::vector<Detector> detectors_;
  // Most text contains no personal data: one pass of all patterns together tells so, instead of
  // one search per detector. Absent when the set cannot be built (every detector then searches).
  std::unique_ptr<Prefilter> prefilter_;
};

}  // namespace flywheel::capture
