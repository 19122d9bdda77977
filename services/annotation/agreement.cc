#include "services/annotation/agreement.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace flywheel::annotation {
namespace {

// Below this, a chance agreement of 1 or an expected disagreement of 0 is taken as exact.
constexpr double kEpsilon = 1e-12;

// A field's values per item: item -> (reviewer -> value), both ordered for determinism.
template <typename T>
using ItemTable = std::map<std::string, std::map<std::string, T>>;

// Keeps only items with >= 2 values.
template <typename T>
ItemTable<T> CountedItems(ItemTable<T> table) {
  for (auto it = table.begin(); it != table.end();) {
    if (it->second.size() < 2) {
      it = table.erase(it);
    } else {
      ++it;
    }
  }
  return table;
}

template <typename T>
void FillCounts(const ItemTable<T>& counted, v1::FieldAgreement& out) {
  std::set<std::string> reviewers;
  int64_t labels = 0;
  for (const auto& [item, by_reviewer] : counted) {
    labels += static_cast<int64_t>(by_reviewer.size());
    for (const auto& [reviewer, value] : by_reviewer) reviewers.insert(reviewer);
  }
  out.set_items_with_multiple_labels(static_cast<int64_t>(counted.size()));
  out.set_label_count(labels);
  out.set_reviewer_count(static_cast<int32_t>(reviewers.size()));
}

template <typename T>
std::vector<std::vector<T>> ValuesPerItem(const ItemTable<T>& counted) {
  std::vector<std::vector<T>> items;
  items.reserve(counted.size());
  for (const auto& [item, by_reviewer] : counted) {
    std::vector<T> values;
    for (const auto& [reviewer, value] : by_reviewer) values.push_back(value);
    items.push_back(std::move(values));
  }
  return items;
}

void SetKappa(const MetricResult& result, size_t items, v1::FieldAgreement& out) {
  if (items == 0) return;
  out.set_observed_agreement(result.observed);
  out.set_expected_agreement(result.expected);
  if (items >= 2 && result.value) out.set_value(*result.value);
}

void SetAlpha(const MetricResult& result, size_t items, v1::FieldAgreement& out) {
  if (items == 0) return;
  out.set_observed_disagreement(result.observed);
  out.set_expected_disagreement(result.expected);
  if (items >= 2 && result.value) out.set_value(*result.value);
}

// Nominal categories of boolean and single-select fields: "true"/"false" or the chosen value.
std::optional<std::string> NominalCategory(const v1::RubricField& field,
                                           const v1::FieldValue& value) {
  if (KindOf(field) == FieldKind::kBoolean && KindOf(value) == FieldKind::kBoolean) {
    return value.boolean() ? "true" : "false";
  }
  if (KindOf(field) == FieldKind::kCategorical && KindOf(value) == FieldKind::kCategorical &&
      value.categorical().values_size() == 1) {
    return value.categorical().values(0);
  }
  return std::nullopt;
}

v1::FieldAgreement NominalAgreement(const v1::RubricField& field,
                                    const std::vector<AnnotationRow>& rows,
                                    v1::FieldAgreement out) {
  ItemTable<std::string> table;
  for (const AnnotationRow& row : rows) {
    auto it = row.values.find(field.key());
    if (it == row.values.end()) continue;
    if (std::optional<std::string> category = NominalCategory(field, it->second)) {
      table[row.trace_id][row.reviewer_id] = *category;
    }
  }
  const ItemTable<std::string> counted = CountedItems(std::move(table));
  FillCounts(counted, out);

  // Cohen: every counted item has exactly 2 values, by the same 2 reviewers.
  bool cohen = !counted.empty();
  std::pair<std::string, std::string> pair_of_reviewers;
  // Fleiss: every counted item has the same number of values.
  bool fleiss = !counted.empty();
  size_t per_item = counted.empty() ? 0 : counted.begin()->second.size();
  for (const auto& [item, by_reviewer] : counted) {
    if (by_reviewer.size() != per_item) fleiss = false;
    if (by_reviewer.size() != 2) {
      cohen = false;
      continue;
    }
    std::pair<std::string, std::string> reviewers{by_reviewer.begin()->first,
                                                  std::next(by_reviewer.begin())->first};
    if (item == counted.begin()->first) pair_of_reviewers = reviewers;
    if (reviewers != pair_of_reviewers) cohen = false;
  }

  if (cohen) {
    out.set_metric(v1::AGREEMENT_METRIC_COHEN_KAPPA);
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto& [item, by_reviewer] : counted) {
      // std::map orders reviewers, so .first is always the same rater.
      pairs.emplace_back(by_reviewer.begin()->second, std::next(by_reviewer.begin())->second);
    }
    SetKappa(CohenKappa(pairs), counted.size(), out);
  } else if (fleiss) {
    out.set_metric(v1::AGREEMENT_METRIC_FLEISS_KAPPA);
    SetKappa(FleissKappa(ValuesPerItem(counted)), counted.size(), out);
  } else {
    out.set_metric(v1::AGREEMENT_METRIC_KRIPPENDORFF_ALPHA_NOMINAL);
    SetAlpha(KrippendorffAlphaNominal(ValuesPerItem(counted)), counted.size(), out);
  }
  return out;
}

v1::FieldAgreement IntervalAgreement(const v1::RubricField& field,
                                     const std::vector<AnnotationRow>& rows,
                                     v1::FieldAgreement out) {
  out.set_metric(v1::AGREEMENT_METRIC_KRIPPENDORFF_ALPHA_INTERVAL);
  ItemTable<double> table;
  for (const AnnotationRow& row : rows) {
    auto it = row.values.find(field.key());
    if (it == row.values.end() || KindOf(it->second) != FieldKind::kNumeric) continue;
    if (!std::isfinite(it->second.numeric())) continue;
    table[row.trace_id][row.reviewer_id] = it->second.numeric();
  }
  const ItemTable<double> counted = CountedItems(std::move(table));
  FillCounts(counted, out);
  SetAlpha(KrippendorffAlphaInterval(ValuesPerItem(counted)), counted.size(), out);
  return out;
}

v1::FieldAgreement JaccardAgreement(const v1::RubricField& field,
                                    const std::vector<AnnotationRow>& rows,
                                    v1::FieldAgreement out) {
  out.set_metric(v1::AGREEMENT_METRIC_KRIPPENDORFF_ALPHA_JACCARD);
  ItemTable<std::vector<std::string>> table;
  for (const AnnotationRow& row : rows) {
    auto it = row.values.find(field.key());
    if (it == row.values.end() || KindOf(it->second) != FieldKind::kCategorical) continue;
    table[row.trace_id][row.reviewer_id] = {it->second.categorical().values().begin(),
                                            it->second.categorical().values().end()};
  }
  const ItemTable<std::vector<std::string>> counted = CountedItems(std::move(table));
  FillCounts(counted, out);
  SetAlpha(KrippendorffAlphaJaccard(ValuesPerItem(counted)), counted.size(), out);
  return out;
}

v1::FieldAgreement CountsOnly(const v1::RubricField& field, const std::vector<AnnotationRow>& rows,
                              v1::FieldAgreement out) {
  out.set_metric(v1::AGREEMENT_METRIC_NONE);
  ItemTable<bool> table;
  for (const AnnotationRow& row : rows) {
    auto it = row.values.find(field.key());
    if (it != row.values.end() && KindOf(it->second) == KindOf(field)) {
      table[row.trace_id][row.reviewer_id] = true;
    }
  }
  FillCounts(CountedItems(std::move(table)), out);
  return out;
}

// alpha = 1 - D_o / D_e, given the sums over within-item ordered pairs (weighted by
// 1 / (m_u - 1)) and over all ordered pairs of pairable values.
MetricResult Alpha(double within_sum, double all_pairs_sum, double n) {
  MetricResult result;
  if (n < 2) return result;
  result.observed = within_sum / n;
  result.expected = all_pairs_sum / (n * (n - 1));
  if (result.expected > kEpsilon) result.value = 1.0 - result.observed / result.expected;
  return result;
}

// Jaccard distance between two sorted, distinct id lists.
double JaccardDistance(const std::vector<int>& a, const std::vector<int>& b) {
  if (a.empty() && b.empty()) return 0;
  size_t i = 0, j = 0, common = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i] == b[j]) {
      ++common;
      ++i;
      ++j;
    } else if (a[i] < b[j]) {
      ++i;
    } else {
      ++j;
    }
  }
  const double united = static_cast<double>(a.size() + b.size() - common);
  return 1.0 - static_cast<double>(common) / united;
}

}  // namespace

MetricResult CohenKappa(const std::vector<std::pair<std::string, std::string>>& pairs) {
  MetricResult result;
  if (pairs.empty()) return result;
  const double n = static_cast<double>(pairs.size());
  std::map<std::string, double> first, second;
  double agree = 0;
  for (const auto& [a, b] : pairs) {
    if (a == b) ++agree;
    first[a] += 1;
    second[b] += 1;
  }
  result.observed = agree / n;
  for (const auto& [category, count] : first) {
    auto it = second.find(category);
    if (it != second.end()) result.expected += (count / n) * (it->second / n);
  }
  if (1.0 - result.expected > kEpsilon) {
    result.value = (result.observed - result.expected) / (1.0 - result.expected);
  }
  return result;
}

MetricResult FleissKappa(const std::vector<std::vector<std::string>>& items) {
  MetricResult result;
  if (items.empty()) return result;
  const size_t raters = items.front().size();
  if (raters < 2) return result;
  for (const auto& item : items) {
    if (item.size() != raters) return result;
  }
  const double n = static_cast<double>(raters);
  const double big_n = static_cast<double>(items.size());
  std::map<std::string, double> category_totals;
  double sum_p_i = 0;
  for (const auto& item : items) {
    std::map<std::string, double> counts;
    for (const std::string& category : item) counts[category] += 1;
    double squares = 0;
    for (const auto& [category, count] : counts) {
      squares += count * count;
      category_totals[category] += count;
    }
    sum_p_i += (squares - n) / (n * (n - 1));
  }
  result.observed = sum_p_i / big_n;
  for (const auto& [category, total] : category_totals) {
    const double p_j = total / (big_n * n);
    result.expected += p_j * p_j;
  }
  if (1.0 - result.expected > kEpsilon) {
    result.value = (result.observed - result.expected) / (1.0 - result.expected);
  }
  return result;
}

MetricResult KrippendorffAlphaNominal(const std::vector<std::vector<std::string>>& items) {
  // Nominal delta is 0 for equal values and 1 otherwise, so within an item of m values with
  // per-category counts c_k the ordered unequal pairs number m^2 - sum c_k^2, and likewise over
  // all n pairable values with totals n_k.
  double n = 0, within = 0;
  std::map<std::string, double> totals;
  for (const auto& item : items) {
    if (item.size() < 2) continue;
    const double m = static_cast<double>(item.size());
    std::map<std::string, double> counts;
    for (const std::string& value : item) counts[value] += 1;
    double squares = 0;
    for (const auto& [value, count] : counts) {
      squares += count * count;
      totals[value] += count;
    }
    within += (m * m - squares) / (m - 1);
    n += m;
  }
  double total_squares = 0;
  for (const auto& [value, count] : totals) total_squares += count * count;
  return Alpha(within, n * n - total_squares, n);
}

MetricResult KrippendorffAlphaInterval(const std::vector<std::vector<double>>& items) {
  // sum over ordered pairs i != j of (x_i - x_j)^2 = 2 m sum x^2 - 2 (sum x)^2.
  double n = 0, within = 0, sum = 0, sum_squares = 0;
  for (const auto& item : items) {
    if (item.size() < 2) continue;
    const double m = static_cast<double>(item.size());
    double s = 0, s2 = 0;
    for (double x : item) {
      s += x;
      s2 += x * x;
    }
    within += (2 * m * s2 - 2 * s * s) / (m - 1);
    n += m;
    sum += s;
    sum_squares += s2;
  }
  return Alpha(within, 2 * n * sum_squares - 2 * sum * sum, n);
}

MetricResult KrippendorffAlphaJaccard(
    const std::vector<std::vector<std::vector<std::string>>>& items) {
  // Values become sorted, distinct option ids; identical sets are grouped for D_e.
  absl::flat_hash_map<std::string, int> ids;
  auto canonical = [&ids](const std::vector<std::string>& values) {
    std::vector<int> out;
    for (const std::string& v : values) {
      auto [it, inserted] = ids.emplace(v, static_cast<int>(ids.size()));
      out.push_back(it->second);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  };
  double n = 0, within = 0;
  std::map<std::vector<int>, double> totals;
  for (const auto& item : items) {
    if (item.size() < 2) continue;
    const double m = static_cast<double>(item.size());
    std::vector<std::vector<int>> sets;
    for (const auto& values : item) sets.push_back(canonical(values));
    double sum = 0;
    for (size_t i = 0; i < sets.size(); ++i) {
      for (size_t j = i + 1; j < sets.size(); ++j) sum += 2 * JaccardDistance(sets[i], sets[j]);
    }
    within += sum / (m - 1);
    n += m;
    for (auto& set : sets) totals[std::move(set)] += 1;
  }
  double all_pairs = 0;
  for (auto a = totals.begin(); a != totals.end(); ++a) {
    for (auto b = std::next(a); b != totals.end(); ++b) {
      all_pairs += 2 * a->second * b->second * JaccardDistance(a->first, b->first);
    }
  }
  return Alpha(within, all_pairs, n);
}

v1::FieldAgreement ComputeFieldAgreement(const v1::RubricField& field,
                                         const std::vector<AnnotationRow>& rows) {
  v1::FieldAgreement out;
  out.set_field_key(field.key());
  switch (KindOf(field)) {
    case FieldKind::kBoolean:
      return NominalAgreement(field, rows, std::move(out));
    case FieldKind::kCategorical:
      return field.categorical().multi_select() ? JaccardAgreement(field, rows, std::move(out))
                                                : NominalAgreement(field, rows, std::move(out));
    case FieldKind::kNumeric:
      return IntervalAgreement(field, rows, std::move(out));
    case FieldKind::kFreeText:
    case FieldKind::kCorrection:
    case FieldKind::kUnset:
      break;
  }
  return CountsOnly(field, rows, std::move(out));
}

absl::StatusOr<std::vector<v1::FieldAgreement>> ComputeAgreement(
    const v1::Rubric& rubric, const std::vector<std::string>& field_keys,
    const std::vector<AnnotationRow>& rows) {
  std::set<std::string> wanted;
  for (size_t i = 0; i < field_keys.size(); ++i) {
    if (FindField(rubric, field_keys[i]) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("field_keys[", i, "]: \"", field_keys[i], "\" is not a rubric key"));
    }
    wanted.insert(field_keys[i]);
  }
  std::vector<v1::FieldAgreement> out;
  for (const v1::RubricField& field : rubric.fields()) {
    if (!wanted.empty() && !wanted.contains(field.key())) continue;
    out.push_back(ComputeFieldAgreement(field, rows));
  }
  return out;
}

std::optional<std::string> ChooseAgreedAnnotation(
    const std::vector<AgreementCandidate>& annotations,
    const std::vector<std::string>& agreement_keys, double min_share, int reviewers_per_item) {
  if (annotations.empty() || agreement_keys.empty()) return std::nullopt;
  if (min_share == 0) min_share = 1;
  min_share = std::clamp(min_share, 0.5, 1.0);
  const int n = reviewers_per_item > 0 ? reviewers_per_item : static_cast<int>(annotations.size());
  const size_t needed = static_cast<size_t>(std::ceil(min_share * n - 1e-9));

  // Members in submission order, so each group's members are in that order too.
  std::vector<size_t> order(annotations.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (annotations[a].submit_time != annotations[b].submit_time) {
      return annotations[a].submit_time < annotations[b].submit_time;
    }
    return annotations[a].annotation_id < annotations[b].annotation_id;
  });
  auto agree = [&](const AgreementCandidate& a, const AgreementCandidate& b) {
    for (const std::string& key : agreement_keys) {
      auto va = a.values.find(key);
      auto vb = b.values.find(key);
      if (va == a.values.end() || vb == b.values.end()) return false;
      if (!SameValue(va->second, vb->second)) return false;
    }
    return true;
  };
  // Equal values are an equivalence, so grouping against each group's first member suffices.
  std::vector<std::vector<size_t>> groups;
  for (size_t index : order) {
    const FieldValues& values = annotations[index].values;
    const bool has_all = std::all_of(agreement_keys.begin(), agreement_keys.end(),
                                     [&](const std::string& key) { return values.contains(key); });
    if (!has_all) continue;  // never agrees
    bool placed = false;
    for (auto& group : groups) {
      if (agree(annotations[group.front()], annotations[index])) {
        group.push_back(index);
        placed = true;
        break;
      }
    }
    if (!placed) groups.push_back({index});
  }
  // Largest group; groups are in order of their earliest member, so the first largest wins ties.
  const std::vector<size_t>* best = nullptr;
  for (const auto& group : groups) {
    if (best == nullptr || group.size() > best->size()) best = &group;
  }
  if (best == nullptr || best->size() < needed) return std::nullopt;
  for (size_t index : *best) {
    if (!annotations[index].opted_out) return annotations[index].annotation_id;
  }
  return std::nullopt;
}

}  // namespace flywheel::annotation
