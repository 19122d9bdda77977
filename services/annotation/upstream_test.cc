#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/status/status_matchers.h"
#include "services/annotation/upstream_fakes.h"
#include "services/annotation/upstream_grpc.h"

namespace flywheel::annotation {
namespace {

namespace capture = ::flywheel::capture::v1;
namespace clustering = ::flywheel::clustering::v1;
namespace evalset = ::flywheel::evalset::v1;

using ::flywheel::testing::IsOk;
using ::flywheel::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kKey[] = "fw_svc_0123456789abcdef_secret";

void SetTs(absl::Time t, google::protobuf::Timestamp* ts) {
  ts->set_seconds(absl::ToUnixSeconds(t));
}

// --- Pure conversion ----------------------------------------------------------------------------

TEST(SignalKindNameTest, LowerSnakeCaseWithoutPrefix) {
  EXPECT_EQ(SignalKindName(capture::SIGNAL_KIND_THUMBS_DOWN), "thumbs_down");
  EXPECT_EQ(SignalKindName(capture::SIGNAL_KIND_REGENERATE), "regenerate");
  EXPECT_EQ(SignalKindName(capture::SIGNAL_KIND_DERIVED_EDIT_DISTANCE), "derived_edit_distance");
}

TEST(FetchedTraceFromCaptureTest, SnapshotCarriesTraceSignalsAndLabel) {
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  capture::GetTraceResponse r;
  capture::Trace& trace = *r.mutable_trace();
  trace.set_trace_id("t1");
  trace.set_feature_area("search");
  trace.set_session_id("s1");
  trace.set_model_version("v2");
  trace.set_prompt_version("p7");
  trace.mutable_input()->set_prompt("how do I reset my password?");
  trace.set_output("Click here.");
  SetTs(t0, trace.mutable_start_time());
  auto* thumbs = r.add_signals();
  thumbs->set_signal_kind(capture::SIGNAL_KIND_THUMBS_DOWN);
  thumbs->mutable_explicit_feedback()->set_thumb(capture::THUMB_DOWN);
  thumbs->mutable_explicit_feedback()->set_comment("useless");
  SetTs(t0 + absl::Minutes(1), thumbs->mutable_occur_time());
  auto* regen = r.add_signals();
  regen->set_signal_kind(capture::SIGNAL_KIND_REGENERATE);
  regen->mutable_implicit_signal()->mutable_regenerate()->set_attempt_number(2);
  SetTs(t0 + absl::Minutes(2), regen->mutable_occur_time());
  auto* outcome = r.add_signals();
  outcome->set_signal_kind(capture::SIGNAL_KIND_OUTCOME);
  outcome->mutable_outcome()->set_name("ticket_resolved");
  outcome->mutable_outcome()->set_status(capture::OUTCOME_STATUS_FAILURE);
  SetTs(t0 + absl::Minutes(3), outcome->mutable_occur_time());
  auto* edit = r.add_derived_signals();
  edit->set_signal_kind(capture::SIGNAL_KIND_DERIVED_EDIT_DISTANCE);
  edit->mutable_edit_distance()->set_edit_ratio(0.27);
  SetTs(t0 + absl::Minutes(4), edit->mutable_occur_time());
  capture::TraceLabel& label = *trace.mutable_label();
  label.set_quality_score(0.2);
  label.set_flagged(true);
  label.set_rule_set_version(3);
  auto* reason = label.add_reasons();
  reason->set_rule_id("thumbs_down");
  reason->set_contribution(-3);
  reason = label.add_reasons();
  reason->set_rule_id("copied");
  reason->set_contribution(1);

  FetchedTrace f = FetchedTraceFromCapture(r, t0 + absl::Hours(1));
  EXPECT_THAT(f.status, IsOk());
  const v1::TraceSnapshot& s = f.snapshot;
  EXPECT_EQ(s.trace_id(), "t1");
  EXPECT_EQ(s.feature_area(), "search");
  EXPECT_EQ(s.input().prompt(), "how do I reset my password?");
  EXPECT_EQ(s.output(), "Click here.");
  EXPECT_FALSE(s.truncated());
  EXPECT_EQ(s.trace_create_time().seconds(), absl::ToUnixSeconds(t0));
  EXPECT_EQ(s.snapshot_time().seconds(), absl::ToUnixSeconds(t0 + absl::Hours(1)));
  EXPECT_EQ(s.signals().explicit_count(), 1);
  EXPECT_EQ(s.signals().implicit_count(), 1);
  EXPECT_EQ(s.signals().outcome_count(), 1);
  ASSERT_EQ(s.signals().signals_size(), 4);
  // Most recent first.
  EXPECT_EQ(s.signals().signals(0).kind(), "derived_edit_distance");
  EXPECT_EQ(s.signals().signals(0).value(), "edit_distance=0.27");
  EXPECT_EQ(s.signals().signals(3).kind(), "thumbs_down");
  EXPECT_EQ(s.signals().signals(3).comment(), "useless");
  EXPECT_TRUE(s.label().flagged());
  EXPECT_DOUBLE_EQ(s.label().quality_score(), 0.2);
  EXPECT_THAT(s.label().reasons(), ElementsAre("thumbs_down"));
  EXPECT_EQ(s.label().labeler_version(), "3");
  EXPECT_THAT(f.signal_kinds,
              ElementsAre("derived_edit_distance", "outcome", "regenerate", "thumbs_down"));
}

TEST(FetchedTraceFromCaptureTest, LongTextIsCutAt256KiBOnACodePoint) {
  capture::GetTraceResponse r;
  r.mutable_trace()->set_trace_id("t");
  // 'é' is 2 bytes: 131073 of them are 262146 bytes, cut to 262144.
  std::string long_text;
  for (int i = 0; i < 131073; ++i) long_text += "\xC3\xA9";
  r.mutable_trace()->set_output(long_text);
  r.mutable_trace()->mutable_input()->set_prompt("short");
  FetchedTrace f = FetchedTraceFromCapture(r, absl::Now());
  EXPECT_TRUE(f.snapshot.truncated());
  EXPECT_EQ(f.snapshot.output().size(), 262144u);
  EXPECT_FALSE(f.snapshot.has_label());
}

// --- In-process upstream servers ---------------------------------------------------------------

// Records the metadata of each call.
class MetadataLog {
 public:
  void Record(grpc::ServerContext* context) {
    absl::MutexLock lock(&mu_);
    auto get = [&](const char* key) {
      auto it = context->client_metadata().find(key);
      return it == context->client_metadata().end()
                 ? std::string()
                 : std::string(it->second.data(), it->second.size());
    };
    authorization_ = get("authorization");
    project_ = get("x-flywheel-project");
  }
  std::string authorization() const {
    absl::MutexLock lock(&mu_);
    return authorization_;
  }
  std::string project() const {
    absl::MutexLock lock(&mu_);
    return project_;
  }

 private:
  mutable absl::Mutex mu_;
  std::string authorization_;
  std::string project_;
};

class FakeCaptureServer final : public capture::CaptureService::Service {
 public:
  MetadataLog log;
  std::vector<capture::Trace> traces;  // newest last
  absl::Duration delay = absl::ZeroDuration();

  grpc::Status ReadFlaggedFeed(grpc::ServerContext* context,
                               const capture::ReadFlaggedFeedRequest* request,
                               capture::ReadFlaggedFeedResponse* response) override {
    log.Record(context);
    if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
    for (int64_t seq = request->after_sequence() + 1;
         seq <= 5 && response->entries_size() < request->max_items(); ++seq) {
      auto* e = response->add_entries();
      e->set_sequence(seq);
      e->set_trace_id("t" + std::to_string(seq));
      response->set_next_after_sequence(seq);
    }
    if (response->entries_size() == 0) {
      response->set_next_after_sequence(request->after_sequence());
    }
    response->set_high_water_mark(5);
    response->set_oldest_sequence(1);
    return grpc::Status::OK;
  }

  grpc::Status GetTrace(grpc::ServerContext* context, const capture::GetTraceRequest* request,
                        capture::GetTraceResponse* response) override {
    log.Record(context);
    if (request->trace_id() == "down") return {grpc::StatusCode::UNAVAILABLE, "db down"};
    for (const auto& t : traces) {
      if (t.trace_id() == request->trace_id()) {
        *response->mutable_trace() = t;
        return grpc::Status::OK;
      }
    }
    return {grpc::StatusCode::NOT_FOUND, "no such trace"};
  }

  // Newest first within [start, end), trace_id and start_time only when masked.
  grpc::Status ListTraces(grpc::ServerContext* context, const capture::ListTracesRequest* request,
                          capture::ListTracesResponse* response) override {
    log.Record(context);
    std::vector<capture::Trace> matching;
    for (auto it = traces.rbegin(); it != traces.rend(); ++it) {
      const int64_t s = it->start_time().seconds();
      if (request->time_range().has_start_time() &&
          s < request->time_range().start_time().seconds()) {
        continue;
      }
      if (request->time_range().has_end_time() && s >= request->time_range().end_time().seconds()) {
        continue;
      }
      matching.push_back(*it);
    }
    const size_t page = static_cast<size_t>(request->page_size());
    for (size_t i = 0; i < matching.size() && i < page; ++i) *response->add_traces() = matching[i];
    if (matching.size() > page) response->set_next_page_token("more");
    return grpc::Status::OK;
  }
};

class FakeEvalSetServer final : public evalset::EvalSetService::Service {
 public:
  MetadataLog log;
  grpc::Status AddCases(grpc::ServerContext* context, const evalset::AddCasesRequest* request,
                        evalset::AddCasesResponse* response) override {
    log.Record(context);
    if (request->eval_set_id() == "archived") {
      return {grpc::StatusCode::FAILED_PRECONDITION, "set archived"};
    }
    for (int i = 0; i < request->cases_size(); ++i) {
      auto* r = response->add_results();
      r->set_index(i);
      r->set_id("case-" + request->cases(i).case_key());
      r->set_outcome(::flywheel::common::v1::ITEM_OUTCOME_ACCEPTED);
    }
    response->set_version(1);
    response->set_version_created(true);
    return grpc::Status::OK;
  }
  grpc::Status FindNearestCases(grpc::ServerContext* context,
                                const evalset::FindNearestCasesRequest* request,
                                evalset::FindNearestCasesResponse* response) override {
    log.Record(context);
    for (int i = 0; i < request->texts_size(); ++i) {
      auto* r = response->add_results();
      r->set_index(i);
      if (request->texts(i) == "known") r->add_matches()->set_similarity(0.75);
    }
    return grpc::Status::OK;
  }
};

class FakeClusteringServer final : public clustering::ClusteringService::Service {
 public:
  MetadataLog log;
  grpc::Status GetTraceAssignment(grpc::ServerContext* context,
                                  const clustering::GetTraceAssignmentRequest* request,
                                  clustering::GetTraceAssignmentResponse* response) override {
    log.Record(context);
    response->set_trace_id(request->trace_id());
    response->set_state(clustering::ASSIGNMENT_STATE_ASSIGNED);
    response->set_cluster_id("theme-" + request->trace_id());
    return grpc::Status::OK;
  }
  grpc::Status NearestClusters(grpc::ServerContext* context,
                               const clustering::NearestClustersRequest* request,
                               clustering::NearestClustersResponse* response) override {
    log.Record(context);
    for (int i = 0; i < request->queries_size(); ++i) {
      auto* r = response->add_results();
      r->set_index(i);
      r->add_matches()->set_cluster_id(request->queries(i).text());
    }
    return grpc::Status::OK;
  }
};

class UpstreamGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&capture_);
    builder.RegisterService(&evalset_);
    builder.RegisterService(&clustering_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = MakeUpstreamChannel("127.0.0.1:" + std::to_string(port));
    options_.service_key = kKey;
    options_.deadline = absl::Seconds(5);
  }
  void TearDown() override { server_->Shutdown(); }

  FakeCaptureServer capture_;
  FakeEvalSetServer evalset_;
  FakeClusteringServer clustering_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  UpstreamOptions options_;
};

TEST_F(UpstreamGrpcTest, ServiceKeyAndProjectAreAttached) {
  GrpcCaptureUpstream client(channel_, options_);
  auto page = client.ReadFlaggedFeed({"proj-1"}, 2, 2);
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(capture_.log.authorization(), std::string("Bearer ") + kKey);
  EXPECT_EQ(capture_.log.project(), "proj-1");
  ASSERT_EQ(page->entries.size(), 2u);
  EXPECT_EQ(page->entries[0].sequence(), 3);
  EXPECT_EQ(page->next_after_sequence, 4);
  EXPECT_EQ(page->high_water_mark, 5);
}

TEST_F(UpstreamGrpcTest, ForwardedAuthorizationReplacesTheServiceKey) {
  GrpcCaptureUpstream client(channel_, options_);
  ASSERT_THAT(client.ReadFlaggedFeed({"proj-1", "Bearer fw_sk_user"}, 0, 1), IsOk());
  EXPECT_EQ(capture_.log.authorization(), "Bearer fw_sk_user");
  EXPECT_EQ(capture_.log.project(), "");
}

TEST_F(UpstreamGrpcTest, MissingServiceKeyIsUnavailableWithoutCalling) {
  options_.service_key.clear();
  GrpcCaptureUpstream client(channel_, options_);
  EXPECT_THAT(client.ReadFlaggedFeed({"proj-1"}, 0, 1), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(client.GetTraces({"proj-1"}, {"a"}), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(capture_.log.authorization(), "");
}

TEST_F(UpstreamGrpcTest, DeadlineIsPerCall) {
  capture_.delay = absl::Milliseconds(500);
  options_.deadline = absl::Milliseconds(100);
  GrpcCaptureUpstream client(channel_, options_);
  EXPECT_THAT(client.ReadFlaggedFeed({"proj-1"}, 0, 1),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_F(UpstreamGrpcTest, GetTracesReportsPerTraceAndStopsCallingWhenCaptureIsDown) {
  capture::Trace t;
  t.set_trace_id("a");
  t.set_output("out");
  capture_.traces.push_back(t);
  options_.max_concurrent_calls = 1;  // in order, one at a time
  GrpcCaptureUpstream client(channel_, options_);
  auto fetched = client.GetTraces({"p"}, {"a", "missing", "down", "a"});
  ASSERT_THAT(fetched, IsOk());
  ASSERT_EQ(fetched->size(), 4u);
  EXPECT_THAT((*fetched)[0].status, IsOk());
  EXPECT_EQ((*fetched)[0].snapshot.output(), "out");
  EXPECT_THAT((*fetched)[1].status, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(std::string((*fetched)[1].status.message()), StartsWith("capture: "));
  EXPECT_THAT((*fetched)[2].status, StatusIs(absl::StatusCode::kUnavailable));
  // After UNAVAILABLE the rest is not asked: same status without a call.
  EXPECT_THAT((*fetched)[3].status, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ((*fetched)[3].trace_id, "a");
}

TEST_F(UpstreamGrpcTest, GetTracesInParallelKeepsRequestOrder) {
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    capture::Trace t;
    t.set_trace_id("t" + std::to_string(i));
    t.set_output("output of t" + std::to_string(i));
    capture_.traces.push_back(t);
    ids.push_back(t.trace_id());
  }
  ids.push_back("missing");
  options_.max_concurrent_calls = 8;
  GrpcCaptureUpstream client(channel_, options_);
  auto fetched = client.GetTraces({"p"}, ids);
  ASSERT_THAT(fetched, IsOk());
  ASSERT_EQ(fetched->size(), ids.size());
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ((*fetched)[i].trace_id, ids[i]);
    EXPECT_THAT((*fetched)[i].status, IsOk());
    EXPECT_EQ((*fetched)[i].snapshot.output(), "output of " + ids[i]);
  }
  EXPECT_THAT(fetched->back().status, StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(UpstreamGrpcTest, SampleTracesFromASmallWindowIsDistinctAndInWindow) {
  const absl::Time base = absl::FromUnixSeconds(1700000000);
  for (int i = 0; i < 30; ++i) {
    capture::Trace t;
    t.set_trace_id("t" + std::to_string(i));
    SetTs(base + absl::Minutes(i), t.mutable_start_time());
    capture_.traces.push_back(t);
  }
  GrpcCaptureUpstream client(channel_, options_);
  auto sample =
      client.SampleTraces({"p"}, {base + absl::Minutes(10), base + absl::Minutes(20)}, 5, 7);
  ASSERT_THAT(sample, IsOk());
  ASSERT_EQ(sample->size(), 5u);
  std::set<std::string> ids;
  for (const auto& s : *sample) {
    ids.insert(s.trace_id);
    EXPECT_GE(s.create_time, base + absl::Minutes(10));
    EXPECT_LT(s.create_time, base + absl::Minutes(20));
  }
  EXPECT_EQ(ids.size(), 5u);
  auto again =
      client.SampleTraces({"p"}, {base + absl::Minutes(10), base + absl::Minutes(20)}, 5, 7);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->front().trace_id, sample->front().trace_id);  // seeded
}

TEST_F(UpstreamGrpcTest, SampleTracesFromALargeWindowProbesRandomInstants) {
  const absl::Time base = absl::FromUnixSeconds(1700000000);
  for (int i = 0; i < 300; ++i) {
    capture::Trace t;
    t.set_trace_id("t" + std::to_string(i));
    SetTs(base + absl::Minutes(i), t.mutable_start_time());
    capture_.traces.push_back(t);
  }
  GrpcCaptureUpstream client(channel_, options_);
  auto sample = client.SampleTraces({"p"}, {base, base + absl::Minutes(300)}, 10, 3);
  ASSERT_THAT(sample, IsOk());
  std::set<std::string> ids;
  for (const auto& s : *sample) ids.insert(s.trace_id);
  EXPECT_EQ(ids.size(), sample->size());
  EXPECT_GE(sample->size(), 8u);  // up to 3 probes per trace; collisions among 300 are rare
  EXPECT_LE(sample->size(), 10u);
}

TEST_F(UpstreamGrpcTest, EvalSetAddCasesAndErrorsKeepTheirCode) {
  GrpcEvalSetUpstream client(channel_, options_);
  evalset::Case c;
  c.set_case_key("ann-1");
  auto added = client.AddCases({"p"}, "set", {c}, "promoted from queue q");
  ASSERT_THAT(added, IsOk());
  EXPECT_EQ(added->results(0).id(), "case-ann-1");
  EXPECT_EQ(evalset_.log.project(), "p");
  auto refused = client.AddCases({"p"}, "archived", {c}, "");
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("evalset: set archived"));
}

TEST_F(UpstreamGrpcTest, FindNearestCasesBatchesOverHundredTexts) {
  GrpcEvalSetUpstream client(channel_, options_);
  std::vector<std::string> texts(150, "new");
  texts[120] = "known";
  auto nearest = client.FindNearestCases({"p"}, texts, {}, 5);
  ASSERT_THAT(nearest, IsOk());
  ASSERT_EQ(nearest->size(), 150u);
  EXPECT_EQ((*nearest)[120].index(), 120);
  EXPECT_DOUBLE_EQ(NoveltyFromNearest((*nearest)[120]), 0.25);
  EXPECT_DOUBLE_EQ(NoveltyFromNearest((*nearest)[0]), 1.0);
}

TEST_F(UpstreamGrpcTest, ClusteringCalls) {
  GrpcClusteringUpstream client(channel_, options_);
  auto assignment = client.GetTraceAssignment({"p"}, "t9");
  ASSERT_THAT(assignment, IsOk());
  EXPECT_EQ(assignment->cluster_id(), "theme-t9");
  EXPECT_EQ(clustering_.log.project(), "p");
  auto nearest = client.NearestClusters({"p"}, {"x", "y"}, 3);
  ASSERT_THAT(nearest, IsOk());
  ASSERT_EQ(nearest->size(), 2u);
  EXPECT_EQ((*nearest)[1].matches(0).cluster_id(), "y");
  // Not served by the fake server: UNIMPLEMENTED comes back as is.
  EXPECT_THAT(client.GetCluster({"p"}, "c1"), StatusIs(absl::StatusCode::kUnimplemented));
}

// --- Fakes --------------------------------------------------------------------------------------

TEST(FakeEvalSetUpstreamTest, FailsNTimesThenSucceedsAndIsIdempotentOnCaseKey) {
  FakeEvalSetUpstream fake;
  fake.CreateSet("p", "set");
  fake.FailNext("AddCases", 2, absl::UnavailableError("evalset: down"));
  evalset::Case c;
  c.set_case_key("ann-1");
  c.set_expected_output("fixed");
  EXPECT_THAT(fake.AddCases({"p"}, "set", {c}, ""), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(fake.AddCases({"p"}, "set", {c}, ""), StatusIs(absl::StatusCode::kUnavailable));
  auto first = fake.AddCases({"p"}, "set", {c}, "");
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->results(0).outcome(), ::flywheel::common::v1::ITEM_OUTCOME_ACCEPTED);
  auto again = fake.AddCases({"p"}, "set", {c}, "");
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->results(0).outcome(), ::flywheel::common::v1::ITEM_OUTCOME_DUPLICATE);
  EXPECT_EQ(again->results(0).id(), first->results(0).id());
  c.set_expected_output("different");
  auto conflict = fake.AddCases({"p"}, "set", {c}, "");
  ASSERT_THAT(conflict, IsOk());
  EXPECT_EQ(conflict->results(0).code(), static_cast<int>(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(fake.Calls("AddCases"), 5);
  EXPECT_EQ(fake.Cases("p", "set").size(), 1u);
  // Another project does not see the set.
  EXPECT_THAT(fake.AddCases({"other"}, "set", {c}, ""), StatusIs(absl::StatusCode::kNotFound));
}

TEST(FakeEvalSetUpstreamTest, UpdateCaseMakesANewRevision) {
  FakeEvalSetUpstream fake;
  fake.CreateSet("p", "set");
  evalset::Case c;
  c.set_case_key("ann-1");
  auto added = fake.AddCases({"p"}, "set", {c}, "");
  ASSERT_THAT(added, IsOk());
  c.set_case_id(added->results(0).id());
  c.set_expected_output("v2");
  auto updated = fake.UpdateCase({"p"}, "set", c, {"expected_output"}, "");
  ASSERT_THAT(updated, IsOk());
  EXPECT_EQ(updated->eval_case().revision(), 2);
  EXPECT_EQ(updated->eval_case().expected_output(), "v2");
}

TEST(FakeCaptureUpstreamTest, FeedTracesAndSampling) {
  FakeCaptureUpstream fake;
  capture::TraceSummary summary;
  summary.set_trace_id("t1");
  fake.AppendFlagged("p", summary);
  fake.AppendUnflagged("p", "t1");
  auto page = fake.ReadFlaggedFeed({"p"}, 0, 10);
  ASSERT_THAT(page, IsOk());
  ASSERT_EQ(page->entries.size(), 2u);
  EXPECT_EQ(page->entries[1].entry_type(), capture::FLAGGED_FEED_ENTRY_TYPE_UNFLAGGED);
  EXPECT_EQ(page->next_after_sequence, 2);
  FetchedTrace trace;
  trace.trace_id = "t1";
  fake.PutTrace("p", trace);
  auto fetched = fake.GetTraces({"p"}, {"t1", "t2"});
  ASSERT_THAT(fetched, IsOk());
  EXPECT_THAT((*fetched)[0].status, IsOk());
  EXPECT_THAT((*fetched)[1].status, StatusIs(absl::StatusCode::kNotFound));
  fake.FailNext("GetTraces", 1, absl::UnavailableError("capture: down"));
  EXPECT_THAT(fake.GetTraces({"p"}, {"t1"}), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(fake.GetTraces({"p"}, {"t1"}), IsOk());
  auto sample = fake.SampleTraces({"p"}, {}, 5, 1);
  ASSERT_THAT(sample, IsOk());
  EXPECT_EQ(sample->size(), 1u);
}

TEST(FakeClusteringUpstreamTest, AssignmentsMembersAndNoClusteringYet) {
  FakeClusteringUpstream fake;
  fake.Assign("p", "t1", "th1", "billing", "g1");
  auto a = fake.GetTraceAssignment({"p"}, "t1");
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->parent_cluster_id(), "g1");
  auto unseen = fake.GetTraceAssignment({"p"}, "t2");
  ASSERT_THAT(unseen, IsOk());
  EXPECT_EQ(unseen->state(), clustering::ASSIGNMENT_STATE_NOT_SEEN);
  auto members = fake.ListClusterMembers({"p"}, "th1", "", 10);
  ASSERT_THAT(members, IsOk());
  EXPECT_EQ(members->members.size(), 1u);
  fake.SetNoClusteringYet(true);
  EXPECT_THAT(fake.NearestClusters({"p"}, {"x"}, 3),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace flywheel::annotation
