#pragma once

// Rubric rules of flywheel.annotation.v1 (see the comments on Rubric, RubricField and
// SubmitAnnotation in protos/flywheel/annotation/v1/annotation.proto): validating a rubric,
// validating an annotation's values against it, and reading values back (correction text,
// agreement fields). Pure functions: no gRPC, no SQL.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "flywheel/annotation/v1/annotation.pb.h"
#include "google/protobuf/map.h"

namespace flywheel::annotation {

namespace v1 = ::flywheel::annotation::v1;

// The values of one annotation, keyed by rubric field key (SubmitAnnotationRequest.values,
// UpdateAnnotationRequest.values, Annotation.values).
using FieldValues = ::google::protobuf::Map<std::string, v1::FieldValue>;

// Limits from the proto comments.
inline constexpr int kMaxRubricFields = 50;
inline constexpr int kMinCategoricalOptions = 2;
inline constexpr int kMaxCategoricalOptions = 100;
inline constexpr double kMaxNumericMagnitude = 1e9;
inline constexpr int kDefaultFreeTextMaxBytes = 4000;
inline constexpr int kMaxFreeTextMaxBytes = 32768;
inline constexpr int kDefaultCorrectionMaxBytes = 65536;
inline constexpr int kMaxCorrectionMaxBytes = 65536;

// Which of the five types a field has (UNSET when the oneof is empty).
enum class FieldKind { kUnset, kCategorical, kNumeric, kBoolean, kFreeText, kCorrection };
FieldKind KindOf(const v1::RubricField& field);
FieldKind KindOf(const v1::FieldValue& value);
// "categorical", "numeric", "boolean", "free_text", "correction" (the proto field names), or
// "unset".
absl::string_view KindName(FieldKind kind);

// Checks every rule of the Rubric comments: 1..50 fields; key [a-z][a-z0-9_]{0,63}, unique;
// label 1..200 bytes; help_text <= 4000 bytes; exactly one type; categorical 2..100 options with
// value 1..64 bytes of [a-z0-9_.-] unique within the field, label 0..200 bytes (empty = value),
// help_text <= 2000 bytes; numeric finite, |min|,|max| <= 1e9, min < max, 0 <= step <= max - min;
// free_text max_bytes 0 (default) or 1..32768; correction max_bytes 0 (default) or 1..65536; at
// most one correction field; all text valid UTF-8. `revision` is OUTPUT ONLY and ignored.
// INVALID_ARGUMENT whose message starts with the path of the offending field below `path`, e.g.
// "rubric.fields[2].numeric.step: ..." (pass path "queue.rubric" for CreateQueue).
absl::Status ValidateRubric(const v1::Rubric& rubric, absl::string_view path = "rubric");

// Checks `values` against `rubric` (SubmitAnnotation / UpdateAnnotation): every required field
// present; no unknown keys; the value kind matching the field type; categorical values among the
// allowed ones, exactly one unless multi_select (multi_select: distinct values, at least one);
// numbers finite, within [min, max] and on the grid min + n * step (tolerance
// 1e-9 * max(1, |step|)); free text and correction within max_bytes (defaults applied) and valid
// UTF-8. INVALID_ARGUMENT whose message starts with `values["key"]`, e.g.
// `values["tone"]: 7 is above max 5`, `values["fix"]: required`.
// Fields are checked in rubric order, then unknown keys in key order, so the first error is
// deterministic.
absl::Status ValidateValues(const v1::Rubric& rubric, const FieldValues& values);

// UpdateQueue on a queue that already has annotations: an existing key may not change its type
// or multi_select flag. FAILED_PRECONDITION naming the new field ("queue.rubric.fields[1]")
// otherwise. Added and removed keys are fine.
absl::Status CheckRubricChange(const v1::Rubric& current, const v1::Rubric& next,
                               absl::string_view path = "queue.rubric");

// The field with this key, or nullptr.
const v1::RubricField* FindField(const v1::Rubric& rubric, absl::string_view key);

// The key of the rubric's correction field (at most one), if any.
std::optional<std::string> CorrectionFieldKey(const v1::Rubric& rubric);

// The correction value of an annotation: the value of the rubric's correction field, or empty
// when the rubric has none or the annotation left it out (the eval case's expected_output).
std::string CorrectionValue(const v1::Rubric& rubric, const FieldValues& values);

// ON_AGREEMENT promotion: the keys that must agree. `configured` non-empty: those keys (in the
// given order); empty: every required boolean and categorical field, in rubric order.
std::vector<std::string> AgreementFieldKeys(const v1::Rubric& rubric,
                                            const std::vector<std::string>& configured);

// Checks PromotionPolicy.agreement_field_keys against the rubric: each key must exist and be a
// boolean, categorical or numeric field, without repeats. INVALID_ARGUMENT naming
// "<path>.agreement_field_keys[i]".
absl::Status ValidateAgreementFieldKeys(const v1::Rubric& rubric,
                                        const std::vector<std::string>& keys,
                                        absl::string_view path = "queue.promotion_policy");

// Exact equality of two values for agreement purposes: same kind and same value; categorical
// values compare as sets (order and repeats ignored); numbers compare with ==.
bool SameValue(const v1::FieldValue& a, const v1::FieldValue& b);

}  // namespace flywheel::annotation
