#pragma once

#include "absl/status/statusor.h"
#include "flywheel/capture/v1/capture.pb.h"
#include "google/protobuf/field_mask.pb.h"

// Versioned project settings: label rule sets and redaction configs. Pure functions: merging an
// update into its base and validating the result, as documented on UpdateLabelRuleSet and
// UpdateRedactionConfig.
namespace flywheel::capture {

inline constexpr int kMaxRules = 200;
inline constexpr int kMaxRuleSetReasonCategories = 100;
inline constexpr int kMaxCustomPatterns = 50;

// `base` with the fields named in `mask` taken from `update` ("*" = all client fields;
// "coverage.<field>" for one coverage field). OUTPUT ONLY fields are ignored. INVALID_ARGUMENT
// ("update_mask") for an empty mask or an unknown path.
absl::StatusOr<v1::LabelRuleSet> MergeRuleSet(const v1::LabelRuleSet& base,
                                              const v1::LabelRuleSet& update,
                                              const google::protobuf::FieldMask& mask);

// Checks every documented constraint; INVALID_ARGUMENT names the field as
// "rule_set.rules[3].match.rating"; RESOURCE_EXHAUSTED for too many rules or categories.
absl::Status ValidateRuleSet(const v1::LabelRuleSet& rules, const v1::LabelRuleSet& base);

// True when two rule sets have the same client content (ignoring versions and times).
bool SameRuleContent(const v1::LabelRuleSet& a, const v1::LabelRuleSet& b);

// `base` updated with the fields in `mask` ("builtin_detectors": listed detectors only;
// "custom_patterns": replaced whole), validated (pattern names, RE2 compilation, sizes).
absl::StatusOr<v1::RedactionConfig> MergeRedactionConfig(const v1::RedactionConfig& base,
                                                         const v1::RedactionConfig& update,
                                                         const google::protobuf::FieldMask& mask);

}  // namespace flywheel::capture
