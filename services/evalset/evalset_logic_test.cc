// Pure logic of the eval-set service: schemas, case validation, comparison arithmetic and
// release notes, run summaries, export formats (parsed back), page tokens, embeddings.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_split.h"
#include "common/status/status_matchers.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/evalset/case_content.h"
#include "services/evalset/comparison.h"
#include "services/evalset/export_formats.h"
#include "services/evalset/ids.h"
#include "services/evalset/json.h"
#include "services/evalset/json_schema.h"
#include "services/evalset/novelty.h"
#include "services/evalset/run_summary.h"

namespace flywheel::evalset {
namespace {

using ::flywheel::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

google::protobuf::Struct ParseObject(const std::string& text) {
  google::protobuf::Struct out;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &out).ok()) << text;
  return out;
}

v1::Case PromptCase(const std::string& prompt) {
  v1::Case c;
  c.mutable_input()->set_prompt(prompt);
  return c;
}

TEST(JsonSchemaTest, UnsupportedKeywordIsRefusedNamingTheField) {
  absl::Status status =
      CheckJsonSchema("eval_set.input_schema", ParseObject(R"({"type":"object","format":"x"})"));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(CheckJsonSchema("s", ParseObject(R"({"type":"object","properties":{"a":
      {"type":"string","minLength":2,"pattern":"^[a-z]+$"}},"required":["a"],
      "additionalProperties":false})")));
  EXPECT_THAT(CheckJsonSchema("s", ParseObject(R"({"pattern":"("})")),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(JsonSchemaTest, ViolationsReportTheirPointer) {
  const auto schema = ParseObject(R"({"type":"object","properties":{"items":{"type":"array",
      "items":{"type":"integer","minimum":1}}},"required":["items"]})");
  ASSERT_OK_AND_ASSIGN(auto ok, json::ParseJson(R"({"items":[1,2,3]})"));
  EXPECT_FALSE(ValidateJsonSchema(schema, ok).has_value());
  ASSERT_OK_AND_ASSIGN(auto bad, json::ParseJson(R"({"items":[1,0]})"));
  auto violation = ValidateJsonSchema(schema, bad);
  ASSERT_TRUE(violation.has_value());
  EXPECT_EQ(violation->pointer, "/items/1");
  ASSERT_OK_AND_ASSIGN(auto missing, json::ParseJson(R"({})"));
  ASSERT_TRUE(ValidateJsonSchema(schema, missing).has_value());
  ASSERT_OK_AND_ASSIGN(auto any_of, json::ParseJson(R"("x")"));
  EXPECT_TRUE(ValidateJsonSchema(ParseObject(R"({"anyOf":[{"type":"number"},{"const":"x"}]})"),
                                 any_of) == std::nullopt);
  EXPECT_TRUE(
      ValidateJsonSchema(ParseObject(R"({"oneOf":[{"type":"string"},{"const":"x"}]})"), any_of)
          .has_value());
}

TEST(CaseContentTest, InvalidFieldsAreRejectedWithTheirPath) {
  v1::Case out;
  v1::Case c;
  auto error = PrepareCaseContent(c, {}, &out);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->field, "input");

  c.mutable_input()->mutable_messages()->add_messages()->set_content("hi");
  error = PrepareCaseContent(c, {}, &out);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->field, "input.messages[0].role");

  c = PromptCase("p");
  c.add_assertions()->set_type(v1::ASSERTION_TYPE_CONTAINS);
  c.mutable_assertions(0)->set_value("x");
  c.add_assertions()->set_type(v1::ASSERTION_TYPE_REGEX);
  c.mutable_assertions(1)->set_value("(unclosed");
  error = PrepareCaseContent(c, {}, &out);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->field, "assertions[1].value");
  EXPECT_EQ(error->code, absl::StatusCode::kInvalidArgument);

  c = PromptCase("p");
  c.set_expected_output(std::string(kMaxExpectedOutputBytes + 1, 'x'));
  error = PrepareCaseContent(c, {}, &out);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code, absl::StatusCode::kResourceExhausted);

  c = PromptCase("p");
  c.mutable_theme()->set_theme_id("t1");
  error = PrepareCaseContent(c, {}, &out);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->field, "theme.name");
}

TEST(CaseContentTest, SchemasApplyToInputContextAndExpectedOutput) {
  SetSchemas schemas;
  schemas.input = ParseObject(R"({"type":"object","properties":{"context":{"type":"object",
      "properties":{"customer":{"type":"object","properties":{"tier":{"enum":["gold","free"]}}}}}}})");
  schemas.expected_output = ParseObject(R"({"type":"object","required":["answer"]})");
  v1::Case c = PromptCase("p");
  *c.mutable_context() = ParseObject(R"({"customer":{"tier":"platinum"}})");
  c.set_expected_output(R"({"answer":"42"})");
  v1::Case out;
  auto error = PrepareCaseContent(c, schemas, &out);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->field, "context.customer.tier");

  *c.mutable_context() = ParseObject(R"({"customer":{"tier":"gold"}})");
  EXPECT_FALSE(PrepareCaseContent(c, schemas, &out).has_value());
  c.set_expected_output("not json");
  error = PrepareCaseContent(c, schemas, &out);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->field, "expected_output");
  c.set_expected_output(R"({"other":1})");
  EXPECT_TRUE(PrepareCaseContent(c, schemas, &out).has_value());
}

TEST(CaseContentTest, TagOrderAndRepeatsDoNotChangeTheDigest) {
  v1::Case a = PromptCase("p");
  a.add_tags("b");
  a.add_tags("a");
  a.add_tags("b");
  v1::Case b = PromptCase("p");
  b.add_tags("a");
  b.add_tags("b");
  v1::Case ca, cb;
  ASSERT_FALSE(PrepareCaseContent(a, {}, &ca).has_value());
  ASSERT_FALSE(PrepareCaseContent(b, {}, &cb).has_value());
  EXPECT_EQ(CaseContentDigest(ca), CaseContentDigest(cb));
  EXPECT_THAT(ca.tags(), ElementsAre("a", "b"));
  cb.set_expected_output("x");
  EXPECT_NE(CaseContentDigest(ca), CaseContentDigest(cb));
  EXPECT_EQ(CaseContentDigest(ca).rfind("sha256:", 0), 0u);
  EXPECT_EQ(CaseContentDigest(ca).size(), 7u + 64u);
}

TEST(CaseContentTest, SnippetCutsOnCodePointsWithEllipsis) {
  EXPECT_EQ(Snippet("héllo wörld", 5), "héllo…");
  EXPECT_EQ(Snippet("short", 10), "short");
}

TEST(CaseContentTest, ResultValidationRejectsOutOfRangeValues) {
  v1::CaseResult r;
  r.set_case_id("c1");
  r.set_verdict(v1::VERDICT_PASS);
  v1::CaseResult out;
  EXPECT_FALSE(PrepareResultContent(r, &out).has_value());
  r.set_score(1.5);
  EXPECT_EQ(PrepareResultContent(r, &out)->field, "score");
  r.clear_score();
  r.set_verdict(v1::VERDICT_ERROR);
  EXPECT_EQ(PrepareResultContent(r, &out)->field, "error");
  r.set_error("timeout");
  r.set_cost_micros(-1);
  EXPECT_EQ(PrepareResultContent(r, &out)->field, "cost_micros");
}

// ---- comparison

ResultFacts Fact(const std::string& case_id, v1::Verdict verdict, const std::string& theme,
                 int revision = 1) {
  ResultFacts f;
  f.case_id = case_id;
  f.verdict = verdict;
  f.theme_id = theme;
  f.theme_name = theme.empty() ? "" : theme + " name";
  f.case_revision = revision;
  return f;
}

RunRecord MakeRun(const std::string& id, int64_t version, const std::string& label) {
  RunRecord r;
  r.run_id = id;
  r.eval_set_id = "set";
  r.version = version;
  r.candidate_label = label;
  r.state = v1::RUN_STATE_COMPLETED;
  return r;
}

TEST(ComparisonTest, RatesDeltasRegressionsAndFixesOverTheIntersection) {
  const RunRecord base = MakeRun("b", 3, "gpt-4o + prompt@v1");
  const RunRecord cand = MakeRun("c", 4, "gpt-4o + prompt@v2");
  const auto P = v1::VERDICT_PASS, F = v1::VERDICT_FAIL, E = v1::VERDICT_ERROR;
  // Theme cite: baseline 1/4 pass, candidate 3/4 pass (2 fixes). Theme math: 2/2 -> 1/2 (1
  // regression via ERROR). c9 only in the baseline (retired), c10 only in the candidate (new
  // theme "tools").
  std::vector<ResultFacts> b = {
      Fact("c1", F, "cite"), Fact("c2", F, "cite"), Fact("c3", P, "cite"),  Fact("c4", F, "cite"),
      Fact("c5", P, "math"), Fact("c6", P, "math"), Fact("c9", P, "legacy")};
  std::vector<ResultFacts> c = {Fact("c1", P, "cite"),  Fact("c2", P, "cite"),
                                Fact("c3", P, "cite"),  Fact("c4", F, "cite", 2),
                                Fact("c5", P, "math"),  Fact("c6", E, "math"),
                                Fact("c10", F, "tools")};
  CompareOptions options;
  options.release_notes_min_cases = 1;
  v1::CompareRunsResponse r = CompareResults({&base, &b}, {&cand, &c}, options);
  EXPECT_EQ(r.compared_case_count(), 6);
  EXPECT_EQ(r.revised_case_count(), 1);
  EXPECT_DOUBLE_EQ(r.baseline().pass_rate(), 3.0 / 6);
  EXPECT_DOUBLE_EQ(r.candidate().pass_rate(), 4.0 / 6);
  EXPECT_NEAR(r.pass_rate_delta_points(), 100.0 / 6, 1e-9);
  EXPECT_EQ(r.baseline().only_in_this_run_count(), 1);
  EXPECT_EQ(r.candidate().only_in_this_run_count(), 1);
  EXPECT_FALSE(r.same_version());
  EXPECT_EQ(r.regression_count(), 1);
  ASSERT_EQ(r.regressions_size(), 1);
  EXPECT_EQ(r.regressions(0).case_id(), "c6");
  EXPECT_EQ(r.regressions(0).candidate_verdict(), v1::VERDICT_ERROR);
  EXPECT_EQ(r.fix_count(), 2);
  ASSERT_EQ(r.fixes_size(), 2);
  EXPECT_EQ(r.fixes(0).case_id(), "c1");
  ASSERT_EQ(r.theme_deltas_size(), 4);
  // BOTH first, worst delta first; then baseline-only, then candidate-only.
  EXPECT_EQ(r.theme_deltas(0).theme().theme_id(), "math");
  EXPECT_DOUBLE_EQ(r.theme_deltas(0).delta_points(), -50);
  EXPECT_EQ(r.theme_deltas(0).regression_count(), 1);
  EXPECT_EQ(r.theme_deltas(1).theme().theme_id(), "cite");
  EXPECT_DOUBLE_EQ(r.theme_deltas(1).baseline_pass_rate(), 0.25);
  EXPECT_DOUBLE_EQ(r.theme_deltas(1).candidate_pass_rate(), 0.75);
  EXPECT_EQ(r.theme_deltas(1).fix_count(), 2);
  EXPECT_EQ(r.theme_deltas(2).presence(), v1::THEME_PRESENCE_BASELINE_ONLY);
  EXPECT_EQ(r.theme_deltas(2).theme().theme_id(), "legacy");
  EXPECT_DOUBLE_EQ(r.theme_deltas(2).baseline_pass_rate(), 1.0);
  EXPECT_FALSE(r.theme_deltas(2).has_candidate_pass_rate());
  EXPECT_FALSE(r.theme_deltas(2).has_delta_points());
  EXPECT_EQ(r.theme_deltas(3).presence(), v1::THEME_PRESENCE_CANDIDATE_ONLY);
  EXPECT_DOUBLE_EQ(r.theme_deltas(3).candidate_pass_rate(), 0.0);
  EXPECT_EQ(r.theme_deltas(3).case_count(), 1);
  EXPECT_THAT(r.version_note(), HasSubstr("versions 3 and 4"));

  const std::string notes = WriteReleaseNotes(r, "support *regressions*", options);
  const std::vector<std::string> lines = absl::StrSplit(notes, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 6u) << notes;
  EXPECT_EQ(lines[0],
            "**gpt-4o + prompt@v2** vs **gpt-4o + prompt@v1** on *support \\*regressions\\** "
            "(v3 → v4)");
  EXPECT_EQ(lines[1], "Overall: 50% → 67% (+17 pts, 6 cases)");
  EXPECT_EQ(lines[2], "- Improved on *cite name*: 25% → 75% (+50 pts, 4 cases)");
  EXPECT_EQ(lines[3], "- Regressed on *math name*: 100% → 50% (-50 pts, 2 cases)");
  EXPECT_EQ(lines[4], "- New: *tools name*: 0% (1 case, not in baseline)");
  EXPECT_EQ(lines[5], "- Dropped: *legacy name* (1 case, not in candidate)");
}

TEST(ComparisonTest, ThemesBelowThresholdsAreOnlyCounted) {
  const RunRecord base = MakeRun("b", 1, "a");
  const RunRecord cand = MakeRun("c", 1, "b");
  std::vector<ResultFacts> b, c;
  for (int i = 0; i < 10; ++i) {
    const std::string id = "c" + std::to_string(i);
    b.push_back(Fact(id, v1::VERDICT_PASS, i < 5 ? "big" : "small"));
    // "big": 5 cases, one regression (-20 pts); "small": unchanged.
    c.push_back(Fact(id, i == 0 ? v1::VERDICT_FAIL : v1::VERDICT_PASS, i < 5 ? "big" : "small"));
  }
  CompareOptions options;  // 5 pts, 5 cases
  v1::CompareRunsResponse r = CompareResults({&base, &b}, {&cand, &c}, options);
  EXPECT_TRUE(r.same_version());
  EXPECT_TRUE(r.version_note().empty());
  const std::string notes = WriteReleaseNotes(r, "s", options);
  EXPECT_THAT(notes, HasSubstr("(v1)\n"));
  EXPECT_THAT(notes, HasSubstr("- Regressed on *big name*: 100% → 80% (-20 pts, 5 cases)"));
  EXPECT_THAT(notes, HasSubstr("- 1 other theme within ±5 pts"));
  options.release_notes_min_cases = 6;
  EXPECT_THAT(WriteReleaseNotes(r, "s", options), HasSubstr("- 2 other themes"));
}

TEST(ComparisonTest, NoCommonCasesLeavesRatesUnset) {
  const RunRecord base = MakeRun("b", 1, "a");
  const RunRecord cand = MakeRun("c", 2, "b");
  std::vector<ResultFacts> b = {Fact("x", v1::VERDICT_PASS, "t")};
  std::vector<ResultFacts> c = {Fact("y", v1::VERDICT_PASS, "t")};
  v1::CompareRunsResponse r = CompareResults({&base, &b}, {&cand, &c}, {});
  EXPECT_EQ(r.compared_case_count(), 0);
  EXPECT_FALSE(r.has_pass_rate_delta_points());
  EXPECT_FALSE(r.baseline().has_pass_rate());
  ASSERT_EQ(r.theme_deltas_size(), 1);
  EXPECT_EQ(r.theme_deltas(0).presence(), v1::THEME_PRESENCE_BOTH);
  EXPECT_EQ(r.theme_deltas(0).case_count(), 0);
}

TEST(RunSummaryTest, CountsRatesCostsAndNearestRankP95) {
  std::vector<ThemeCount> themes = {{"a", "A", 3}, {"b", "B", 5}};
  std::vector<ResultFacts> results;
  for (int i = 0; i < 20; ++i) {
    ResultFacts f = Fact("c" + std::to_string(i), i % 2 ? v1::VERDICT_FAIL : v1::VERDICT_PASS,
                         i < 2 ? "a" : "b");
    f.latency_us = (i + 1) * 1000;  // 1..20 ms
    f.cost_micros = 10;
    if (i < 4) f.score = 0.5;
    results.push_back(f);
  }
  results.resize(7);  // 2 of theme a, 5 of theme b
  v1::RunSummary s = ComputeRunSummary(themes, results, true);
  EXPECT_EQ(s.overall().case_count(), 8);
  EXPECT_EQ(s.overall().result_count(), 7);
  EXPECT_EQ(s.overall().missing_count(), 1);
  EXPECT_EQ(s.overall().passed_count(), 4);
  EXPECT_DOUBLE_EQ(s.overall().pass_rate(), 4.0 / 7);
  EXPECT_DOUBLE_EQ(s.overall().mean_score(), 0.5);
  EXPECT_EQ(s.overall().scored_count(), 4);
  EXPECT_EQ(s.overall().total_cost_micros(), 70);
  EXPECT_EQ(s.overall().p95_latency().nanos(), 7000000);  // ceil(0.95*7)=7th of 1..7 ms
  EXPECT_EQ(s.overall().mean_latency().nanos(), 4000000);
  ASSERT_EQ(s.themes_size(), 2);
  EXPECT_EQ(s.themes(0).theme().theme_id(), "b");  // more cases first
  EXPECT_EQ(s.themes(1).stats().missing_count(), 1);
}

// ---- export formats, parsed back

v1::Case ExportCase() {
  v1::Case c;
  c.set_case_id("c1");
  c.set_eval_set_id("set");
  auto* messages = c.mutable_input()->mutable_messages();
  auto* m = messages->add_messages();
  m->set_role("system");
  m->set_content("be brief");
  m = messages->add_messages();
  m->set_role("user");
  m->set_content("What is \"2+2\"?\nAnswer:");
  *c.mutable_context() = ParseObject(R"({"locale":"en","input":"shadowed"})");
  c.set_expected_output("4");
  auto* a = c.add_assertions();
  a->set_type(v1::ASSERTION_TYPE_CONTAINS);
  a->set_value("4");
  a->set_ignore_case(true);
  a->set_weight(2);
  a = c.add_assertions();
  a->set_type(v1::ASSERTION_TYPE_JSON_SCHEMA);
  a->set_value(R"({"type":"object"})");
  a = c.add_assertions();
  a->set_type(v1::ASSERTION_TYPE_CUSTOM);
  a->set_custom_type("citation-check");
  a->set_threshold(0.7);
  *a->mutable_config() = ParseObject(R"({"min":2})");
  c.mutable_theme()->set_theme_id("th1");
  c.mutable_theme()->set_name("broken citations");
  c.add_tags("prod");
  c.set_source_trace_id("tr1");
  return c;
}

google::protobuf::Struct ParseLine(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one record per line";
  return ParseObject(line);
}

const google::protobuf::Value& Field(const google::protobuf::Struct& s, const std::string& key) {
  static const google::protobuf::Value kMissing;
  auto it = s.fields().find(key);
  return it == s.fields().end() ? kMissing : it->second;
}

TEST(ExportFormatsTest, OpenAiEvalsRecordParsesBackWithMessagesIdealAndVersion) {
  ExportSource source{"set", 7, "sha256:abc"};
  std::string out;
  ASSERT_EQ(AppendOpenAiEvalsRecord(source, ExportCase(), &out), 1);
  auto record = ParseLine(out);
  const auto& input = Field(record, "input").list_value();
  ASSERT_EQ(input.values_size(), 2);
  EXPECT_EQ(Field(input.values(1).struct_value(), "role").string_value(), "user");
  EXPECT_EQ(Field(input.values(1).struct_value(), "content").string_value(),
            "What is \"2+2\"?\nAnswer:");
  EXPECT_EQ(Field(record, "ideal").string_value(), "4");
  const auto& flywheel = Field(Field(record, "metadata").struct_value(), "flywheel").struct_value();
  EXPECT_EQ(Field(flywheel, "version").number_value(), 7);
  EXPECT_EQ(Field(flywheel, "content_digest").string_value(), "sha256:abc");
  EXPECT_EQ(Field(flywheel, "theme_name").string_value(), "broken citations");

  v1::Case without = ExportCase();
  without.clear_expected_output();
  std::string skipped;
  EXPECT_EQ(AppendOpenAiEvalsRecord(source, without, &skipped), 0);
  EXPECT_TRUE(skipped.empty());
  // A prompt becomes one user message.
  v1::Case prompt = PromptCase("hello");
  prompt.set_expected_output("hi");
  std::string line;
  ASSERT_EQ(AppendOpenAiEvalsRecord(source, prompt, &line), 1);
  auto parsed = ParseLine(line);
  ASSERT_EQ(Field(parsed, "input").list_value().values_size(), 1);
}

TEST(ExportFormatsTest, PromptfooRecordMapsVarsAndAssertions) {
  ExportSource source{"set", 7, "sha256:abc"};
  std::string out;
  ASSERT_EQ(AppendPromptfooRecord(source, ExportCase(), &out), 1);
  auto record = ParseLine(out);
  EXPECT_EQ(Field(record, "description").string_value(), "c1: broken citations");
  const auto& vars = Field(record, "vars").struct_value();
  EXPECT_EQ(Field(vars, "locale").string_value(), "en");
  EXPECT_EQ(Field(vars, "expected_output").string_value(), "4");
  // Messages travel as a JSON array string; the context key "input" does not override it.
  ASSERT_OK_AND_ASSIGN(auto messages, json::ParseJson(Field(vars, "input").string_value()));
  ASSERT_EQ(messages.list_value().values_size(), 2);
  const auto& asserts = Field(record, "assert").list_value();
  ASSERT_EQ(asserts.values_size(), 3);
  EXPECT_EQ(Field(asserts.values(0).struct_value(), "type").string_value(), "icontains");
  EXPECT_EQ(Field(asserts.values(0).struct_value(), "weight").number_value(), 2);
  EXPECT_EQ(Field(asserts.values(1).struct_value(), "type").string_value(), "is-json");
  EXPECT_EQ(
      Field(Field(asserts.values(1).struct_value(), "value").struct_value(), "type").string_value(),
      "object");
  EXPECT_EQ(Field(asserts.values(2).struct_value(), "type").string_value(), "citation-check");
  EXPECT_EQ(Field(asserts.values(2).struct_value(), "threshold").number_value(), 0.7);
  EXPECT_EQ(Field(asserts.values(2).struct_value(), "min").number_value(), 2);
}

TEST(ExportFormatsTest, FlywheelRecordRoundTripsTheCaseAndHeaderCarriesTheVersion) {
  std::string out;
  ASSERT_OK_AND_ASSIGN(int written, AppendFlywheelRecord(ExportCase(), &out));
  EXPECT_EQ(written, 1);
  auto record = ParseLine(out);
  EXPECT_EQ(Field(record, "record_type").string_value(), "case");
  const std::string case_json = json::ValueToJson(Field(record, "case"));
  v1::Case parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(case_json, &parsed).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, ExportCase()));

  auto header = ParseLine(FlywheelHeaderLine({"set", 9, "sha256:d"}, 12, absl::UnixEpoch()));
  EXPECT_EQ(Field(header, "format").string_value(), "FLYWHEEL_JSONL");
  EXPECT_EQ(Field(header, "version").number_value(), 9);
  EXPECT_EQ(Field(header, "case_count").number_value(), 12);
  EXPECT_EQ(Field(header, "export_time").string_value(), "1970-01-01T00:00:00.000Z");
}

TEST(ExportFormatsTest, DpoRecordsOnePerPair) {
  flywheel::capture::v1::PreferencePair p1, p2;
  p1.set_pair_id("p1");
  p1.mutable_prompt()->set_prompt("q?");
  p1.set_chosen_output("good");
  p1.set_rejected_output("bad");
  p2.set_pair_id("p2");
  p2.set_chosen_output("good2");
  p2.set_rejected_output("bad2");
  std::string out;
  ASSERT_EQ(AppendDpoRecords({"set", 1, "d"}, ExportCase(), {&p1, &p2}, &out), 2);
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  auto first = ParseObject(lines[0]);
  EXPECT_EQ(Field(first, "prompt").string_value(), "q?");
  EXPECT_EQ(Field(first, "chosen").string_value(), "good");
  EXPECT_EQ(Field(first, "rejected").string_value(), "bad");
  const auto& flywheel = Field(Field(first, "metadata").struct_value(), "flywheel").struct_value();
  EXPECT_EQ(Field(flywheel, "pair_id").string_value(), "p1");
  EXPECT_EQ(Field(flywheel, "source_trace_id").string_value(), "tr1");
  // Without a prompt in the pair, the case's messages are the prompt.
  auto second = ParseObject(lines[1]);
  EXPECT_EQ(Field(second, "prompt").list_value().values_size(), 2);
}

// ---- ids, tokens, embeddings

TEST(IdsTest, GeneratedIdsAreValidLowercaseAndTimeOrdered) {
  const std::string a = GenerateId();
  absl::SleepFor(absl::Milliseconds(2));
  const std::string b = GenerateId();
  EXPECT_EQ(a.size(), 26u);
  EXPECT_TRUE(IsValidId(a));
  EXPECT_LT(a, b);
  for (char c : a) EXPECT_FALSE(c >= 'A' && c <= 'Z');
  EXPECT_THAT(ValidateId("f", "bad id"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateTagName("tag", "latest"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateTagName("tag", "1prod"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(ValidateTagName("tag", "prod-2024.1"));
}

TEST(IdsTest, PageTokensBindFiltersAndExpire) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  const std::string token = EncodePageToken("cases", "f1", {"12", "case|x"}, now);
  ASSERT_OK_AND_ASSIGN(PageToken decoded, DecodePageToken(token, "cases", "f1", now));
  EXPECT_THAT(decoded.position, ElementsAre("12", "case|x"));
  EXPECT_THAT(DecodePageToken(token, "cases", "f2", now),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodePageToken(token, "runs", "f1", now),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodePageToken(token, "cases", "f1", now + absl::Hours(25)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodePageToken("%%%", "cases", "f1", now),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(NoveltyTest, SimilarTextsScoreHigherThanUnrelatedOnes) {
  const SparseVector q = EmbedText("How do I reset my password?");
  EXPECT_NEAR(CosineSimilarity(q, EmbedText("how do I reset my password")), 1.0, 1e-6);
  const double close = CosineSimilarity(q, EmbedText("password reset is not working for me"));
  const double far = CosineSimilarity(q, EmbedText("quarterly revenue by region"));
  EXPECT_GT(close, far);
  EXPECT_GE(far, 0.0);
  EXPECT_EQ(CosineSimilarity(q, EmbedText("")), 0.0);
}

}  // namespace
}  // namespace flywheel::evalset
