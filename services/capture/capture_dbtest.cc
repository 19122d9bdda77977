// Capture logic, labeler and Postgres repository against a real throwaway Postgres.
#include <gtest/gtest.h>

#include <atomic>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status/status_matchers.h"
#include "services/capture/capture_logic.h"
#include "services/capture/labeler.h"
#include "services/capture/labeling.h"
#include "services/capture/pg_capture_repository.h"
#include "tests/pg/test_database.h"

namespace flywheel::capture {
namespace {

using ::flywheel::testing::StatusIs;
using ::flywheel::testing::TestDatabase;

v1::Trace MakeTrace(const std::string& id, const std::string& session, absl::Time start,
                    const std::string& prompt = "How do I reset my password?") {
  v1::Trace trace;
  trace.set_trace_id(id);
  trace.set_session_id(session);
  trace.set_user_id("user-1");
  trace.set_feature_area("support");
  trace.set_model("gpt-test");
  trace.mutable_input()->set_prompt(prompt);
  trace.set_output("Open settings, choose Security, then Reset password.");
  *trace.mutable_start_time() = ToProto(start);
  *trace.mutable_latency() = ToProto(absl::Seconds(2));
  return trace;
}

v1::Signal Thumb(const std::string& event, const std::string& trace_id, v1::Thumb thumb,
                 absl::Time when, const std::string& user = "user-1") {
  v1::Signal signal;
  signal.set_event_id(event);
  signal.set_trace_id(trace_id);
  signal.set_user_id(user);
  *signal.mutable_occur_time() = ToProto(when);
  signal.mutable_explicit_feedback()->set_thumb(thumb);
  return signal;
}

class CaptureDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(db_, TestDatabase::Create());
    pool_ = std::make_unique<db::ConnectionPool>(db::PoolOptions{db_->conninfo(), 8});
    repository_ = std::make_unique<PgCaptureRepository>(pool_.get(), &logger_);
    logic_ = std::make_unique<CaptureLogic>(repository_.get());
    labeler_ = std::make_unique<Labeler>(repository_.get(), &logger_);
    now_ = absl::Now();
  }

  CaptureLogic::IngestOutcome Write(const std::string& project, std::vector<ItemRef> items,
                                    bool public_key = false) {
    absl::StatusOr<CaptureLogic::IngestOutcome> outcome =
        logic_->Ingest(Writer{project, public_key}, items);
    EXPECT_OK(outcome);
    return outcome.ok() ? *outcome : CaptureLogic::IngestOutcome{};
  }
  common::v1::ItemOutcome WriteTrace(const v1::Trace& trace, const std::string& project = "p1") {
    return Write(project, {ItemRef{&trace, nullptr}}).results[0].result().outcome();
  }
  common::v1::ItemOutcome WriteSignal(const v1::Signal& signal, const std::string& project = "p1") {
    return Write(project, {ItemRef{nullptr, &signal}}).results[0].result().outcome();
  }
  LabelPassStats Label() {
    absl::StatusOr<LabelPassStats> stats = labeler_->RunOnce(absl::Now());
    EXPECT_OK(stats);
    return stats.ok() ? *stats : LabelPassStats{};
  }
  v1::GetTraceResponse Get(const std::string& id, const std::string& project = "p1") {
    v1::GetTraceRequest request;
    request.set_trace_id(id);
    absl::StatusOr<v1::GetTraceResponse> response = logic_->GetTrace(project, request);
    EXPECT_OK(response);
    return response.ok() ? *response : v1::GetTraceResponse{};
  }
  v1::ReadFlaggedFeedResponse Feed(int64_t after, const std::string& project = "p1") {
    v1::ReadFlaggedFeedRequest request;
    request.set_after_sequence(after);
    request.set_max_items(1000);
    absl::StatusOr<v1::ReadFlaggedFeedResponse> response =
        logic_->ReadFlaggedFeed(project, request);
    EXPECT_OK(response);
    return response.ok() ? *response : v1::ReadFlaggedFeedResponse{};
  }

  Logger logger_{"test", Logger::Level::kError};
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<db::ConnectionPool> pool_;
  std::unique_ptr<PgCaptureRepository> repository_;
  std::unique_ptr<CaptureLogic> logic_;
  std::unique_ptr<Labeler> labeler_;
  absl::Time now_;
};

TEST_F(CaptureDbTest, SameTraceTwiceIsDuplicateAndDifferentContentIsAlreadyExists) {
  const v1::Trace trace = MakeTrace("t1", "s1", now_ - absl::Minutes(1));
  EXPECT_EQ(WriteTrace(trace), common::v1::ITEM_OUTCOME_ACCEPTED);
  EXPECT_EQ(WriteTrace(trace), common::v1::ITEM_OUTCOME_DUPLICATE);
  v1::Trace changed = trace;
  changed.set_output("something else");
  CaptureLogic::IngestOutcome outcome = Write("p1", {ItemRef{&changed, nullptr}});
  EXPECT_EQ(outcome.results[0].result().outcome(), common::v1::ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(outcome.results[0].result().code(), static_cast<int>(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(Get("t1").trace().output(), trace.output());
}

TEST_F(CaptureDbTest, RepeatedIdsInOneBatchAreDuplicateOrAlreadyExistsInOrder) {
  const v1::Trace first = MakeTrace("t1", "s1", now_ - absl::Minutes(1));
  v1::Trace different = first;
  different.set_output("changed");
  CaptureLogic::IngestOutcome outcome = Write(
      "p1", {ItemRef{&first, nullptr}, ItemRef{&first, nullptr}, ItemRef{&different, nullptr}});
  EXPECT_EQ(outcome.results[0].result().outcome(), common::v1::ITEM_OUTCOME_ACCEPTED);
  EXPECT_EQ(outcome.results[1].result().outcome(), common::v1::ITEM_OUTCOME_DUPLICATE);
  EXPECT_EQ(outcome.results[2].result().outcome(), common::v1::ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(outcome.counts.accepted(), 1);
  EXPECT_EQ(outcome.counts.duplicate(), 1);
  EXPECT_EQ(outcome.counts.rejected(), 1);
}

TEST_F(CaptureDbTest, BadItemIsRejectedAloneAndTheRestOfTheBatchIsStored) {
  const v1::Trace good = MakeTrace("good", "", now_ - absl::Minutes(1));
  v1::Trace bad = MakeTrace("bad", "", now_ + absl::Hours(1));  // far in the future
  CaptureLogic::IngestOutcome outcome =
      Write("p1", {ItemRef{&bad, nullptr}, ItemRef{&good, nullptr}});
  EXPECT_EQ(outcome.results[0].result().outcome(), common::v1::ITEM_OUTCOME_REJECTED);
  EXPECT_EQ(outcome.results[0].result().code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(outcome.results[0].result().field(), "start_time");
  EXPECT_EQ(outcome.results[1].result().outcome(), common::v1::ITEM_OUTCOME_ACCEPTED);
  v1::GetTraceRequest request;
  request.set_trace_id("bad");
  EXPECT_THAT(logic_->GetTrace("p1", request), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(CaptureDbTest, SignalBeforeItsTraceIsKeptAndJoinedWhenTheTraceArrives) {
  const v1::Signal down = Thumb("e1", "t1", v1::THUMB_DOWN, now_ - absl::Seconds(30));
  CaptureLogic::IngestOutcome early = Write("p1", {ItemRef{nullptr, &down}});
  EXPECT_EQ(early.results[0].result().outcome(), common::v1::ITEM_OUTCOME_ACCEPTED);
  EXPECT_FALSE(early.trace_received[0]);
  EXPECT_EQ(Label().traces_missing, 1);
  EXPECT_EQ(Feed(0).entries_size(), 0);

  EXPECT_EQ(WriteTrace(MakeTrace("t1", "s1", now_ - absl::Minutes(1))),
            common::v1::ITEM_OUTCOME_ACCEPTED);
  Label();
  const v1::GetTraceResponse trace = Get("t1");
  ASSERT_EQ(trace.signals_size(), 1);
  EXPECT_TRUE(trace.trace().label().flagged());
  EXPECT_NEAR(trace.trace().label().quality_score(), 0.2, 0.01);
  ASSERT_EQ(trace.trace().label().reasons_size(), 1);
  EXPECT_EQ(trace.trace().label().reasons(0).rule_id(), "thumbs_down");
  const v1::ReadFlaggedFeedResponse feed = Feed(0);
  ASSERT_EQ(feed.entries_size(), 1);
  EXPECT_EQ(feed.entries(0).sequence(), 1);
  EXPECT_EQ(feed.entries(0).trace_id(), "t1");
  EXPECT_EQ(feed.entries(0).trace().input_text(), "How do I reset my password?");
  EXPECT_EQ(trace.trace().label().feed_sequence(), 1);
}

TEST_F(CaptureDbTest, ChangedMindUnflagsTheTraceAndTheFeedSaysSo) {
  WriteTrace(MakeTrace("t1", "", now_ - absl::Minutes(5)));
  WriteSignal(Thumb("e1", "t1", v1::THUMB_DOWN, now_ - absl::Minutes(4)));
  Label();
  WriteSignal(Thumb("e2", "t1", v1::THUMB_UP, now_ - absl::Minutes(3)));
  Label();
  const v1::ReadFlaggedFeedResponse feed = Feed(0);
  ASSERT_EQ(feed.entries_size(), 2);
  EXPECT_EQ(feed.entries(0).entry_type(), v1::FLAGGED_FEED_ENTRY_TYPE_FLAGGED);
  EXPECT_EQ(feed.entries(1).entry_type(), v1::FLAGGED_FEED_ENTRY_TYPE_UNFLAGGED);
  EXPECT_FALSE(feed.entries(1).has_trace());
  EXPECT_EQ(feed.high_water_mark(), 2);
  EXPECT_FALSE(Get("t1").trace().label().flagged());
  EXPECT_EQ(Get("t1").trace().label().feed_sequence(), 2);
}

TEST_F(CaptureDbTest, SimilarNextInputMarksTheEarlierTraceRephrased) {
  WriteTrace(MakeTrace("t1", "s1", now_ - absl::Minutes(3), "how do I reset my password"));
  WriteTrace(MakeTrace("t2", "s1", now_ - absl::Minutes(2), "how can I reset my account password"));
  Label();
  const v1::GetTraceResponse first = Get("t1");
  bool rephrased = false;
  for (const auto& derived : first.derived_signals()) {
    if (derived.signal_kind() == v1::SIGNAL_KIND_DERIVED_REPHRASE) {
      rephrased = true;
      EXPECT_EQ(derived.rephrase().next_trace_id(), "t2");
      EXPECT_GE(derived.rephrase().similarity(), 0.7);
    }
  }
  EXPECT_TRUE(rephrased);
  EXPECT_TRUE(first.trace().label().flagged());
  EXPECT_FALSE(Get("t2").trace().label().flagged());
}

TEST_F(CaptureDbTest, IdleSessionIsSweptAndItsLastTraceAbandoned) {
  WriteTrace(MakeTrace("t1", "s1", now_ - absl::Minutes(1)));
  Label();
  EXPECT_EQ(Get("t1").derived_signals_size(), 0);  // the session is still active
  ASSERT_OK_AND_ASSIGN(int early, repository_->SweepIdleSessions(absl::Minutes(30), 100));
  EXPECT_EQ(early, 0);
  {
    // An hour passes without activity.
    pqxx::connection connection(db_->conninfo());
    pqxx::work tx(connection);
    tx.exec(
        "UPDATE capture.session_activity SET last_activity = last_activity - "
        "interval '1 hour'");
    tx.commit();
  }
  ASSERT_OK_AND_ASSIGN(int swept, repository_->SweepIdleSessions(absl::Minutes(30), 100));
  EXPECT_EQ(swept, 1);
  Label();
  const v1::GetTraceResponse trace = Get("t1");
  ASSERT_EQ(trace.derived_signals_size(), 1);
  EXPECT_EQ(trace.derived_signals(0).signal_kind(), v1::SIGNAL_KIND_DERIVED_ABANDONMENT);
  EXPECT_EQ(trace.derived_signals(0).abandonment().session_turns(), 1);
  EXPECT_NEAR(trace.trace().label().quality_score(), 0.4, 0.01);
  EXPECT_FALSE(trace.trace().label().flagged());
}

TEST_F(CaptureDbTest, AnotherProjectsTraceIsNotFoundAndItsIdIsADifferentTrace) {
  WriteTrace(MakeTrace("t1", "", now_ - absl::Minutes(1)), "alpha");
  v1::GetTraceRequest request;
  request.set_trace_id("t1");
  EXPECT_THAT(logic_->GetTrace("beta", request), StatusIs(absl::StatusCode::kNotFound));
  v1::Trace other = MakeTrace("t1", "", now_ - absl::Minutes(1));
  other.set_output("beta's own answer");
  EXPECT_EQ(WriteTrace(other, "beta"), common::v1::ITEM_OUTCOME_ACCEPTED);
  EXPECT_EQ(Get("t1", "alpha").trace().output(),
            "Open settings, choose Security, then Reset password.");
  EXPECT_EQ(Get("t1", "beta").trace().output(), "beta's own answer");
}

TEST_F(CaptureDbTest, PublicKeysWriteOnlyUserTraceSignals) {
  const v1::Trace trace = MakeTrace("t1", "s1", now_ - absl::Minutes(1));
  CaptureLogic::IngestOutcome traced = Write("p1", {ItemRef{&trace, nullptr}}, true);
  EXPECT_EQ(traced.results[0].result().code(),
            static_cast<int>(absl::StatusCode::kPermissionDenied));
  v1::Signal session_signal;
  session_signal.set_event_id("e1");
  session_signal.set_session_id("s1");
  session_signal.set_user_id("user-1");
  session_signal.mutable_outcome()->set_name("resolved");
  session_signal.mutable_outcome()->set_status(v1::OUTCOME_STATUS_SUCCESS);
  EXPECT_EQ(Write("p1", {ItemRef{nullptr, &session_signal}}, true).results[0].result().code(),
            static_cast<int>(absl::StatusCode::kPermissionDenied));
  const v1::Signal thumb = Thumb("e2", "t1", v1::THUMB_UP, now_);
  EXPECT_EQ(Write("p1", {ItemRef{nullptr, &thumb}}, true).results[0].result().outcome(),
            common::v1::ITEM_OUTCOME_ACCEPTED);
}

TEST_F(CaptureDbTest, UserOverTheFeedbackRateLimitIsRejectedPerItem) {
  CaptureLogic limited(repository_.get(),
                       CaptureOptions{absl::Seconds(30), absl::Hours(24 * 90), 3});
  std::vector<v1::Signal> signals;
  for (int i = 0; i < 5; ++i) {
    signals.push_back(
        Thumb(absl::StrCat("e", i), absl::StrCat("t", i), v1::THUMB_DOWN, now_, "loud"));
  }
  signals.push_back(Thumb("quiet", "t0", v1::THUMB_UP, now_, "quiet-user"));
  std::vector<ItemRef> items;
  for (const auto& signal : signals) items.push_back(ItemRef{nullptr, &signal});
  ASSERT_OK_AND_ASSIGN(CaptureLogic::IngestOutcome outcome, limited.Ingest(Writer{"p1"}, items));
  EXPECT_EQ(outcome.counts.accepted(), 4);  // three from "loud", one from "quiet-user"
  EXPECT_EQ(outcome.results[3].result().code(),
            static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(outcome.results[3].result().field(), "user_id");
  EXPECT_EQ(outcome.results[5].result().outcome(), common::v1::ITEM_OUTCOME_ACCEPTED);
  // Retries come back DUPLICATE and give their token back, so they never use up the allowance
  // ("quiet-user" has 2 tokens left; without refunds the third retry would be rejected).
  for (int attempt = 0; attempt < 5; ++attempt) {
    ASSERT_OK_AND_ASSIGN(CaptureLogic::IngestOutcome retry,
                         limited.Ingest(Writer{"p1"}, {items[5], items[5]}));
    EXPECT_EQ(retry.counts.duplicate(), 2) << "attempt " << attempt;
  }
}

TEST_F(CaptureDbTest, PersonalDataIsRedactedBeforeStorageAndCounted) {
  v1::Trace trace = MakeTrace("t1", "", now_ - absl::Minutes(1));
  trace.set_output("Write to jane.doe@example.com or call +1 415 555 0100.");
  CaptureLogic::IngestOutcome outcome = Write("p1", {ItemRef{&trace, nullptr}});
  EXPECT_EQ(outcome.results[0].redactions().by_detector().at("email"), 1);
  EXPECT_GE(outcome.counts.redactions(), 2);
  const std::string stored = Get("t1").trace().output();
  EXPECT_EQ(stored.find("jane.doe"), std::string::npos);
  EXPECT_NE(stored.find("[REDACTED:email]"), std::string::npos);
  // Nothing of the raw text reached the table either.
  pqxx::connection connection(db_->conninfo());
  pqxx::work tx(connection);
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM capture.traces WHERE position('jane.doe' in "
                     "encode(payload, 'escape')) > 0")[0]
                .as<int>(),
            0);
}

TEST_F(CaptureDbTest, ListTracesPagesWithoutGapsAndFiltersFlagged) {
  for (int i = 0; i < 5; ++i) {
    WriteTrace(MakeTrace(absl::StrCat("t", i), "", now_ - absl::Minutes(10 - i)));
  }
  WriteSignal(Thumb("e1", "t3", v1::THUMB_DOWN, now_));
  Label();
  v1::ListTracesRequest request;
  request.set_page_size(2);
  std::vector<std::string> seen;
  for (int page = 0; page < 10; ++page) {
    ASSERT_OK_AND_ASSIGN(v1::ListTracesResponse response, logic_->ListTraces("p1", request));
    for (const auto& trace : response.traces()) seen.push_back(trace.trace_id());
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"t4", "t3", "t2", "t1", "t0"}));

  v1::ListTracesRequest flagged;
  flagged.set_flagged_only(true);
  ASSERT_OK_AND_ASSIGN(v1::ListTracesResponse only, logic_->ListTraces("p1", flagged));
  ASSERT_EQ(only.traces_size(), 1);
  EXPECT_EQ(only.traces(0).trace_id(), "t3");

  // A token only works with the filters it was issued for.
  v1::ListTracesRequest first;
  first.set_page_size(1);
  ASSERT_OK_AND_ASSIGN(v1::ListTracesResponse page, logic_->ListTraces("p1", first));
  flagged.set_page_token(page.next_page_token());
  EXPECT_THAT(logic_->ListTraces("p1", flagged), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(CaptureDbTest, SessionSignalsAreListedWithTheirTraces) {
  WriteTrace(MakeTrace("t1", "s1", now_ - absl::Minutes(3)));
  WriteSignal(Thumb("e1", "t1", v1::THUMB_UP, now_ - absl::Minutes(2)));
  v1::Signal resolved;
  resolved.set_event_id("e2");
  resolved.set_session_id("s1");
  resolved.mutable_outcome()->set_name("ticket_resolved");
  resolved.mutable_outcome()->set_status(v1::OUTCOME_STATUS_SUCCESS);
  *resolved.mutable_occur_time() = ToProto(now_ - absl::Minutes(1));
  WriteSignal(resolved);
  v1::ListSignalsRequest request;
  request.set_session_id("s1");
  ASSERT_OK_AND_ASSIGN(v1::ListSignalsResponse response, logic_->ListSignals("p1", request));
  ASSERT_EQ(response.signals_size(), 2);
  EXPECT_EQ(response.signals(0).event_id(), "e1");
  EXPECT_EQ(response.signals(1).signal_kind(), v1::SIGNAL_KIND_OUTCOME);
  Label();
  // The session-level success reaches the trace's label, scaled by session_signal_factor.
  EXPECT_GT(Get("t1").trace().label().quality_score(), 0.7);
}

// Writers and two labelers run concurrently while a reader follows the feed: every flagged
// trace appears exactly once, sequences are dense, and the reader never sees a gap.
TEST_F(CaptureDbTest, FeedIsDenseAndGapFreeUnderConcurrentWritersAndLabelers) {
  constexpr int kWriters = 4;
  constexpr int kTracesPerWriter = 60;
  std::atomic<bool> writing{true};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kTracesPerWriter; i += 3) {
        std::vector<v1::Trace> traces;
        std::vector<v1::Signal> signals;
        for (int k = i; k < i + 3; ++k) {
          const std::string id = absl::StrCat("w", w, "-", k);
          traces.push_back(MakeTrace(id, "", now_ - absl::Minutes(5)));
          // One user per trace: a single user's 240 identical thumbs would be down-weighted.
          signals.push_back(Thumb(absl::StrCat("e-", id), id, v1::THUMB_DOWN, now_, id));
        }
        std::vector<ItemRef> items;
        for (const auto& trace : traces) items.push_back(ItemRef{&trace, nullptr});
        for (const auto& signal : signals) items.push_back(ItemRef{nullptr, &signal});
        absl::StatusOr<CaptureLogic::IngestOutcome> outcome = logic_->Ingest(Writer{"p1"}, items);
        ASSERT_OK(outcome);
        EXPECT_EQ(outcome->counts.accepted(), 6) << outcome->results[3].DebugString();
      }
    });
  }
  Labeler second(repository_.get(), &logger_);
  auto label_loop = [&](Labeler* labeler) {
    while (writing.load()) {
      EXPECT_OK(labeler->RunOnce(absl::Now()));
    }
  };
  std::thread labeler_a(label_loop, labeler_.get());
  std::thread labeler_b(label_loop, &second);
  std::vector<int64_t> observed;
  std::thread reader([&] {
    int64_t after = 0;
    while (writing.load() || after < kWriters * kTracesPerWriter) {
      v1::ReadFlaggedFeedRequest request;
      request.set_after_sequence(after);
      request.set_max_items(50);
      absl::StatusOr<v1::ReadFlaggedFeedResponse> page = logic_->ReadFlaggedFeed("p1", request);
      ASSERT_OK(page);
      for (const auto& entry : page->entries()) {
        observed.push_back(entry.sequence());
        after = entry.sequence();
      }
      if (!writing.load() && page->entries_size() == 0) break;
    }
  });
  for (auto& thread : threads) thread.join();
  writing = false;
  labeler_a.join();
  labeler_b.join();
  Label();  // drain what is left
  reader.join();
  const v1::ReadFlaggedFeedResponse feed = Feed(0);
  ASSERT_EQ(feed.entries_size(), kWriters * kTracesPerWriter);
  std::set<std::string> traces;
  for (int i = 0; i < feed.entries_size(); ++i) {
    EXPECT_EQ(feed.entries(i).sequence(), i + 1);
    EXPECT_EQ(feed.entries(i).entry_type(), v1::FLAGGED_FEED_ENTRY_TYPE_FLAGGED);
    traces.insert(feed.entries(i).trace_id());
  }
  EXPECT_EQ(traces.size(), static_cast<size_t>(kWriters * kTracesPerWriter));
  for (size_t i = 0; i < observed.size(); ++i) {
    EXPECT_EQ(observed[i], static_cast<int64_t>(i + 1)) << "reader saw a gap";
  }
}

TEST_F(CaptureDbTest, RuleSetUpdateIsVersionedAndRelabelAppliesItToHistory) {
  WriteTrace(MakeTrace("t1", "", now_ - absl::Minutes(30)));
  v1::Signal rating;
  rating.set_event_id("e1");
  rating.set_trace_id("t1");
  rating.set_user_id("user-1");
  rating.mutable_explicit_feedback()->set_rating(3);
  *rating.mutable_occur_time() = ToProto(now_ - absl::Minutes(20));
  WriteSignal(rating);
  Label();
  EXPECT_FALSE(Get("t1").trace().label().flagged());

  v1::UpdateLabelRuleSetRequest update;
  update.set_base_version(1);
  update.mutable_update_mask()->add_paths("rules");
  *update.mutable_rule_set()->mutable_rules() = DefaultRuleSet().rules();
  v1::LabelRule* mid = update.mutable_rule_set()->add_rules();
  mid->set_rule_id("rating_mid");
  mid->mutable_match()->set_signal_kind(v1::SIGNAL_KIND_RATING);
  mid->mutable_match()->mutable_rating()->set_min(3);
  mid->mutable_match()->mutable_rating()->set_max(3);
  mid->set_vote(v1::LABEL_VOTE_FAILURE);
  mid->set_weight(5);
  ASSERT_OK_AND_ASSIGN(v1::LabelRuleSet v2, logic_->UpdateLabelRuleSet("p1", update));
  EXPECT_EQ(v2.version(), 2);
  EXPECT_EQ(v2.base_version(), 1);
  // Retrying the same update is safe; a different one on the old base is ABORTED.
  ASSERT_OK_AND_ASSIGN(v1::LabelRuleSet again, logic_->UpdateLabelRuleSet("p1", update));
  EXPECT_EQ(again.version(), 2);
  v1::UpdateLabelRuleSetRequest stale = update;
  stale.mutable_rule_set()->mutable_rules(0)->set_weight(9);
  EXPECT_THAT(logic_->UpdateLabelRuleSet("p1", stale), StatusIs(absl::StatusCode::kAborted));
  v1::UpdateLabelRuleSetRequest invalid = update;
  invalid.set_base_version(2);
  invalid.mutable_rule_set()->mutable_rules(0)->set_weight(0);
  EXPECT_THAT(logic_->UpdateLabelRuleSet("p1", invalid),
              StatusIs(absl::StatusCode::kInvalidArgument));
  v1::ListLabelRuleSetVersionsRequest list;
  ASSERT_OK_AND_ASSIGN(v1::ListLabelRuleSetVersionsResponse versions,
                       logic_->ListLabelRuleSetVersions("p1", list));
  ASSERT_EQ(versions.versions_size(), 2);
  EXPECT_TRUE(versions.versions(0).current());
  EXPECT_EQ(versions.versions(1).version(), 1);

  v1::RelabelRequest relabel;
  relabel.set_request_id("r1");
  *relabel.mutable_time_range()->mutable_start_time() = ToProto(now_ - absl::Hours(1));
  ASSERT_OK_AND_ASSIGN(v1::RelabelJob job, logic_->Relabel("p1", relabel));
  EXPECT_EQ(job.rule_set_version(), 2);
  ASSERT_OK_AND_ASSIGN(v1::RelabelJob same, logic_->Relabel("p1", relabel));
  EXPECT_EQ(same.job_id(), job.job_id());
  v1::RelabelRequest reused = relabel;
  reused.set_dry_run(true);
  EXPECT_THAT(logic_->Relabel("p1", reused), StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK(labeler_->RunRelabelSteps(absl::Now(), 10));
  ASSERT_OK_AND_ASSIGN(v1::RelabelJob done, logic_->GetRelabelJob("p1", job.job_id()));
  EXPECT_EQ(done.state(), v1::RELABEL_JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.traces_total(), 1);
  EXPECT_EQ(done.traces_processed(), 1);
  EXPECT_EQ(done.newly_flagged(), 1);
  const v1::GetTraceResponse relabeled = Get("t1");
  EXPECT_TRUE(relabeled.trace().label().flagged());
  EXPECT_EQ(relabeled.trace().label().rule_set_version(), 2);
  EXPECT_EQ(Feed(0).entries_size(), 1);
  // The raw signal is untouched by relabeling.
  ASSERT_EQ(relabeled.signals_size(), 1);
  EXPECT_EQ(relabeled.signals(0).explicit_feedback().rating(), 3);
}

TEST_F(CaptureDbTest, RedactionConfigChangesApplyToItemsReceivedAfterwards) {
  v1::UpdateRedactionConfigRequest update;
  update.mutable_update_mask()->add_paths("custom_patterns");
  update.mutable_update_mask()->add_paths("builtin_detectors");
  auto* pattern = update.mutable_config()->add_custom_patterns();
  pattern->set_name("ticket");
  pattern->set_pattern("TICKET-[0-9]{6}");
  pattern->set_enabled(true);
  auto* email = update.mutable_config()->add_builtin_detectors();
  email->set_detector(v1::BUILTIN_DETECTOR_EMAIL);
  email->set_enabled(false);
  update.set_expected_version(0);
  ASSERT_OK_AND_ASSIGN(v1::RedactionConfig config, logic_->UpdateRedactionConfig("p1", update));
  EXPECT_EQ(config.version(), 1);
  EXPECT_THAT(logic_->UpdateRedactionConfig("p1", update), StatusIs(absl::StatusCode::kAborted));
  v1::UpdateRedactionConfigRequest bad;
  bad.mutable_update_mask()->add_paths("custom_patterns");
  bad.mutable_config()->add_custom_patterns()->set_name("x");
  bad.mutable_config()->mutable_custom_patterns(0)->set_pattern("(unclosed");
  EXPECT_THAT(logic_->UpdateRedactionConfig("p1", bad),
              StatusIs(absl::StatusCode::kInvalidArgument));

  CaptureLogic fresh(repository_.get());  // a replica that has not cached the old settings
  v1::Trace trace = MakeTrace("t1", "", now_ - absl::Minutes(1));
  trace.set_output("See TICKET-123456, mail ops@example.com");
  ASSERT_OK_AND_ASSIGN(CaptureLogic::IngestOutcome outcome,
                       fresh.Ingest(Writer{"p1"}, {ItemRef{&trace, nullptr}}));
  EXPECT_EQ(outcome.results[0].redactions().by_detector().at("custom:ticket"), 1);
  const std::string stored = Get("t1").trace().output();
  EXPECT_EQ(stored.find("TICKET-123456"), std::string::npos);
  EXPECT_NE(stored.find("ops@example.com"), std::string::npos);  // e-mail detector disabled
}

TEST_F(CaptureDbTest, RegenerateChainYieldsPreferencePairsOnceTheSessionSettles) {
  for (int i = 0; i < 3; ++i) {
    v1::Trace attempt = MakeTrace(absl::StrCat("a", i), "s1", now_ - absl::Minutes(10 - i),
                                  "write a haiku about autumn");
    attempt.set_output(absl::StrCat("attempt ", i));
    WriteTrace(attempt);
  }
  Label();
  v1::ListPreferencePairsRequest request;
  ASSERT_OK_AND_ASSIGN(v1::ListPreferencePairsResponse before,
                       logic_->ListPreferencePairs("p1", request));
  EXPECT_EQ(before.pairs_size(), 0);                 // the chain has not settled yet
  EXPECT_TRUE(Get("a0").trace().label().flagged());  // retried: the first answer failed
  {
    pqxx::connection connection(db_->conninfo());
    pqxx::work tx(connection);
    tx.exec(
        "UPDATE capture.session_activity SET last_activity = last_activity - "
        "interval '1 hour'");
    tx.commit();
  }
  ASSERT_OK(repository_->SweepIdleSessions(absl::Minutes(30), 100));
  Label();
  ASSERT_OK_AND_ASSIGN(v1::ListPreferencePairsResponse pairs,
                       logic_->ListPreferencePairs("p1", request));
  ASSERT_EQ(pairs.pairs_size(), 2);
  std::set<std::string> rejected;
  for (const auto& pair : pairs.pairs()) {
    EXPECT_EQ(pair.chosen_trace_id(), "a2");
    EXPECT_EQ(pair.chosen_output(), "attempt 2");
    EXPECT_EQ(pair.prompt().prompt(), "write a haiku about autumn");
    rejected.insert(pair.rejected_trace_id());
  }
  EXPECT_EQ(rejected, (std::set<std::string>{"a0", "a1"}));
  // Labeling the session again builds no duplicates.
  ASSERT_OK(repository_->SweepIdleSessions(absl::Minutes(30), 100));
  Label();
  ASSERT_OK_AND_ASSIGN(v1::ListPreferencePairsResponse again,
                       logic_->ListPreferencePairs("p1", request));
  EXPECT_EQ(again.pairs_size(), 2);
}

TEST_F(CaptureDbTest, SurvivorshipAuditShowsRatersAreNotLikeEveryone) {
  // One long-tenure power user rates everything; four casual users never rate.
  v1::Trace old = MakeTrace("old", "", now_ - absl::Hours(24 * 60));
  old.set_user_id("power");
  WriteTrace(old);
  const char* kQuestions[] = {"sort a list in python",     "what is the capital of peru",
                              "explain tcp handshakes",    "best pizza dough recipe",
                              "how tall is mount everest", "translate hello to german"};
  for (int i = 0; i < 6; ++i) {
    // Unrelated questions: no retries or rephrases within the power user's sessions.
    v1::Trace trace = MakeTrace(absl::StrCat("p", i), absl::StrCat("ps", i / 2),
                                now_ - absl::Hours(2) + absl::Minutes(i), kQuestions[i]);
    trace.set_user_id("power");
    trace.set_feature_area("code");
    WriteTrace(trace);
    WriteSignal(Thumb(absl::StrCat("pe", i), trace.trace_id(), v1::THUMB_DOWN, now_, "power"));
  }
  for (int u = 0; u < 4; ++u) {
    v1::Trace trace = MakeTrace(absl::StrCat("c", u), absl::StrCat("cs", u), now_ - absl::Hours(1));
    trace.set_user_id(absl::StrCat("casual", u));
    WriteTrace(trace);
    v1::Signal edit;
    edit.set_event_id(absl::StrCat("ce", u));
    edit.set_trace_id(trace.trace_id());
    edit.mutable_implicit_signal()->mutable_edit()->set_edit_ratio(0.6);
    WriteSignal(edit);
  }
  Label();
  v1::GetSurvivorshipAuditRequest request;
  *request.mutable_time_range()->mutable_start_time() = ToProto(now_ - absl::Hours(24));
  *request.mutable_time_range()->mutable_end_time() = ToProto(now_ + absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(v1::SurvivorshipAudit audit, logic_->GetSurvivorshipAudit("p1", request));
  EXPECT_EQ(audit.traces(), 10);
  EXPECT_EQ(audit.users(), 5);
  EXPECT_EQ(audit.traces_with_explicit_feedback(), 6);
  EXPECT_NEAR(audit.explicit_feedback_rate(), 0.6, 1e-9);
  EXPECT_EQ(audit.thumbs_down(), 6);
  EXPECT_EQ(audit.sessions(), 7);
  EXPECT_EQ(audit.sessions_with_implicit_signal(), 4);  // the casual users' heavy edits
  EXPECT_EQ(audit.raters().users(), 1);
  EXPECT_EQ(audit.all_users().users(), 5);
  EXPECT_GT(audit.raters().median_tenure_days(), audit.all_users().median_tenure_days());
  ASSERT_GT(audit.skew_size(), 0);
  EXPECT_FALSE(audit.skew_summary().empty());
  request.mutable_time_range()->clear_end_time();
  EXPECT_THAT(logic_->GetSurvivorshipAudit("p1", request),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// --- Write paths: a batch goes through a lookup + COPY, a single item through one statement. ---

// Rows of one project as comparable text: the stored columns (not project or receive time), the
// distinct queued trace ids, and the session activity.
std::vector<std::string> StoredRows(const std::string& conninfo, const std::string& project) {
  pqxx::connection connection(conninfo);
  pqxx::work tx(connection);
  std::vector<std::string> rows;
  auto add = [&](const std::string& table, const std::string& sql) {
    for (const auto& row : tx.exec_params(sql, project)) {
      std::string line = table;
      for (const auto& field : row)
        line += "|" + (field.is_null() ? "NULL" : field.as<std::string>());
      rows.push_back(line);
    }
  };
  add("trace",
      "SELECT trace_id, session_id, user_id, feature_area, model, model_version, "
      "prompt_template_id, prompt_version, start_time, end_time, content_sha256, redactions, "
      "payload FROM capture.traces WHERE project_id = $1 ORDER BY trace_id");
  add("signal",
      "SELECT event_id, trace_id, session_id, user_id, signal_kind, actor, occur_time, value_key, "
      "content_sha256, redactions, payload FROM capture.signals WHERE project_id = $1 "
      "ORDER BY event_id");
  add("queued",
      "SELECT DISTINCT trace_id FROM capture.label_queue WHERE project_id = $1 ORDER BY 1");
  add("session",
      "SELECT session_id, last_trace_id, last_activity FROM capture.session_activity "
      "WHERE project_id = $1 ORDER BY session_id");
  return rows;
}

// Two sessions of traces, signals on traces, a rating, a comment with a tab, newline and
// backslash, a session-level signal, a trace with personal data to redact and one with
// backslashes in its text columns.
struct Scenario {
  std::vector<v1::Trace> traces;
  std::vector<v1::Signal> signals;
  std::vector<ItemRef> Items() const {
    std::vector<ItemRef> items;
    for (const auto& trace : traces) items.push_back(ItemRef{&trace, nullptr});
    for (const auto& signal : signals) items.push_back(ItemRef{nullptr, &signal});
    return items;
  }
};

Scenario MakeScenario(absl::Time now) {
  Scenario scenario;
  for (int k = 0; k < 6; ++k) {
    const std::string session = k < 4 ? "sa" : "sb";
    scenario.traces.push_back(MakeTrace(absl::StrCat("t", k), session,
                                        now - absl::Minutes(10) + absl::Seconds(10 * k),
                                        absl::StrCat("question number ", k)));
  }
  // Backslashes (COPY's escape character) and non-ASCII text in text columns.
  scenario.traces[1].set_model("gpt\\x41 \\N \u00abmini\u00bb");
  scenario.traces[1].set_feature_area("billing\\support");
  scenario.traces.push_back(MakeTrace("t-nosession", "", now - absl::Minutes(3)));
  scenario.traces.back().set_output("Write to jane.doe@example.com for help.");
  scenario.signals.push_back(Thumb("e-up", "t1", v1::THUMB_UP, now - absl::Minutes(2)));
  scenario.signals.push_back(
      Thumb("e-down", "t4", v1::THUMB_DOWN, now - absl::Minutes(2), "user-2"));
  scenario.signals.push_back(Thumb("e-early", "t-later", v1::THUMB_DOWN, now - absl::Minutes(1)));
  v1::Signal rating;
  rating.set_event_id("e-rating");
  rating.set_trace_id("t2");
  rating.set_user_id("user-3");
  *rating.mutable_occur_time() = ToProto(now - absl::Minutes(2));
  rating.mutable_explicit_feedback()->set_rating(4);
  rating.mutable_explicit_feedback()->set_comment("good\tenough\nmostly \\ fine");
  scenario.signals.push_back(rating);
  v1::Signal session_signal;
  session_signal.set_event_id("e-session");
  session_signal.set_session_id("sa");
  *session_signal.mutable_occur_time() = ToProto(now - absl::Minutes(1));
  session_signal.mutable_custom()->set_name("checkout");
  scenario.signals.push_back(session_signal);
  return scenario;
}

TEST_F(CaptureDbTest, BatchThroughCopyStoresTheSameRowsQueueAndSessionsAsSingleWrites) {
  const Scenario scenario = MakeScenario(now_);
  for (const ItemRef& item : scenario.Items()) {
    const CaptureLogic::IngestOutcome outcome = Write("single", {item});
    EXPECT_EQ(outcome.counts.accepted(), 1) << outcome.results[0].DebugString();
  }
  const CaptureLogic::IngestOutcome batch = Write("batch", scenario.Items());
  EXPECT_EQ(batch.counts.accepted(), static_cast<int>(scenario.Items().size()));
  EXPECT_GT(batch.counts.redactions(), 0);
  const std::vector<std::string> single_rows = StoredRows(db_->conninfo(), "single");
  const std::vector<std::string> batch_rows = StoredRows(db_->conninfo(), "batch");
  EXPECT_EQ(batch_rows, single_rows);
  // Every trace and the early signal's (not yet received) trace are queued.
  EXPECT_EQ(std::count_if(batch_rows.begin(), batch_rows.end(),
                          [](const std::string& row) { return row.rfind("queued|", 0) == 0; }),
            8);
  EXPECT_NE(std::find(batch_rows.begin(), batch_rows.end(), "queued|t-later"), batch_rows.end());
  // Signals on traces know whether their trace arrived (in the batch or before).
  const size_t first_signal = scenario.traces.size();
  EXPECT_TRUE(batch.trace_received[first_signal]);
  EXPECT_FALSE(batch.trace_received[first_signal + 2]);  // t-later
  // Labels come out the same from both.
  Label();
  EXPECT_EQ(Get("t4", "batch").trace().label().DebugString(),
            Get("t4", "single").trace().label().DebugString());
}

TEST_F(CaptureDbTest, BatchAgainAfterStoringIsDuplicateOrAlreadyExistsPerItemAndQueuesNothing) {
  const Scenario scenario = MakeScenario(now_);
  const CaptureLogic::IngestOutcome first = Write("p1", scenario.Items());
  ASSERT_EQ(first.counts.accepted(), static_cast<int>(scenario.Items().size()));
  {
    pqxx::connection connection(db_->conninfo());
    pqxx::work tx(connection);
    tx.exec("DELETE FROM capture.label_queue");
    tx.commit();
  }
  // The same batch with one trace and one signal changed, one new trace, and a repeat of the new
  // trace with other content.
  Scenario again = scenario;
  again.traces[2].set_output("a different answer");
  again.signals[0].mutable_explicit_feedback()->set_thumb(v1::THUMB_DOWN);
  again.traces.push_back(MakeTrace("t-new", "sb", now_ - absl::Minutes(1)));
  again.traces.push_back(again.traces.back());
  again.traces.back().set_output("not the same");
  const CaptureLogic::IngestOutcome outcome = Write("p1", again.Items());
  const size_t n_traces = again.traces.size();
  for (size_t i = 0; i < outcome.results.size(); ++i) {
    const auto& result = outcome.results[i].result();
    if (i == 2 || i == n_traces - 1 || i == n_traces) {  // changed trace, changed repeat, signal
      EXPECT_EQ(result.outcome(), common::v1::ITEM_OUTCOME_REJECTED) << i;
      EXPECT_EQ(result.code(), static_cast<int>(absl::StatusCode::kAlreadyExists)) << i;
    } else if (i == n_traces - 2) {
      EXPECT_EQ(result.outcome(), common::v1::ITEM_OUTCOME_ACCEPTED) << i;
    } else {
      EXPECT_EQ(result.outcome(), common::v1::ITEM_OUTCOME_DUPLICATE) << i;
      // A duplicate reports the stored item's receive time and redactions.
      const size_t original = i < n_traces ? i : i - n_traces + scenario.traces.size();
      EXPECT_EQ(outcome.receive_times[i], first.receive_times[original]) << i;
      EXPECT_EQ(outcome.results[i].redactions().total(),
                first.results[original].redactions().total())
          << i;
    }
  }
  EXPECT_EQ(outcome.counts.accepted(), 1);
  EXPECT_EQ(Get("t2").trace().output(), scenario.traces[2].output());
  // Only the new trace and its session's previous trace are queued; t-new ends session sb.
  const std::vector<std::string> rows = StoredRows(db_->conninfo(), "p1");
  std::vector<std::string> queued;
  for (const std::string& row : rows) {
    if (row.rfind("queued|", 0) == 0) queued.push_back(row);
  }
  EXPECT_EQ(queued, (std::vector<std::string>{"queued|t-new", "queued|t5"}));
  EXPECT_NE(
      std::find_if(rows.begin(), rows.end(),
                   [](const std::string& row) { return row.rfind("session|sb|t-new|", 0) == 0; }),
      rows.end());
}

TEST_F(CaptureDbTest, ConcurrentWritersOfTheSameIdsStoreEachOnceAndOneAcceptsIt) {
  constexpr int kRounds = 15;
  constexpr int kWriters = 3;
  for (int round = 0; round < kRounds; ++round) {
    // Even rounds: batches of 20 traces + 10 signals; odd rounds: a single trace.
    const int n = round % 2 == 0 ? 20 : 1;
    Scenario scenario;
    for (int k = 0; k < n; ++k) {
      const std::string id = absl::StrCat("r", round, "-", k);
      scenario.traces.push_back(MakeTrace(id, absl::StrCat("s", round), now_ - absl::Minutes(5)));
      if (n > 1 && k % 2 == 0) {
        scenario.signals.push_back(Thumb("e-" + id, id, v1::THUMB_UP, now_, id));
      }
    }
    std::vector<CaptureLogic::IngestOutcome> outcomes(kWriters);
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        absl::StatusOr<CaptureLogic::IngestOutcome> outcome =
            logic_->Ingest(Writer{"p1"}, scenario.Items());
        ASSERT_OK(outcome);
        outcomes[w] = *outcome;
      });
    }
    for (auto& thread : threads) thread.join();
    const size_t items = scenario.Items().size();
    for (size_t i = 0; i < items; ++i) {
      int accepted = 0;
      for (const auto& outcome : outcomes) {
        ASSERT_EQ(outcome.results.size(), items);
        const auto code = outcome.results[i].result().outcome();
        EXPECT_TRUE(code == common::v1::ITEM_OUTCOME_ACCEPTED ||
                    code == common::v1::ITEM_OUTCOME_DUPLICATE)
            << outcome.results[i].DebugString();
        accepted += code == common::v1::ITEM_OUTCOME_ACCEPTED;
        EXPECT_EQ(outcome.receive_times[i], outcomes[0].receive_times[i]);
      }
      EXPECT_EQ(accepted, 1) << "round " << round << " item " << i;
    }
  }
  const std::vector<std::string> rows = StoredRows(db_->conninfo(), "p1");
  EXPECT_EQ(std::count_if(rows.begin(), rows.end(),
                          [](const std::string& row) { return row.rfind("trace|", 0) == 0; }),
            8 * 20 + 7);
}

TEST_F(CaptureDbTest, DatabaseDownIsUnavailableAndNothingIsPartlyStored) {
  db::ConnectionPool dead({"host=127.0.0.1 port=1 connect_timeout=1", 2, absl::Seconds(1)});
  PgCaptureRepository repository(&dead, &logger_);
  CaptureLogic logic(&repository);
  const v1::Trace trace = MakeTrace("t1", "", now_ - absl::Minutes(1));
  EXPECT_THAT(logic.Ingest(Writer{"p1"}, {ItemRef{&trace, nullptr}}),
              StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace flywheel::capture
