#include "services/annotation/rubric.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/text/text.h"

namespace flywheel::annotation {
namespace {

constexpr size_t kMaxKeyBytes = 64;
constexpr size_t kMaxLabelBytes = 200;
constexpr size_t kMaxFieldHelpBytes = 4000;
constexpr size_t kMaxOptionValueBytes = 64;
constexpr size_t kMaxOptionHelpBytes = 2000;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// [a-z][a-z0-9_]{0,63}
bool IsValidKey(absl::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) return false;
  if (key[0] < 'a' || key[0] > 'z') return false;
  return std::all_of(key.begin(), key.end(), [](char c) { return IsLowerAlnum(c) || c == '_'; });
}

// 1..64 bytes of [a-z0-9_.-]
bool IsValidOptionValue(absl::string_view value) {
  if (value.empty() || value.size() > kMaxOptionValueBytes) return false;
  return std::all_of(value.begin(), value.end(),
                     [](char c) { return IsLowerAlnum(c) || c == '_' || c == '.' || c == '-'; });
}

absl::Status Invalid(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Text of max_bytes bytes, valid UTF-8; `min_bytes` 0 or 1.
absl::Status CheckText(absl::string_view path, absl::string_view text, size_t min_bytes,
                       size_t max_bytes) {
  if (text.size() < min_bytes) return Invalid(path, "required");
  if (text.size() > max_bytes) {
    return Invalid(path, absl::StrCat("longer than ", max_bytes, " bytes"));
  }
  if (!text::IsValidUtf8(text)) return Invalid(path, "not valid UTF-8");
  return absl::OkStatus();
}

absl::Status ValidateCategorical(const v1::CategoricalFieldType& type, const std::string& path) {
  const int count = type.options_size();
  if (count < kMinCategoricalOptions || count > kMaxCategoricalOptions) {
    return Invalid(absl::StrCat(path, ".options"),
                   absl::StrCat(count, " options; 2..100 required"));
  }
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < count; ++i) {
    const v1::CategoricalOption& option = type.options(i);
    const std::string option_path = absl::StrCat(path, ".options[", i, "]");
    if (!IsValidOptionValue(option.value())) {
      return Invalid(absl::StrCat(option_path, ".value"), "must be 1..64 bytes of [a-z0-9_.-]");
    }
    if (!seen.insert(option.value()).second) {
      return Invalid(absl::StrCat(option_path, ".value"),
                     absl::StrCat("duplicate value \"", option.value(), "\""));
    }
    // Empty label defaults to the value.
    RETURN_IF_ERROR(
        CheckText(absl::StrCat(option_path, ".label"), option.label(), 0, kMaxLabelBytes));
    RETURN_IF_ERROR(CheckText(absl::StrCat(option_path, ".help_text"), option.help_text(), 0,
                              kMaxOptionHelpBytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateNumeric(const v1::NumericFieldType& type, const std::string& path) {
  if (!std::isfinite(type.min()) || std::fabs(type.min()) > kMaxNumericMagnitude) {
    return Invalid(absl::StrCat(path, ".min"), "must be finite with |min| <= 1e9");
  }
  if (!std::isfinite(type.max()) || std::fabs(type.max()) > kMaxNumericMagnitude) {
    return Invalid(absl::StrCat(path, ".max"), "must be finite with |max| <= 1e9");
  }
  if (!(type.min() < type.max())) {
    return Invalid(absl::StrCat(path, ".max"), "must be greater than min");
  }
  if (!std::isfinite(type.step()) || type.step() < 0) {
    return Invalid(absl::StrCat(path, ".step"), "must be >= 0");
  }
  if (type.step() > type.max() - type.min()) {
    return Invalid(absl::StrCat(path, ".step"), "must be <= max - min");
  }
  return absl::OkStatus();
}

absl::Status ValidateMaxBytes(int32_t max_bytes, int32_t limit, const std::string& path) {
  if (max_bytes < 0 || max_bytes > limit) {
    return Invalid(absl::StrCat(path, ".max_bytes"), absl::StrCat("must be in 1..", limit));
  }
  return absl::OkStatus();
}

size_t EffectiveMaxBytes(const v1::RubricField& field) {
  switch (KindOf(field)) {
    case FieldKind::kFreeText:
      return field.free_text().max_bytes() > 0 ? field.free_text().max_bytes()
                                               : kDefaultFreeTextMaxBytes;
    case FieldKind::kCorrection:
      return field.correction().max_bytes() > 0 ? field.correction().max_bytes()
                                                : kDefaultCorrectionMaxBytes;
    default:
      return 0;
  }
}

std::string ValuePath(absl::string_view key) { return absl::StrCat("values[\"", key, "\"]"); }

// Checks one present value against its field.
absl::Status ValidateValue(const v1::RubricField& field, const v1::FieldValue& value) {
  const std::string path = ValuePath(field.key());
  const FieldKind field_kind = KindOf(field);
  const FieldKind value_kind = KindOf(value);
  if (value_kind == FieldKind::kUnset) return Invalid(path, "no value set");
  if (value_kind != field_kind) {
    return Invalid(path, absl::StrCat("expected a ", KindName(field_kind), " value, got ",
                                      KindName(value_kind)));
  }
  switch (field_kind) {
    case FieldKind::kCategorical: {
      const auto& type = field.categorical();
      const auto& chosen = value.categorical().values();
      if (!type.multi_select() && chosen.size() != 1) {
        return Invalid(path, absl::StrCat("exactly one value required, got ", chosen.size()));
      }
      if (type.multi_select() && field.required() && chosen.empty()) {
        return Invalid(path, "at least one value required");
      }
      absl::flat_hash_set<absl::string_view> seen;
      for (const std::string& v : chosen) {
        const bool allowed =
            std::any_of(type.options().begin(), type.options().end(),
                        [&](const v1::CategoricalOption& o) { return o.value() == v; });
        if (!allowed) return Invalid(path, absl::StrCat("\"", v, "\" is not an allowed value"));
        if (!seen.insert(v).second) {
          return Invalid(path, absl::StrCat("\"", v, "\" is chosen more than once"));
        }
      }
      return absl::OkStatus();
    }
    case FieldKind::kNumeric: {
      const auto& type = field.numeric();
      const double v = value.numeric();
      if (!std::isfinite(v)) return Invalid(path, "must be a finite number");
      if (v < type.min()) return Invalid(path, absl::StrCat(v, " is below min ", type.min()));
      if (v > type.max()) return Invalid(path, absl::StrCat(v, " is above max ", type.max()));
      if (type.step() > 0) {
        const double steps = std::round((v - type.min()) / type.step());
        const double nearest = type.min() + steps * type.step();
        const double tolerance = 1e-9 * std::max(1.0, std::fabs(type.step()));
        if (std::fabs(v - nearest) > tolerance) {
          return Invalid(
              path, absl::StrCat(v, " is not on the grid ", type.min(), " + n * ", type.step()));
        }
      }
      return absl::OkStatus();
    }
    case FieldKind::kBoolean:
      return absl::OkStatus();
    case FieldKind::kFreeText:
      return CheckText(path, value.free_text(), 0, EffectiveMaxBytes(field));
    case FieldKind::kCorrection:
      return CheckText(path, value.correction(), 0, EffectiveMaxBytes(field));
    case FieldKind::kUnset:
      break;
  }
  return Invalid(path, "the rubric field has no type");
}

}  // namespace

FieldKind KindOf(const v1::RubricField& field) {
  switch (field.type_case()) {
    case v1::RubricField::kCategorical:
      return FieldKind::kCategorical;
    case v1::RubricField::kNumeric:
      return FieldKind::kNumeric;
    case v1::RubricField::kBoolean:
      return FieldKind::kBoolean;
    case v1::RubricField::kFreeText:
      return FieldKind::kFreeText;
    case v1::RubricField::kCorrection:
      return FieldKind::kCorrection;
    case v1::RubricField::TYPE_NOT_SET:
      break;
  }
  return FieldKind::kUnset;
}

FieldKind KindOf(const v1::FieldValue& value) {
  switch (value.kind_case()) {
    case v1::FieldValue::kCategorical:
      return FieldKind::kCategorical;
    case v1::FieldValue::kNumeric:
      return FieldKind::kNumeric;
    case v1::FieldValue::kBoolean:
      return FieldKind::kBoolean;
    case v1::FieldValue::kFreeText:
      return FieldKind::kFreeText;
    case v1::FieldValue::kCorrection:
      return FieldKind::kCorrection;
    case v1::FieldValue::KIND_NOT_SET:
      break;
  }
  return FieldKind::kUnset;
}

absl::string_view KindName(FieldKind kind) {
  switch (kind) {
    case FieldKind::kCategorical:
      return "categorical";
    case FieldKind::kNumeric:
      return "numeric";
    case FieldKind::kBoolean:
      return "boolean";
    case FieldKind::kFreeText:
      return "free_text";
    case FieldKind::kCorrection:
      return "correction";
    case FieldKind::kUnset:
      break;
  }
  return "unset";
}

absl::Status ValidateRubric(const v1::Rubric& rubric, absl::string_view path) {
  const int count = rubric.fields_size();
  if (count < 1 || count > kMaxRubricFields) {
    return Invalid(absl::StrCat(path, ".fields"),
                   absl::StrCat(count, " fields; 1..", kMaxRubricFields, " required"));
  }
  absl::flat_hash_set<std::string> keys;
  int corrections = 0;
  for (int i = 0; i < count; ++i) {
    const v1::RubricField& field = rubric.fields(i);
    const std::string field_path = absl::StrCat(path, ".fields[", i, "]");
    if (!IsValidKey(field.key())) {
      return Invalid(absl::StrCat(field_path, ".key"), "must match [a-z][a-z0-9_]{0,63}");
    }
    if (!keys.insert(field.key()).second) {
      return Invalid(absl::StrCat(field_path, ".key"),
                     absl::StrCat("duplicate key \"", field.key(), "\""));
    }
    RETURN_IF_ERROR(
        CheckText(absl::StrCat(field_path, ".label"), field.label(), 1, kMaxLabelBytes));
    RETURN_IF_ERROR(CheckText(absl::StrCat(field_path, ".help_text"), field.help_text(), 0,
                              kMaxFieldHelpBytes));
    switch (KindOf(field)) {
      case FieldKind::kCategorical:
        RETURN_IF_ERROR(ValidateCategorical(field.categorical(), field_path + ".categorical"));
        break;
      case FieldKind::kNumeric:
        RETURN_IF_ERROR(ValidateNumeric(field.numeric(), field_path + ".numeric"));
        break;
      case FieldKind::kBoolean:
        break;
      case FieldKind::kFreeText:
        RETURN_IF_ERROR(ValidateMaxBytes(field.free_text().max_bytes(), kMaxFreeTextMaxBytes,
                                         field_path + ".free_text"));
        break;
      case FieldKind::kCorrection:
        RETURN_IF_ERROR(ValidateMaxBytes(field.correction().max_bytes(), kMaxCorrectionMaxBytes,
                                         field_path + ".correction"));
        if (++corrections > 1) {
          return Invalid(field_path + ".correction", "at most one correction field per rubric");
        }
        break;
      case FieldKind::kUnset:
        return Invalid(field_path,
                       "exactly one type (categorical, numeric, boolean, "
                       "free_text, correction) must be set");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateValues(const v1::Rubric& rubric, const FieldValues& values) {
  for (const v1::RubricField& field : rubric.fields()) {
    auto it = values.find(field.key());
    if (it == values.end()) {
      if (field.required()) return Invalid(ValuePath(field.key()), "required");
      continue;
    }
    RETURN_IF_ERROR(ValidateValue(field, it->second));
  }
  // Unknown keys, reported in key order (protobuf maps iterate in no particular order).
  std::set<std::string> unknown;
  for (const auto& [key, value] : values) {
    if (FindField(rubric, key) == nullptr) unknown.insert(key);
  }
  if (!unknown.empty()) return Invalid(ValuePath(*unknown.begin()), "not a rubric field");
  return absl::OkStatus();
}

absl::Status CheckRubricChange(const v1::Rubric& current, const v1::Rubric& next,
                               absl::string_view path) {
  for (int i = 0; i < next.fields_size(); ++i) {
    const v1::RubricField& field = next.fields(i);
    const v1::RubricField* old = FindField(current, field.key());
    if (old == nullptr) continue;
    const std::string field_path = absl::StrCat(path, ".fields[", i, "]");
    if (KindOf(*old) != KindOf(field)) {
      return absl::FailedPreconditionError(
          absl::StrCat(field_path, ": key \"", field.key(), "\" cannot change its type from ",
                       KindName(KindOf(*old)), " to ", KindName(KindOf(field)),
                       " once the queue has annotations; add a new key instead"));
    }
    if (KindOf(field) == FieldKind::kCategorical &&
        old->categorical().multi_select() != field.categorical().multi_select()) {
      return absl::FailedPreconditionError(
          absl::StrCat(field_path, ".categorical.multi_select: key \"", field.key(),
                       "\" cannot change multi_select once the queue has annotations; add a new "
                       "key instead"));
    }
  }
  return absl::OkStatus();
}

const v1::RubricField* FindField(const v1::Rubric& rubric, absl::string_view key) {
  for (const v1::RubricField& field : rubric.fields()) {
    if (field.key() == key) return &field;
  }
  return nullptr;
}

std::optional<std::string> CorrectionFieldKey(const v1::Rubric& rubric) {
  for (const v1::RubricField& field : rubric.fields()) {
    if (KindOf(field) == FieldKind::kCorrection) return field.key();
  }
  return std::nullopt;
}

std::string CorrectionValue(const v1::Rubric& rubric, const FieldValues& values) {
  std::optional<std::string> key = CorrectionFieldKey(rubric);
  if (!key) return "";
  auto it = values.find(*key);
  if (it == values.end() || KindOf(it->second) != FieldKind::kCorrection) return "";
  return it->second.correction();
}

std::vector<std::string> AgreementFieldKeys(const v1::Rubric& rubric,
                                            const std::vector<std::string>& configured) {
  if (!configured.empty()) return configured;
  std::vector<std::string> keys;
  for (const v1::RubricField& field : rubric.fields()) {
    const FieldKind kind = KindOf(field);
    if (field.required() && (kind == FieldKind::kBoolean || kind == FieldKind::kCategorical)) {
      keys.push_back(field.key());
    }
  }
  return keys;
}

absl::Status ValidateAgreementFieldKeys(const v1::Rubric& rubric,
                                        const std::vector<std::string>& keys,
                                        absl::string_view path) {
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string key_path = absl::StrCat(path, ".agreement_field_keys[", i, "]");
    const v1::RubricField* field = FindField(rubric, keys[i]);
    if (field == nullptr) {
      return Invalid(key_path, absl::StrCat("\"", keys[i], "\" is not a rubric key"));
    }
    const FieldKind kind = KindOf(*field);
    if (kind != FieldKind::kBoolean && kind != FieldKind::kCategorical &&
        kind != FieldKind::kNumeric) {
      return Invalid(key_path, absl::StrCat("\"", keys[i], "\" is a ", KindName(kind),
                                            " field; only boolean, categorical and numeric "
                                            "fields can agree"));
    }
    if (!seen.insert(keys[i]).second) {
      return Invalid(key_path, absl::StrCat("duplicate key \"", keys[i], "\""));
    }
  }
  return absl::OkStatus();
}

bool SameValue(const v1::FieldValue& a, const v1::FieldValue& b) {
  if (KindOf(a) != KindOf(b)) return false;
  switch (KindOf(a)) {
    case FieldKind::kCategorical: {
      std::set<std::string> sa(a.categorical().values().begin(), a.categorical().values().end());
      std::set<std::string> sb(b.categorical().values().begin(), b.categorical().values().end());
      return sa == sb;
    }
    case FieldKind::kNumeric:
      return a.numeric() == b.numeric();
    case FieldKind::kBoolean:
      return a.boolean() == b.boolean();
    case FieldKind::kFreeText:
      return a.free_text() == b.free_text();
    case FieldKind::kCorrection:
      return a.correction() == b.correction();
    case FieldKind::kUnset:
      return false;
  }
  return false;
}

}  // namespace flywheel::annotation
