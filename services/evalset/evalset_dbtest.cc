// The eval-set logic on the real schema: idempotent adds, reproducible snapshots after edits and
// retirements, tags, runs and result idempotency, comparisons, export, novelty, tenancy.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <atomic>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_matchers.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/evalset/evalset_logic.h"
#include "services/evalset/ids.h"
#include "services/evalset/pg_evalset_repository.h"
#include "tests/pg/test_database.h"

namespace flywheel::evalset {
namespace {

using ::flywheel::common::v1::ITEM_OUTCOME_ACCEPTED;
using ::flywheel::common::v1::ITEM_OUTCOME_DUPLICATE;
using ::flywheel::common::v1::ITEM_OUTCOME_REJECTED;
using ::flywheel::testing::StatusIs;
using ::flywheel::testing::TestDatabase;
using ::testing::HasSubstr;

constexpr char kAlpha[] = "alpha";
constexpr char kBeta[] = "beta";

v1::Case MakeCase(const std::string& id, const std::string& prompt, const std::string& theme = "",
                  const std::string& key = "") {
  v1::Case c;
  c.set_case_id(id);
  c.set_case_key(key);
  c.mutable_input()->set_prompt(prompt);
  c.set_expected_output("expected for " + prompt);
  if (!theme.empty()) {
    c.mutable_theme()->set_theme_id(theme);
    c.mutable_theme()->set_name(theme + " theme");
  }
  return c;
}

// The version digest as a client recomputes it from streamed cases (see evalset.proto).
std::string ClientDigest(const std::vector<v1::Case>& cases) {
  std::string lines;
  for (const v1::Case& c : cases)
    absl::StrAppend(&lines, c.case_id(), "\t", c.content_digest(), "\n");
  return Sha256Digest(lines);
}

class EvalSetDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(db_, TestDatabase::Create());
    pool_ = std::make_unique<db::ConnectionPool>(db::PoolOptions{db_->conninfo(), 4});
    repository_ = std::make_unique<PgEvalSetRepository>(pool_.get(), &logger_);
    LogicOptions options;
    options.stream_fetch_rows = 3;  // exercise paging inside streams
    logic_ = std::make_unique<EvalSetLogic>(repository_.get(), nullptr, options);
    CreateSet(kAlpha, "set1");
  }

  void CreateSet(const std::string& project, const std::string& id) {
    v1::CreateEvalSetRequest request;
    request.mutable_eval_set()->set_eval_set_id(id);
    request.mutable_eval_set()->set_display_name("Support regressions");
    ASSERT_OK(logic_->CreateEvalSet(project, request));
  }

  v1::AddCasesResponse Add(const std::vector<v1::Case>& cases,
                           const std::string& project = kAlpha) {
    v1::AddCasesRequest request;
    request.set_eval_set_id("set1");
    for (const v1::Case& c : cases) *request.add_cases() = c;
    absl::StatusOr<v1::AddCasesResponse> response = logic_->AddCases(project, request);
    EXPECT_OK(response);
    return response.ok() ? *response : v1::AddCasesResponse();
  }

  std::vector<v1::Case> Snapshot(int64_t version) {
    v1::StreamCasesRequest request;
    request.set_eval_set_id("set1");
    request.mutable_version()->set_number(version);
    request.set_max_cases_per_message(2);
    std::vector<v1::Case> out;
    absl::StatusOr<std::unique_ptr<MessageSource<v1::StreamCasesResponse>>> source =
        logic_->StreamCases(kAlpha, request);
    EXPECT_OK(source);
    if (!source.ok()) return out;
    bool more = true;
    int messages = 0;
    while (more) {
      std::vector<v1::StreamCasesResponse> batch;
      absl::StatusOr<bool> next = (*source)->Next(&batch);
      EXPECT_OK(next);
      if (!next.ok()) break;
      more = *next;
      for (auto& m : batch) {
        if (messages++ == 0) {
          EXPECT_TRUE(m.has_header());
          EXPECT_EQ(m.header().version().version(), version);
          continue;
        }
        EXPECT_LE(m.cases_size(), 2);
        for (auto& c : *m.mutable_cases()) out.push_back(std::move(c));
      }
    }
    return out;
  }

  v1::EvalSetVersion Version(int64_t number) {
    v1::GetVersionRequest request;
    request.set_eval_set_id("set1");
    request.mutable_version()->set_number(number);
    absl::StatusOr<v1::GetVersionResponse> response = logic_->GetVersion(kAlpha, request);
    EXPECT_OK(response);
    return response.ok() ? response->version() : v1::EvalSetVersion();
  }

  std::string StartRun(const std::string& run_id, const std::string& label, int64_t version) {
    v1::CreateRunRequest request;
    request.mutable_run()->set_run_id(run_id);
    request.mutable_run()->set_eval_set_id("set1");
    request.mutable_run()->set_candidate_label(label);
    request.mutable_version()->set_number(version);
    absl::StatusOr<v1::CreateRunResponse> response = logic_->CreateRun(kAlpha, request);
    EXPECT_OK(response);
    return run_id;
  }

  v1::RecordResultsResponse Record(const std::string& run_id,
                                   const std::vector<std::pair<std::string, v1::Verdict>>& results,
                                   bool overwrite = false) {
    v1::RecordResultsRequest request;
    request.set_run_id(run_id);
    request.set_overwrite(overwrite);
    for (const auto& [case_id, verdict] : results) {
      v1::CaseResult* r = request.add_results();
      r->set_case_id(case_id);
      r->set_verdict(verdict);
      r->set_output_text("output of " + case_id);
      if (verdict == v1::VERDICT_ERROR) r->set_error("timeout");
    }
    absl::StatusOr<v1::RecordResultsResponse> response = logic_->RecordResults(kAlpha, request);
    EXPECT_OK(response);
    return response.ok() ? *response : v1::RecordResultsResponse();
  }

  absl::StatusOr<v1::CompleteRunResponse> Complete(const std::string& run_id,
                                                   bool require_all = false) {
    v1::CompleteRunRequest request;
    request.set_run_id(run_id);
    request.set_state(v1::RUN_STATE_COMPLETED);
    request.set_require_all_results(require_all);
    return logic_->CompleteRun(kAlpha, request);
  }

  Logger logger_{"test", Logger::Level::kError};
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<db::ConnectionPool> pool_;
  std::unique_ptr<PgEvalSetRepository> repository_;
  std::unique_ptr<EvalSetLogic> logic_;
};

TEST_F(EvalSetDbTest, CreateEvalSetIsIdempotentOnItsId) {
  v1::CreateEvalSetRequest request;
  request.mutable_eval_set()->set_eval_set_id("set1");
  request.mutable_eval_set()->set_display_name("Support regressions");
  ASSERT_OK_AND_ASSIGN(auto again, logic_->CreateEvalSet(kAlpha, request));
  EXPECT_EQ(again.eval_set().latest_version(), 0);
  request.mutable_eval_set()->set_display_name("Other");
  EXPECT_THAT(logic_->CreateEvalSet(kAlpha, request), StatusIs(absl::StatusCode::kAlreadyExists));
  // The same id in another project is another set.
  EXPECT_OK(logic_->CreateEvalSet(kBeta, request));
  request.mutable_eval_set()->set_eval_set_id("bad id");
  EXPECT_THAT(logic_->CreateEvalSet(kAlpha, request), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(EvalSetDbTest, AddCasesIsIdempotentOnTheCaseKeyEvenAfterAnUpdate) {
  v1::AddCasesResponse first =
      Add({MakeCase("", "refund policy?", "t1", "ann-1"), MakeCase("c2", "shipping time?", "t1")});
  ASSERT_EQ(first.results_size(), 2);
  EXPECT_EQ(first.results(0).outcome(), ITEM_OUTCOME_ACCEPTED);
  const std::string generated = first.results(0).id();
  EXPECT_EQ(generated.size(), 26u);
  EXPECT_TRUE(first.version_created());
  EXPECT_EQ(first.version(), 1);

  // The retry is a duplicate with the same ids and creates no version.
  v1::AddCasesResponse retry =
      Add({MakeCase("", "refund policy?", "t1", "ann-1"), MakeCase("c2", "shipping time?", "t1")});
  EXPECT_EQ(retry.results(0).outcome(), ITEM_OUTCOME_DUPLICATE);
  EXPECT_EQ(retry.results(0).id(), generated);
  EXPECT_EQ(retry.results(1).outcome(), ITEM_OUTCOME_DUPLICATE);
  EXPECT_FALSE(retry.version_created());
  EXPECT_EQ(retry.version(), 1);

  // Same key, other content: rejected, and it does not sink the rest of the batch.
  v1::Case bad_input;  // no input at all
  bad_input.set_case_id("c4");
  v1::AddCasesResponse mixed = Add(
      {MakeCase("", "refund policy!!", "t1", "ann-1"), MakeCase("c3", "new one", "t2"), bad_input});
  EXPECT_EQ(mixed.results(0).outcome(), ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(mixed.results(0).code(), static_cast<int>(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(mixed.results(0).field(), "case_key");
  EXPECT_EQ(mixed.results(1).outcome(), ITEM_OUTCOME_ACCEPTED);
  EXPECT_EQ(mixed.results(2).outcome(), ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(mixed.results(2).field(), "input");
  EXPECT_EQ(mixed.version(), 2);

  // After an update, a late retry of the original add is still a duplicate.
  v1::UpdateCaseRequest update;
  update.set_eval_set_id("set1");
  update.mutable_eval_case()->set_case_id(generated);
  update.mutable_eval_case()->set_expected_output("corrected answer");
  update.mutable_update_mask()->add_paths("expected_output");
  ASSERT_OK_AND_ASSIGN(auto updated, logic_->UpdateCase(kAlpha, update));
  EXPECT_TRUE(updated.version_created());
  EXPECT_EQ(updated.eval_case().revision(), 2);
  v1::AddCasesResponse late = Add({MakeCase("", "refund policy?", "t1", "ann-1")});
  EXPECT_EQ(late.results(0).outcome(), ITEM_OUTCOME_DUPLICATE);
  EXPECT_EQ(late.results(0).id(), generated);

  // A case_id-only item never matches a case that has a key.
  v1::AddCasesResponse keyless = Add({MakeCase(generated, "refund policy?", "t1")});
  EXPECT_EQ(keyless.results(0).outcome(), ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(keyless.results(0).field(), "case_id");

  // Two items of one call with the same key: the later is compared with the earlier.
  v1::AddCasesResponse twice =
      Add({MakeCase("", "a", "", "k9"), MakeCase("", "a", "", "k9"), MakeCase("", "b", "", "k9")});
  EXPECT_EQ(twice.results(0).outcome(), ITEM_OUTCOME_ACCEPTED);
  EXPECT_EQ(twice.results(1).outcome(), ITEM_OUTCOME_DUPLICATE);
  EXPECT_EQ(twice.results(1).id(), twice.results(0).id());
  EXPECT_EQ(twice.results(2).outcome(), ITEM_OUTCOME_REJECTED);
}

TEST_F(EvalSetDbTest, PastSnapshotsReadBackExactlyAfterEditsAndRetirements) {
  Add({MakeCase("a", "alpha question", "t1"), MakeCase("b", "beta question", "t1"),
       MakeCase("c", "gamma question", "t2")});
  const std::vector<v1::Case> v1_cases = Snapshot(1);
  ASSERT_EQ(v1_cases.size(), 3u);
  const v1::EvalSetVersion v1_version = Version(1);
  EXPECT_EQ(v1_version.case_count(), 3);
  EXPECT_EQ(v1_version.content_digest(), ClientDigest(v1_cases));

  v1::UpdateCaseRequest update;
  update.set_eval_set_id("set1");
  update.mutable_eval_case()->set_case_id("b");
  update.mutable_eval_case()->mutable_input()->set_prompt("beta question, reworded");
  update.mutable_update_mask()->add_paths("input");
  update.set_expected_version(1);
  ASSERT_OK(logic_->UpdateCase(kAlpha, update));  // v2
  // Updating to the same content again writes nothing.
  update.clear_expected_version();
  ASSERT_OK_AND_ASSIGN(auto same, logic_->UpdateCase(kAlpha, update));
  EXPECT_FALSE(same.version_created());
  EXPECT_EQ(same.version(), 2);

  v1::RetireCasesRequest retire;
  retire.set_eval_set_id("set1");
  retire.add_case_ids("c");
  retire.add_case_ids("c");
  retire.add_case_ids("nope");
  ASSERT_OK_AND_ASSIGN(auto retired, logic_->RetireCases(kAlpha, retire));  // v3
  EXPECT_EQ(retired.version(), 3);
  EXPECT_EQ(retired.results(0).outcome(), ITEM_OUTCOME_ACCEPTED);
  EXPECT_EQ(retired.results(1).outcome(), ITEM_OUTCOME_DUPLICATE);
  EXPECT_EQ(retired.results(2).code(), static_cast<int>(absl::StatusCode::kNotFound));
  Add({MakeCase("d", "delta question", "t3")});  // v4

  // Version 1 reads back exactly as it was (output fields that reflect the present aside).
  std::vector<v1::Case> again = Snapshot(1);
  ASSERT_EQ(again.size(), v1_cases.size());
  for (size_t i = 0; i < again.size(); ++i) {
    v1::Case expected = v1_cases[i];
    v1::Case actual = again[i];
    expected.clear_retired_version();
    actual.clear_retired_version();
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(actual, expected)) << i;
  }
  EXPECT_EQ(again[2].retired_version(), 3);  // "c" reflects its retirement
  EXPECT_EQ(Version(1).content_digest(), v1_version.content_digest());

  const std::vector<v1::Case> v4_cases = Snapshot(4);
  ASSERT_EQ(v4_cases.size(), 3u);
  EXPECT_EQ(v4_cases[0].case_id(), "a");
  EXPECT_EQ(v4_cases[1].input().prompt(), "beta question, reworded");
  EXPECT_EQ(v4_cases[1].revision(), 2);
  EXPECT_EQ(v4_cases[1].revision_version(), 2);
  EXPECT_EQ(v4_cases[2].case_id(), "d");
  EXPECT_EQ(Version(4).content_digest(), ClientDigest(v4_cases));
  EXPECT_EQ(Version(3).change().kind(), v1::VERSION_CHANGE_KIND_RETIRE_CASES);
  EXPECT_EQ(Version(3).change().retired_count(), 1);

  v1::GetCaseRequest get;
  get.set_eval_set_id("set1");
  get.set_case_id("c");
  get.mutable_version()->set_number(2);
  ASSERT_OK_AND_ASSIGN(auto at2, logic_->GetCase(kAlpha, get));
  EXPECT_EQ(at2.eval_case().input().prompt(), "gamma question");
  get.mutable_version()->set_number(3);
  EXPECT_THAT(logic_->GetCase(kAlpha, get), StatusIs(absl::StatusCode::kNotFound));
  get.mutable_version()->set_number(9);
  EXPECT_THAT(logic_->GetCase(kAlpha, get), StatusIs(absl::StatusCode::kNotFound));

  // Retired cases cannot be updated; stale expected_version aborts.
  update.mutable_eval_case()->set_case_id("c");
  EXPECT_THAT(logic_->UpdateCase(kAlpha, update), StatusIs(absl::StatusCode::kFailedPrecondition));
  v1::AddCasesRequest stale;
  stale.set_eval_set_id("set1");
  *stale.add_cases() = MakeCase("e", "e");
  stale.set_expected_version(2);
  EXPECT_THAT(logic_->AddCases(kAlpha, stale), StatusIs(absl::StatusCode::kAborted));
}

TEST_F(EvalSetDbTest, ListCasesPagesPinTheirVersionAndFilter) {
  Add({MakeCase("a", "1", "t1"), MakeCase("b", "2", "t2"), MakeCase("c", "3", "t1"),
       MakeCase("d", "4", "t1"), MakeCase("e", "5", "t2")});
  v1::ListCasesRequest request;
  request.set_eval_set_id("set1");
  request.set_page_size(2);
  std::vector<std::string> seen;
  bool added_midway = false;
  do {
    ASSERT_OK_AND_ASSIGN(auto page, logic_->ListCases(kAlpha, request));
    EXPECT_EQ(page.version(), 1);
    EXPECT_EQ(page.total_size(), 5);
    for (const auto& c : page.cases()) seen.push_back(c.case_id());
    request.set_page_token(page.next_page_token());
    if (!added_midway) {
      Add({MakeCase("bb", "new", "t1")});  // v2; the token keeps reading v1
      added_midway = true;
    }
  } while (!request.page_token().empty());
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c", "d", "e"}));

  v1::ListCasesRequest filtered;
  filtered.set_eval_set_id("set1");
  filtered.mutable_filter()->add_theme_ids("t2");
  ASSERT_OK_AND_ASSIGN(auto t2, logic_->ListCases(kAlpha, filtered));
  EXPECT_EQ(t2.version(), 2);
  EXPECT_EQ(t2.total_size(), 2);
  // A token from one filter is refused with another.
  filtered.set_page_size(1);
  ASSERT_OK_AND_ASSIGN(auto first, logic_->ListCases(kAlpha, filtered));
  ASSERT_FALSE(first.next_page_token().empty());
  filtered.mutable_filter()->set_theme_ids(0, "t1");
  filtered.set_page_token(first.next_page_token());
  EXPECT_THAT(logic_->ListCases(kAlpha, filtered), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(EvalSetDbTest, TagsMoveWithCompareAndSetAndResolve) {
  Add({MakeCase("a", "1")});
  Add({MakeCase("b", "2")});
  v1::TagVersionRequest tag;
  tag.set_eval_set_id("set1");
  tag.set_tag("prod");
  tag.mutable_version()->set_number(1);
  tag.set_expected_current_version(0);
  ASSERT_OK_AND_ASSIGN(auto tagged, logic_->TagVersion(kAlpha, tag));
  EXPECT_EQ(tagged.previous_version(), 0);
  EXPECT_THAT(tagged.version().tags(), ::testing::ElementsAre("prod"));
  // The compare-and-set fails when the tag is elsewhere.
  tag.mutable_version()->set_number(2);
  tag.set_expected_current_version(2);
  EXPECT_THAT(logic_->TagVersion(kAlpha, tag), StatusIs(absl::StatusCode::kAborted));
  tag.set_expected_current_version(1);
  ASSERT_OK_AND_ASSIGN(auto moved, logic_->TagVersion(kAlpha, tag));
  EXPECT_EQ(moved.previous_version(), 1);

  v1::GetVersionRequest get;
  get.set_eval_set_id("set1");
  get.mutable_version()->set_tag("prod");
  ASSERT_OK_AND_ASSIGN(auto resolved, logic_->GetVersion(kAlpha, get));
  EXPECT_EQ(resolved.version().version(), 2);
  get.mutable_version()->set_tag("staging");
  EXPECT_THAT(logic_->GetVersion(kAlpha, get), StatusIs(absl::StatusCode::kNotFound));

  v1::ListVersionsRequest list;
  list.set_eval_set_id("set1");
  list.set_tagged_only(true);
  ASSERT_OK_AND_ASSIGN(auto versions, logic_->ListVersions(kAlpha, list));
  ASSERT_EQ(versions.versions_size(), 1);
  EXPECT_EQ(versions.versions(0).version(), 2);

  v1::UntagVersionRequest untag;
  untag.set_eval_set_id("set1");
  untag.set_tag("prod");
  ASSERT_OK_AND_ASSIGN(auto removed, logic_->UntagVersion(kAlpha, untag));
  EXPECT_EQ(removed.previous_version(), 2);
  EXPECT_THAT(logic_->UntagVersion(kAlpha, untag), StatusIs(absl::StatusCode::kNotFound));
  untag.set_allow_missing(true);
  EXPECT_OK(logic_->UntagVersion(kAlpha, untag));
}

TEST_F(EvalSetDbTest, ResultsAreIdempotentPerRunAndCaseAndFrozenAfterCompletion) {
  Add({MakeCase("a", "1", "t1"), MakeCase("b", "2", "t1"), MakeCase("c", "3", "t2")});
  StartRun("r1", "model-x + prompt@v1", 1);
  // Creating the same run again returns it; other content is ALREADY_EXISTS.
  v1::CreateRunRequest repeat;
  repeat.mutable_run()->set_run_id("r1");
  repeat.mutable_run()->set_eval_set_id("set1");
  repeat.mutable_run()->set_candidate_label("model-x + prompt@v1");
  repeat.mutable_version()->set_number(1);
  ASSERT_OK_AND_ASSIGN(auto existing, logic_->CreateRun(kAlpha, repeat));
  EXPECT_EQ(existing.run().version(), 1);
  repeat.mutable_run()->set_candidate_label("other");
  EXPECT_THAT(logic_->CreateRun(kAlpha, repeat), StatusIs(absl::StatusCode::kAlreadyExists));

  auto first = Record("r1", {{"a", v1::VERDICT_PASS}, {"zzz", v1::VERDICT_PASS}});
  EXPECT_EQ(first.results(0).outcome(), ITEM_OUTCOME_ACCEPTED);
  EXPECT_EQ(first.results(1).outcome(), ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(first.results(1).field(), "case_id");
  auto again = Record("r1", {{"a", v1::VERDICT_PASS}});
  EXPECT_EQ(again.results(0).outcome(), ITEM_OUTCOME_DUPLICATE);
  auto changed = Record("r1", {{"a", v1::VERDICT_FAIL}});
  EXPECT_EQ(changed.results(0).outcome(), ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(changed.results(0).code(), static_cast<int>(absl::StatusCode::kAlreadyExists));
  auto overwritten = Record("r1", {{"a", v1::VERDICT_FAIL}}, /*overwrite=*/true);
  EXPECT_EQ(overwritten.results(0).outcome(), ITEM_OUTCOME_ACCEPTED);
  Record("r1", {{"b", v1::VERDICT_PASS}});

  // Missing results block require_all_results; without it, they are counted as missing.
  EXPECT_THAT(Complete("r1", true), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(auto done, Complete("r1"));
  EXPECT_EQ(done.run().state(), v1::RUN_STATE_COMPLETED);
  EXPECT_EQ(done.run().summary().overall().case_count(), 3);
  EXPECT_EQ(done.run().summary().overall().result_count(), 2);
  EXPECT_EQ(done.run().summary().overall().missing_count(), 1);
  EXPECT_DOUBLE_EQ(done.run().summary().overall().pass_rate(), 0.5);
  EXPECT_EQ(done.run().summary().themes_size(), 2);
  ASSERT_OK(Complete("r1"));  // completing again is a success

  // Frozen: identical items stay duplicates, anything else is refused.
  EXPECT_EQ(Record("r1", {{"b", v1::VERDICT_PASS}}).results(0).outcome(), ITEM_OUTCOME_DUPLICATE);
  auto late = Record("r1", {{"c", v1::VERDICT_PASS}});
  EXPECT_EQ(late.results(0).code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));

  v1::ListResultsRequest list;
  list.set_run_id("r1");
  list.add_verdicts(v1::VERDICT_FAIL);
  ASSERT_OK_AND_ASSIGN(auto failed, logic_->ListResults(kAlpha, list));
  ASSERT_EQ(failed.results_size(), 1);
  EXPECT_EQ(failed.results(0).case_id(), "a");
  EXPECT_EQ(failed.results(0).theme().theme_id(), "t1");
  EXPECT_EQ(failed.results(0).case_revision(), 1);
}

TEST_F(EvalSetDbTest, CompareRunsAcrossVersionsReportsThemesRegressionsAndNotes) {
  std::vector<v1::Case> cases;
  for (int i = 0; i < 6; ++i) {
    cases.push_back(
        MakeCase(absl::StrCat("c", i), absl::StrCat("question ", i), i < 4 ? "cite" : "math"));
  }
  Add(cases);  // v1
  StartRun("base", "model@v1", 1);
  Record("base", {{"c0", v1::VERDICT_FAIL},
                  {"c1", v1::VERDICT_FAIL},
                  {"c2", v1::VERDICT_PASS},
                  {"c3", v1::VERDICT_FAIL},
                  {"c4", v1::VERDICT_PASS},
                  {"c5", v1::VERDICT_PASS}});
  ASSERT_OK(Complete("base"));
  Add({MakeCase("c9", "tool call", "tools")});  // v2
  StartRun("cand", "model@v2", 2);
  Record("cand", {{"c0", v1::VERDICT_PASS},
                  {"c1", v1::VERDICT_PASS},
                  {"c2", v1::VERDICT_PASS},
                  {"c3", v1::VERDICT_FAIL},
                  {"c4", v1::VERDICT_PASS},
                  {"c5", v1::VERDICT_ERROR},
                  {"c9", v1::VERDICT_PASS}});

  v1::CompareRunsRequest request;
  request.set_baseline_run_id("base");
  request.set_candidate_run_id("cand");
  EXPECT_THAT(logic_->CompareRuns(kAlpha, request),
              StatusIs(absl::StatusCode::kFailedPrecondition));  // candidate still running
  request.set_allow_incomplete(true);
  request.set_release_notes_min_cases(1);
  ASSERT_OK_AND_ASSIGN(auto r, logic_->CompareRuns(kAlpha, request));
  EXPECT_TRUE(r.incomplete());
  EXPECT_FALSE(r.same_version());
  EXPECT_EQ(r.compared_case_count(), 6);
  EXPECT_EQ(r.candidate().only_in_this_run_count(), 1);
  EXPECT_EQ(r.regression_count(), 1);
  ASSERT_EQ(r.regressions_size(), 1);
  EXPECT_EQ(r.regressions(0).case_id(), "c5");
  EXPECT_EQ(r.regressions(0).input_snippet(), "question 5");
  EXPECT_EQ(r.regressions(0).candidate_output_snippet(), "timeout");
  EXPECT_EQ(r.regressions(0).baseline_output_snippet(), "output of c5");
  EXPECT_EQ(r.fix_count(), 2);
  EXPECT_THAT(r.release_notes(),
              HasSubstr("- Improved on *cite theme*: 25% → 75% (+50 pts, 4 cases)"));
  EXPECT_THAT(r.release_notes(),
              HasSubstr("- Regressed on *math theme*: 100% → 50% (-50 pts, 2 cases)"));
  EXPECT_THAT(r.release_notes(), HasSubstr("- New: *tools theme*: 100% (1 case, not in baseline)"));
  EXPECT_THAT(r.release_notes(), HasSubstr("(v1 → v2)"));

  request.set_candidate_run_id("base");
  EXPECT_THAT(logic_->CompareRuns(kAlpha, request), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(EvalSetDbTest, AnotherProjectsIdsAreNotFound) {
  Add({MakeCase("a", "1")});
  StartRun("r1", "m", 1);
  v1::GetEvalSetRequest get;
  get.set_eval_set_id("set1");
  EXPECT_THAT(logic_->GetEvalSet(kBeta, get), StatusIs(absl::StatusCode::kNotFound));
  v1::AddCasesRequest add;
  add.set_eval_set_id("set1");
  *add.add_cases() = MakeCase("x", "x");
  EXPECT_THAT(logic_->AddCases(kBeta, add), StatusIs(absl::StatusCode::kNotFound));
  v1::GetRunRequest run;
  run.set_run_id("r1");
  EXPECT_THAT(logic_->GetRun(kBeta, run), StatusIs(absl::StatusCode::kNotFound));
  v1::RecordResultsRequest record;
  record.set_run_id("r1");
  record.add_results()->set_case_id("a");
  record.mutable_results(0)->set_verdict(v1::VERDICT_PASS);
  EXPECT_THAT(logic_->RecordResults(kBeta, record), StatusIs(absl::StatusCode::kNotFound));
  v1::ListEvalSetsRequest list;
  ASSERT_OK_AND_ASSIGN(auto sets, logic_->ListEvalSets(kBeta, list));
  EXPECT_EQ(sets.eval_sets_size(), 0);
  v1::FindNearestCasesRequest nearest;
  nearest.add_texts("1");
  nearest.add_eval_set_ids("set1");
  EXPECT_THAT(logic_->FindNearestCases(kBeta, nearest), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(EvalSetDbTest, ArchivedSetIsReadOnlyUntilUnarchived) {
  Add({MakeCase("a", "1")});
  v1::ArchiveEvalSetRequest archive;
  archive.set_eval_set_id("set1");
  archive.set_etag("e999");
  EXPECT_THAT(logic_->ArchiveEvalSet(kAlpha, archive), StatusIs(absl::StatusCode::kAborted));
  archive.clear_etag();
  ASSERT_OK_AND_ASSIGN(auto archived, logic_->ArchiveEvalSet(kAlpha, archive));
  EXPECT_EQ(archived.eval_set().state(), v1::EVAL_SET_STATE_ARCHIVED);
  v1::AddCasesRequest add;
  add.set_eval_set_id("set1");
  *add.add_cases() = MakeCase("b", "2");
  EXPECT_THAT(logic_->AddCases(kAlpha, add), StatusIs(absl::StatusCode::kFailedPrecondition));
  v1::CreateRunRequest run;
  run.mutable_run()->set_eval_set_id("set1");
  run.mutable_run()->set_candidate_label("m");
  EXPECT_THAT(logic_->CreateRun(kAlpha, run), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(logic_->GetCase(kAlpha, [] {
    v1::GetCaseRequest r;
    r.set_eval_set_id("set1");
    r.set_case_id("a");
    return r;
  }()));
  v1::UnarchiveEvalSetRequest unarchive;
  unarchive.set_eval_set_id("set1");
  unarchive.set_etag(archived.eval_set().etag());
  ASSERT_OK(logic_->UnarchiveEvalSet(kAlpha, unarchive));
  EXPECT_OK(logic_->AddCases(kAlpha, add));
}

TEST_F(EvalSetDbTest, ExportDataMatchesItsTrailerAndRecordsTheVersion) {
  Add({MakeCase("a", "1"), MakeCase("b", "2"), MakeCase("c", "3"), MakeCase("d", "4")});
  v1::ExportEvalSetRequest request;
  request.set_eval_set_id("set1");
  request.set_format(v1::EXPORT_FORMAT_FLYWHEEL_JSONL);
  ASSERT_OK_AND_ASSIGN(auto source, logic_->ExportEvalSet(kAlpha, request, ""));
  std::string data;
  v1::ExportTrailer trailer;
  v1::ExportHeader header;
  bool more = true;
  while (more) {
    std::vector<v1::ExportEvalSetResponse> batch;
    ASSERT_OK_AND_ASSIGN(more, source->Next(&batch));
    for (const auto& m : batch) {
      if (m.has_header()) header = m.header();
      data += m.data();
      if (m.has_trailer()) trailer = m.trailer();
    }
  }
  EXPECT_EQ(header.version(), 1);
  EXPECT_EQ(header.case_count(), 4);
  EXPECT_EQ(header.file_name(), "set1@v1.flywheel.jsonl");
  EXPECT_EQ(trailer.record_count(), 5);  // header line + 4 cases
  EXPECT_EQ(trailer.byte_count(), static_cast<int64_t>(data.size()));
  EXPECT_EQ(trailer.data_sha256(), Sha256Digest(data));
  EXPECT_THAT(data.substr(0, data.find('\n')), HasSubstr("\"version\":1"));
  // DPO needs capture, which this logic has none of.
  request.set_format(v1::EXPORT_FORMAT_DPO_PAIRS);
  EXPECT_THAT(logic_->ExportEvalSet(kAlpha, request, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(EvalSetDbTest, FindNearestCasesRanksTheMostSimilarCaseFirst) {
  Add({MakeCase("a", "How do I reset my password?", "auth"),
       MakeCase("b", "What is the refund policy for annual plans?", "billing"),
       MakeCase("c", "Export my invoices as CSV", "billing")});
  v1::FindNearestCasesRequest request;
  request.add_texts("password reset does not work");
  request.add_texts("refund for my annual plan");
  request.set_k(2);
  ASSERT_OK_AND_ASSIGN(auto response, logic_->FindNearestCases(kAlpha, request));
  ASSERT_EQ(response.results_size(), 2);
  ASSERT_EQ(response.results(0).matches_size(), 2);
  EXPECT_EQ(response.results(0).matches(0).case_id(), "a");
  EXPECT_EQ(response.results(0).matches(0).theme().theme_id(), "auth");
  EXPECT_EQ(response.results(1).matches(0).case_id(), "b");
  EXPECT_GT(response.results(1).matches(0).similarity(),
            response.results(1).matches(1).similarity());
  EXPECT_EQ(response.embedder(), kEmbedderName);
  request.set_min_similarity(0.99);
  ASSERT_OK_AND_ASSIGN(auto strict, logic_->FindNearestCases(kAlpha, request));
  EXPECT_EQ(strict.results(0).matches_size(), 0);
  // After a retirement the cached index of the old version is not used.
  v1::RetireCasesRequest retire;
  retire.set_eval_set_id("set1");
  retire.add_case_ids("a");
  ASSERT_OK(logic_->RetireCases(kAlpha, retire));
  request.set_min_similarity(0);
  ASSERT_OK_AND_ASSIGN(auto after, logic_->FindNearestCases(kAlpha, request));
  for (const auto& m : after.results(0).matches()) EXPECT_NE(m.case_id(), "a");
}

TEST_F(EvalSetDbTest, ConcurrentWritersGetDenseVersionsWithoutLosingCases) {
  constexpr int kThreads = 4;
  constexpr int kCallsPerThread = 5;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        v1::AddCasesRequest request;
        request.set_eval_set_id("set1");
        *request.add_cases() = MakeCase(absl::StrCat("t", t, "-", i), absl::StrCat("q", t, i));
        *request.add_cases() = MakeCase(absl::StrCat("t", t, "-", i, "b"), "second");
        if (!logic_->AddCases(kAlpha, request).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  v1::ListVersionsRequest list;
  list.set_eval_set_id("set1");
  list.set_page_size(1000);
  ASSERT_OK_AND_ASSIGN(auto versions, logic_->ListVersions(kAlpha, list));
  ASSERT_EQ(versions.versions_size(), kThreads * kCallsPerThread);
  for (int i = 0; i < versions.versions_size(); ++i) {
    // Newest first, dense, each version two cases larger than the one before.
    EXPECT_EQ(versions.versions(i).version(), kThreads * kCallsPerThread - i);
    EXPECT_EQ(versions.versions(i).case_count(), 2 * (kThreads * kCallsPerThread - i));
  }
  EXPECT_EQ(Snapshot(kThreads * kCallsPerThread).size(), 2u * kThreads * kCallsPerThread);
}

TEST_F(EvalSetDbTest, SetSchemasRejectNonConformingCasesPerItem) {
  v1::UpdateEvalSetRequest update;
  update.mutable_eval_set()->set_eval_set_id("set1");
  google::protobuf::Struct schema;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"type":"object","required":["answer"],"properties":{"answer":
                     {"type":"string","maxLength":10}}})",
                  update.mutable_eval_set()->mutable_expected_output_schema())
                  .ok());
  update.mutable_update_mask()->add_paths("expected_output_schema");
  ASSERT_OK_AND_ASSIGN(auto updated, logic_->UpdateEvalSet(kAlpha, update));
  EXPECT_EQ(updated.eval_set().latest_version(), 0);  // no version for a set field change
  // A stale etag is refused; an unsupported keyword names the field.
  update.mutable_eval_set()->set_etag("e1");
  EXPECT_THAT(logic_->UpdateEvalSet(kAlpha, update), StatusIs(absl::StatusCode::kAborted));
  update.mutable_eval_set()->set_etag(updated.eval_set().etag());
  (*update.mutable_eval_set()->mutable_expected_output_schema()->mutable_fields())["format"]
      .set_string_value("email");
  EXPECT_THAT(logic_->UpdateEvalSet(kAlpha, update), StatusIs(absl::StatusCode::kInvalidArgument));

  v1::Case good = MakeCase("good", "q");
  good.set_expected_output(R"({"answer":"42"})");
  v1::Case long_answer = MakeCase("long", "q");
  long_answer.set_expected_output(R"({"answer":"far too long an answer"})");
  v1::Case not_json = MakeCase("plain", "q");
  v1::AddCasesResponse added = Add({good, long_answer, not_json});
  EXPECT_EQ(added.results(0).outcome(), ITEM_OUTCOME_ACCEPTED);
  EXPECT_EQ(added.results(1).outcome(), ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(added.results(1).field(), "expected_output");
  EXPECT_EQ(added.results(1).code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(added.results(2).field(), "expected_output");
  EXPECT_EQ(added.version(), 1);
  EXPECT_EQ(Version(1).case_count(), 1);
}

TEST_F(EvalSetDbTest, ListRunsFiltersAndPagesNewestFirst) {
  Add({MakeCase("a", "1")});
  for (int i = 0; i < 5; ++i) StartRun(absl::StrCat("r", i), i % 2 ? "odd" : "even", 1);
  ASSERT_OK(Complete("r0"));
  v1::ListRunsRequest request;
  request.set_page_size(2);
  std::vector<std::string> ids;
  do {
    ASSERT_OK_AND_ASSIGN(auto page, logic_->ListRuns(kAlpha, request));
    for (const auto& run : page.runs()) {
      ids.push_back(run.run_id());
      EXPECT_EQ(run.summary().themes_size(), 0);  // BASIC view
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(ids, (std::vector<std::string>{"r4", "r3", "r2", "r1", "r0"}));
  v1::ListRunsRequest even;
  even.set_candidate_label("even");
  even.add_states(v1::RUN_STATE_RUNNING);
  ASSERT_OK_AND_ASSIGN(auto running_even, logic_->ListRuns(kAlpha, even));
  ASSERT_EQ(running_even.runs_size(), 2);
  EXPECT_EQ(running_even.runs(0).run_id(), "r4");
  EXPECT_EQ(running_even.runs(1).run_id(), "r2");
  v1::ListRunsRequest unknown;
  unknown.set_eval_set_id("no-such-set");
  ASSERT_OK_AND_ASSIGN(auto none, logic_->ListRuns(kAlpha, unknown));
  EXPECT_EQ(none.runs_size(), 0);
}

}  // namespace
}  // namespace flywheel::evalset
