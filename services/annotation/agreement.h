#pragma once

// Inter-rater agreement of GetQueueAgreement and the agreement rule of ON_AGREEMENT promotion
// (see annotation.proto: GetQueueAgreement, FieldAgreement, PromotionMode). Pure functions: no
// gRPC, no SQL.
//
// Metric per field type (the proto's rule):
// - boolean and single-select categorical: Cohen's kappa when every counted item has exactly 2
//   values by the same 2 reviewers; else Fleiss' kappa when every counted item has the same
//   number (>= 2) of values; else Krippendorff's alpha (nominal).
// - numeric: Krippendorff's alpha (interval, squared difference).
// - multi-select categorical: Krippendorff's alpha with the Jaccard distance between value sets.
// - free text and correction: NONE (counts only).
// An item counts for a field when it has >= 2 values for that field. `value` is left unset when
// fewer than 2 items count or when it is undefined (expected agreement 1, expected disagreement
// 0); observed/expected are set whenever at least one item counts. With no counted item the
// metric of a boolean or single-select field is reported as Krippendorff's alpha (nominal).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/annotation/v1/annotation.pb.h"
#include "services/annotation/rubric.h"

namespace flywheel::annotation {

// One annotation (current revision) as agreement sees it.
struct AnnotationRow {
  // The item (trace id within the queue).
  std::string trace_id;
  std::string reviewer_id;
  FieldValues values;
};

// Agreement on one field over `rows` (values of other kinds than the field's type, e.g. from a
// removed and re-added key, are ignored; a single-select value must hold exactly one value). If
// one reviewer has several rows for an item, only the last one counts.
v1::FieldAgreement ComputeFieldAgreement(const v1::RubricField& field,
                                         const std::vector<AnnotationRow>& rows);

// ComputeFieldAgreement for each field of `field_keys` (every rubric field when empty), in rubric
// order. INVALID_ARGUMENT "field_keys[i]" for a key the rubric does not have.
absl::StatusOr<std::vector<v1::FieldAgreement>> ComputeAgreement(
    const v1::Rubric& rubric, const std::vector<std::string>& field_keys,
    const std::vector<AnnotationRow>& rows);

// ---------------------------------------------------------------------------------------------
// The metrics themselves, on plain data (exposed for tests and reuse).

// Result of one metric: value unset when undefined. For kappas `observed`/`expected` are
// agreements (P_o, P_e); for alphas they are disagreements (D_o, D_e).
struct MetricResult {
  std::optional<double> value;
  double observed = 0;
  double expected = 0;
};

// Cohen's kappa over pairs (rater A's category, rater B's category), one pair per item.
MetricResult CohenKappa(const std::vector<std::pair<std::string, std::string>>& pairs);

// Fleiss' kappa; each item is the list of categories its raters chose (every item the same
// number n >= 2 of ratings).
MetricResult FleissKappa(const std::vector<std::vector<std::string>>& items);

// Krippendorff's alpha, nominal; each item lists its values (items with < 2 values are ignored).
MetricResult KrippendorffAlphaNominal(const std::vector<std::vector<std::string>>& items);

// Krippendorff's alpha, interval (delta = (a - b)^2).
MetricResult KrippendorffAlphaInterval(const std::vector<std::vector<double>>& items);

// Krippendorff's alpha with delta = Jaccard distance 1 - |A n B| / |A u B| between value sets
// (two empty sets are at distance 0).
MetricResult KrippendorffAlphaJaccard(
    const std::vector<std::vector<std::vector<std::string>>>& items);

// ---------------------------------------------------------------------------------------------
// ON_AGREEMENT promotion.

// One annotation of a DONE item, as the promotion rule sees it.
struct AgreementCandidate {
  std::string annotation_id;
  FieldValues values;
  absl::Time submit_time;
  // Submitted with promote = false: counts towards agreement but is never chosen.
  bool opted_out = false;
};

// The annotation to promote for an item, or nullopt: at least ceil(min_share * N) of the item's
// annotations (N = reviewers_per_item; 0 = annotations.size()) must hold the same values on every
// key of `agreement_keys` (SameValue; an annotation missing a key never agrees on it); among the
// largest such agreeing group (ties: the group whose earliest member was submitted first), the
// earliest-submitted annotation (then smallest annotation_id) that is not opted out is chosen.
// nullopt when there are no annotations, no keys, no group large enough, or every member of the
// group opted out. min_share is clamped to [0.5, 1] (0 = the default 1).
std::optional<std::string> ChooseAgreedAnnotation(
    const std::vector<AgreementCandidate>& annotations,
    const std::vector<std::string>& agreement_keys, double min_share, int reviewers_per_item);

}  // namespace flywheel::annotation
