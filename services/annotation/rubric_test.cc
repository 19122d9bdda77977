#include "services/annotation/rubric.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/status/status_matchers.h"

namespace flywheel::annotation {
namespace {

using ::flywheel::testing::IsOk;
using ::flywheel::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

v1::RubricField Categorical(const std::string& key, std::vector<std::string> options,
                            bool multi = false, bool required = true) {
  v1::RubricField f;
  f.set_key(key);
  f.set_label(key);
  f.set_required(required);
  for (const auto& o : options) f.mutable_categorical()->add_options()->set_value(o);
  f.mutable_categorical()->set_multi_select(multi);
  return f;
}

v1::RubricField Numeric(const std::string& key, double min, double max, double step,
                        bool required = true) {
  v1::RubricField f;
  f.set_key(key);
  f.set_label(key);
  f.set_required(required);
  f.mutable_numeric()->set_min(min);
  f.mutable_numeric()->set_max(max);
  f.mutable_numeric()->set_step(step);
  return f;
}

v1::RubricField Boolean(const std::string& key, bool required = true) {
  v1::RubricField f;
  f.set_key(key);
  f.set_label(key);
  f.set_required(required);
  f.mutable_boolean();
  return f;
}

v1::RubricField FreeText(const std::string& key, int max_bytes, bool required = false) {
  v1::RubricField f;
  f.set_key(key);
  f.set_label(key);
  f.set_required(required);
  f.mutable_free_text()->set_max_bytes(max_bytes);
  return f;
}

v1::RubricField Correction(const std::string& key, int max_bytes = 0, bool required = false) {
  v1::RubricField f;
  f.set_key(key);
  f.set_label(key);
  f.set_required(required);
  f.mutable_correction()->set_max_bytes(max_bytes);
  return f;
}

// topic (single select), tone 1..5 step 1, helpful (bool), note (text <= 10 bytes), fix.
v1::Rubric SampleRubric() {
  v1::Rubric r;
  *r.add_fields() = Categorical("topic", {"billing", "tech", "other"});
  *r.add_fields() = Numeric("tone", 1, 5, 1);
  *r.add_fields() = Boolean("helpful");
  *r.add_fields() = FreeText("note", 10);
  *r.add_fields() = Correction("fix");
  return r;
}

FieldValues ValidValues() {
  FieldValues v;
  v["topic"].mutable_categorical()->add_values("tech");
  v["tone"].set_numeric(4);
  v["helpful"].set_boolean(false);
  return v;
}

// Asserts INVALID_ARGUMENT whose message begins with `path` + ":".
void ExpectInvalidAt(const absl::Status& status, const std::string& path) {
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(status.message()), StartsWith(path + ":")) << status;
}

// --- ValidateRubric -----------------------------------------------------------------------------

TEST(ValidateRubricTest, SampleRubricIsValid) {
  EXPECT_THAT(ValidateRubric(SampleRubric()), IsOk());
}

TEST(ValidateRubricTest, NoFieldsIsRejected) {
  ExpectInvalidAt(ValidateRubric(v1::Rubric()), "rubric.fields");
}

TEST(ValidateRubricTest, FiftyOneFieldsAreRejectedFiftyAccepted) {
  v1::Rubric r;
  for (int i = 0; i < 50; ++i) *r.add_fields() = Boolean("b" + std::to_string(i));
  EXPECT_THAT(ValidateRubric(r), IsOk());
  *r.add_fields() = Boolean("b50");
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields");
}

TEST(ValidateRubricTest, PathPrefixIsConfigurable) {
  v1::Rubric r = SampleRubric();
  r.mutable_fields(2)->set_key("topic");
  ExpectInvalidAt(ValidateRubric(r, "queue.rubric"), "queue.rubric.fields[2].key");
}

TEST(ValidateRubricTest, MalformedKeysAreRejected) {
  for (const std::string& key :
       std::vector<std::string>{"", "Tone", "1tone", "to-ne", "tone!", std::string(65, 'a')}) {
    v1::Rubric r = SampleRubric();
    r.mutable_fields(1)->set_key(key);
    ExpectInvalidAt(ValidateRubric(r), "rubric.fields[1].key");
  }
  v1::Rubric r = SampleRubric();
  r.mutable_fields(1)->set_key("t" + std::string(63, '_'));  // 64 bytes: the maximum
  EXPECT_THAT(ValidateRubric(r), IsOk());
}

TEST(ValidateRubricTest, DuplicateKeyIsRejectedAtTheSecondField) {
  v1::Rubric r = SampleRubric();
  r.mutable_fields(3)->set_key("tone");
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[3].key");
}

TEST(ValidateRubricTest, LabelMustBeOneTo200Bytes) {
  v1::Rubric r = SampleRubric();
  r.mutable_fields(0)->set_label("");
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].label");
  r.mutable_fields(0)->set_label(std::string(201, 'x'));
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].label");
  r.mutable_fields(0)->set_label(std::string(200, 'x'));
  EXPECT_THAT(ValidateRubric(r), IsOk());
}

TEST(ValidateRubricTest, HelpTextOver4000BytesIsRejected) {
  v1::Rubric r = SampleRubric();
  r.mutable_fields(0)->set_help_text(std::string(4001, 'x'));
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].help_text");
}

TEST(ValidateRubricTest, InvalidUtf8LabelIsRejected) {
  v1::Rubric r = SampleRubric();
  r.mutable_fields(2)->set_label("bad \xC3\x28");
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[2].label");
}

TEST(ValidateRubricTest, FieldWithoutTypeIsRejected) {
  v1::Rubric r = SampleRubric();
  r.mutable_fields(2)->clear_boolean();
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[2]");
}

TEST(ValidateRubricTest, CategoricalNeedsTwoToHundredOptions) {
  v1::Rubric r;
  *r.add_fields() = Categorical("c", {"only"});
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].categorical.options");
  std::vector<std::string> many;
  for (int i = 0; i < 101; ++i) many.push_back("v" + std::to_string(i));
  *r.mutable_fields(0) = Categorical("c", many);
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].categorical.options");
  many.pop_back();
  *r.mutable_fields(0) = Categorical("c", many);
  EXPECT_THAT(ValidateRubric(r), IsOk());
}

TEST(ValidateRubricTest, OptionValuesMustMatchCharsetAndBeUnique) {
  for (const std::string& bad :
       std::vector<std::string>{"", "Upper", "sp ace", std::string(65, 'a')}) {
    v1::Rubric r;
    *r.add_fields() = Categorical("c", {"ok", bad});
    ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].categorical.options[1].value");
  }
  v1::Rubric r;
  *r.add_fields() = Categorical("c", {"a.b-c_1", "x", "a.b-c_1"});
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].categorical.options[2].value");
}

TEST(ValidateRubricTest, OptionLabelAndHelpLimits) {
  v1::Rubric r;
  *r.add_fields() = Categorical("c", {"a", "b"});
  r.mutable_fields(0)->mutable_categorical()->mutable_options(1)->set_label(std::string(201, 'x'));
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].categorical.options[1].label");
  r.mutable_fields(0)->mutable_categorical()->mutable_options(1)->set_label("");
  r.mutable_fields(0)->mutable_categorical()->mutable_options(0)->set_help_text(
      std::string(2001, 'x'));
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].categorical.options[0].help_text");
}

TEST(ValidateRubricTest, NumericBoundsAndStep) {
  struct Case {
    double min, max, step;
    std::string path;  // empty = valid
  };
  const double nan = std::nan("");
  for (const Case& c : std::vector<Case>{
           {1, 5, 1, ""},
           {-1e9, 1e9, 0, ""},
           {0, 1, 1, ""},  // step == max - min
           {-1e9 - 1, 0, 0, "rubric.fields[0].numeric.min"},
           {0, 1e9 + 1, 0, "rubric.fields[0].numeric.max"},
           {nan, 1, 0, "rubric.fields[0].numeric.min"},
           {5, 5, 0, "rubric.fields[0].numeric.max"},  // min < max
           {5, 1, 0, "rubric.fields[0].numeric.max"},
           {1, 5, -1, "rubric.fields[0].numeric.step"},
           {1, 5, 4.5, "rubric.fields[0].numeric.step"},  // > max - min
       }) {
    v1::Rubric r;
    *r.add_fields() = Numeric("n", c.min, c.max, c.step);
    if (c.path.empty()) {
      EXPECT_THAT(ValidateRubric(r), IsOk()) << c.min << " " << c.max << " " << c.step;
    } else {
      ExpectInvalidAt(ValidateRubric(r), c.path);
    }
  }
}

TEST(ValidateRubricTest, TextMaxBytesLimits) {
  v1::Rubric r;
  *r.add_fields() = FreeText("t", 32769);
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].free_text.max_bytes");
  *r.mutable_fields(0) = FreeText("t", -1);
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].free_text.max_bytes");
  *r.mutable_fields(0) = FreeText("t", 32768);
  EXPECT_THAT(ValidateRubric(r), IsOk());
  *r.mutable_fields(0) = Correction("c", 65537);
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[0].correction.max_bytes");
  *r.mutable_fields(0) = Correction("c", 65536);
  EXPECT_THAT(ValidateRubric(r), IsOk());
}

TEST(ValidateRubricTest, SecondCorrectionFieldIsRejected) {
  v1::Rubric r = SampleRubric();
  *r.add_fields() = Correction("fix2");
  ExpectInvalidAt(ValidateRubric(r), "rubric.fields[5].correction");
}

// --- ValidateValues -----------------------------------------------------------------------------

TEST(ValidateValuesTest, ValidValuesPass) {
  EXPECT_THAT(ValidateValues(SampleRubric(), ValidValues()), IsOk());
}

TEST(ValidateValuesTest, MissingRequiredFieldIsNamed) {
  FieldValues v = ValidValues();
  v.erase("tone");
  ExpectInvalidAt(ValidateValues(SampleRubric(), v), "values[\"tone\"]");
}

TEST(ValidateValuesTest, OptionalFieldsMayBeLeftOut) {
  FieldValues v = ValidValues();
  v.erase("note");
  v.erase("fix");
  EXPECT_THAT(ValidateValues(SampleRubric(), v), IsOk());
}

TEST(ValidateValuesTest, UnknownKeyIsRejected) {
  FieldValues v = ValidValues();
  v["zeta"].set_boolean(true);
  v["mood"].set_boolean(true);
  // The first unknown key in key order.
  ExpectInvalidAt(ValidateValues(SampleRubric(), v), "values[\"mood\"]");
}

TEST(ValidateValuesTest, KindMismatchIsRejected) {
  FieldValues v = ValidValues();
  v["tone"].set_free_text("4");
  ExpectInvalidAt(ValidateValues(SampleRubric(), v), "values[\"tone\"]");
  v = ValidValues();
  v["helpful"].Clear();  // present without a value
  ExpectInvalidAt(ValidateValues(SampleRubric(), v), "values[\"helpful\"]");
}

TEST(ValidateValuesTest, CategoricalValueMustBeAllowed) {
  FieldValues v = ValidValues();
  v["topic"].mutable_categorical()->set_values(0, "x");
  absl::Status status = ValidateValues(SampleRubric(), v);
  ExpectInvalidAt(status, "values[\"topic\"]");
  EXPECT_THAT(std::string(status.message()), HasSubstr("not an allowed value"));
}

TEST(ValidateValuesTest, SingleSelectNeedsExactlyOne) {
  FieldValues v = ValidValues();
  v["topic"].mutable_categorical()->add_values("billing");
  ExpectInvalidAt(ValidateValues(SampleRubric(), v), "values[\"topic\"]");
  v["topic"].mutable_categorical()->clear_values();
  ExpectInvalidAt(ValidateValues(SampleRubric(), v), "values[\"topic\"]");
}

TEST(ValidateValuesTest, MultiSelectRules) {
  v1::Rubric r;
  *r.add_fields() = Categorical("tags", {"a", "b", "c"}, /*multi=*/true, /*required=*/true);
  *r.add_fields() = Categorical("extra", {"a", "b"}, /*multi=*/true, /*required=*/false);
  FieldValues v;
  v["tags"].mutable_categorical()->add_values("a");
  v["tags"].mutable_categorical()->add_values("c");
  v["extra"].mutable_categorical();  // optional multi-select may be empty
  EXPECT_THAT(ValidateValues(r, v), IsOk());
  v["tags"].mutable_categorical()->add_values("a");  // repeated
  ExpectInvalidAt(ValidateValues(r, v), "values[\"tags\"]");
  v["tags"].mutable_categorical()->clear_values();  // required: at least one
  ExpectInvalidAt(ValidateValues(r, v), "values[\"tags\"]");
}

TEST(ValidateValuesTest, NumericRangeIsEnforced) {
  FieldValues v = ValidValues();
  v["tone"].set_numeric(7);
  absl::Status status = ValidateValues(SampleRubric(), v);
  ExpectInvalidAt(status, "values[\"tone\"]");
  EXPECT_THAT(std::string(status.message()), HasSubstr("above max 5"));
  v["tone"].set_numeric(0);
  ExpectInvalidAt(ValidateValues(SampleRubric(), v), "values[\"tone\"]");
  v["tone"].set_numeric(std::nan(""));
  ExpectInvalidAt(ValidateValues(SampleRubric(), v), "values[\"tone\"]");
  v["tone"].set_numeric(5);  // bounds are inclusive
  EXPECT_THAT(ValidateValues(SampleRubric(), v), IsOk());
}

TEST(ValidateValuesTest, NumericStepGridWithTolerance) {
  v1::Rubric r;
  *r.add_fields() = Numeric("x", 0.1, 1.1, 0.1);
  FieldValues v;
  // 0.1 + 2 * 0.1 in floating point is 0.30000000000000004: within the tolerance.
  v["x"].set_numeric(0.1 + 2 * 0.1);
  EXPECT_THAT(ValidateValues(r, v), IsOk());
  v["x"].set_numeric(0.3 + 1e-8);  // above 1e-9 * max(1, 0.1)
  ExpectInvalidAt(ValidateValues(r, v), "values[\"x\"]");
  v["x"].set_numeric(0.35);
  ExpectInvalidAt(ValidateValues(r, v), "values[\"x\"]");
  // step 0: any value in range.
  *r.mutable_fields(0) = Numeric("x", 0, 1, 0);
  v["x"].set_numeric(0.123456789);
  EXPECT_THAT(ValidateValues(r, v), IsOk());
}

TEST(ValidateValuesTest, TextLimitsAndUtf8) {
  FieldValues v = ValidValues();
  v["note"].set_free_text("0123456789");  // 10 bytes: the limit
  EXPECT_THAT(ValidateValues(SampleRubric(), v), IsOk());
  v["note"].set_free_text("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9");  // 6 chars, 12 bytes
  ExpectInvalidAt(ValidateValues(SampleRubric(), v), "values[\"note\"]");
  v["note"].set_free_text("ok \xFF");
  ExpectInvalidAt(ValidateValues(SampleRubric(), v), "values[\"note\"]");
}

TEST(ValidateValuesTest, DefaultMaxBytesApply) {
  v1::Rubric r;
  *r.add_fields() = FreeText("t", 0);    // default 4000
  *r.add_fields() = Correction("c", 0);  // default 65536
  FieldValues v;
  v["t"].set_free_text(std::string(4000, 'x'));
  v["c"].set_correction(std::string(65536, 'x'));
  EXPECT_THAT(ValidateValues(r, v), IsOk());
  v["t"].set_free_text(std::string(4001, 'x'));
  ExpectInvalidAt(ValidateValues(r, v), "values[\"t\"]");
  v["t"].set_free_text("");
  v["c"].set_correction(std::string(65537, 'x'));
  ExpectInvalidAt(ValidateValues(r, v), "values[\"c\"]");
}

// --- Rubric changes and helpers ----------------------------------------------------------------

TEST(CheckRubricChangeTest, TypeChangeOfExistingKeyIsFailedPrecondition) {
  v1::Rubric next = SampleRubric();
  *next.mutable_fields(1) = Boolean("tone");
  absl::Status status = CheckRubricChange(SampleRubric(), next);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(status.message()), StartsWith("queue.rubric.fields[1]"));
}

TEST(CheckRubricChangeTest, MultiSelectFlipIsFailedPrecondition) {
  v1::Rubric next = SampleRubric();
  next.mutable_fields(0)->mutable_categorical()->set_multi_select(true);
  EXPECT_THAT(CheckRubricChange(SampleRubric(), next),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(CheckRubricChangeTest, NewKeysRemovedKeysAndNewOptionsAreFine) {
  v1::Rubric next = SampleRubric();
  next.mutable_fields()->RemoveLast();
  *next.add_fields() = Boolean("new_flag");
  next.mutable_fields(0)->mutable_categorical()->add_options()->set_value("sales");
  *next.mutable_fields(1) = Numeric("tone", 0, 10, 0.5);
  EXPECT_THAT(CheckRubricChange(SampleRubric(), next), IsOk());
}

TEST(RubricHelpersTest, CorrectionValueReadsTheCorrectionField) {
  FieldValues v = ValidValues();
  EXPECT_EQ(CorrectionValue(SampleRubric(), v), "");
  v["fix"].set_correction("The refund takes 5 days.");
  EXPECT_EQ(CorrectionFieldKey(SampleRubric()), "fix");
  EXPECT_EQ(CorrectionValue(SampleRubric(), v), "The refund takes 5 days.");
  v1::Rubric without;
  *without.add_fields() = Boolean("ok");
  EXPECT_EQ(CorrectionFieldKey(without), std::nullopt);
  EXPECT_EQ(CorrectionValue(without, v), "");
}

TEST(RubricHelpersTest, DefaultAgreementKeysAreRequiredBooleanAndCategorical) {
  v1::Rubric r = SampleRubric();
  *r.add_fields() = Boolean("optional_flag", /*required=*/false);
  EXPECT_THAT(AgreementFieldKeys(r, {}), ElementsAre("topic", "helpful"));
  EXPECT_THAT(AgreementFieldKeys(r, {"tone"}), ElementsAre("tone"));
}

TEST(RubricHelpersTest, AgreementKeysMustBeComparableFields) {
  EXPECT_THAT(ValidateAgreementFieldKeys(SampleRubric(), {"topic", "tone", "helpful"}), IsOk());
  ExpectInvalidAt(ValidateAgreementFieldKeys(SampleRubric(), {"topic", "note"}),
                  "queue.promotion_policy.agreement_field_keys[1]");
  ExpectInvalidAt(ValidateAgreementFieldKeys(SampleRubric(), {"nope"}),
                  "queue.promotion_policy.agreement_field_keys[0]");
  ExpectInvalidAt(ValidateAgreementFieldKeys(SampleRubric(), {"tone", "tone"}),
                  "queue.promotion_policy.agreement_field_keys[1]");
}

TEST(RubricHelpersTest, SameValueComparesCategoricalAsSets) {
  v1::FieldValue a, b;
  a.mutable_categorical()->add_values("x");
  a.mutable_categorical()->add_values("y");
  b.mutable_categorical()->add_values("y");
  b.mutable_categorical()->add_values("x");
  EXPECT_TRUE(SameValue(a, b));
  b.mutable_categorical()->add_values("z");
  EXPECT_FALSE(SameValue(a, b));
  v1::FieldValue n1, n2, t;
  n1.set_numeric(3);
  n2.set_numeric(3);
  t.set_free_text("3");
  EXPECT_TRUE(SameValue(n1, n2));
  EXPECT_FALSE(SameValue(n1, t));
  EXPECT_FALSE(SameValue(v1::FieldValue(), v1::FieldValue()));
}

}  // namespace
}  // namespace flywheel::annotation
