// Clustering logic without a database: helpers (ids, page tokens, snippets, trends) and request
// validation on a fake repository.
#include "services/clustering/clustering_logic.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "common/status/status_matchers.h"
#include "services/clustering/feed_follower.h"
#include "services/clustering/util.h"

namespace flywheel::clustering {
namespace {

using ::flywheel::testing::StatusIs;

absl::Status Nope() { return absl::UnimplementedError("fake"); }

// Settings and clusterings in memory; everything else is unused by these tests.
class FakeRepository : public ClusteringRepository {
 public:
  absl::StatusOr<std::optional<SettingsRecord>> GetSettings(const std::string&) override {
    return settings_;
  }
  absl::StatusOr<SettingsRecord> PutSettings(const std::string&,
                                             const v1::ClusteringSettings& settings,
                                             std::optional<int64_t> expected) override {
    const int64_t current = settings_ ? settings_->etag_seq : 0;
    if (expected && *expected != current) return absl::AbortedError("etag");
    settings_ = SettingsRecord{settings, current + 1, absl::Now()};
    return *settings_;
  }
  absl::StatusOr<std::optional<int64_t>> ClaimFeedLease(const std::string&, const std::string&,
                                                        absl::Duration) override {
    return Nope();
  }
  absl::Status ReleaseFeedLease(const std::string&, const std::string&) override { return Nope(); }
  absl::StatusOr<CommitOutcome> CommitFeedBatch(const std::string&, const std::string&,
                                                const FeedBatch&) override {
    return Nope();
  }
  absl::StatusOr<int64_t> FeedCursor(const std::string&) override { return Nope(); }
  absl::StatusOr<int64_t> CountFlaggedTraces(const std::string&) override { return Nope(); }
  absl::StatusOr<std::optional<ClusteringRecord>> LatestClustering(const std::string&) override {
    return std::optional<ClusteringRecord>();
  }
  absl::StatusOr<ClusteringRecord> GetClustering(const std::string&, int64_t) override {
    return absl::NotFoundError("no such clustering");
  }
  absl::StatusOr<std::vector<ClusteringRecord>> ListClusterings(const std::string&,
                                                                const std::vector<int>&,
                                                                const std::vector<int>&, int64_t,
                                                                int) override {
    return std::vector<ClusteringRecord>();
  }
  absl::StatusOr<CreateResult> CreateClustering(const ClusteringRecord& pending, int) override {
    created_.push_back(pending);
    CreateResult r;
    r.clustering = pending;
    r.clustering.version = static_cast<int64_t>(created_.size());
    r.started = true;
    return r;
  }
  absl::StatusOr<std::optional<ClusteringRecord>> ClaimPendingClustering(
      const std::string&) override {
    return Nope();
  }
  absl::StatusOr<bool> UpdateProgress(const std::string&, int64_t, const std::string&,
                                      const v1::ClusteringProgress&,
                                      const v1::ClusteringParams&) override {
    return Nope();
  }
  absl::Status FailClustering(const std::string&, int64_t, const std::string&) override {
    return Nope();
  }
  absl::StatusOr<int> FailStaleClusterings(absl::Duration) override { return Nope(); }
  absl::StatusOr<std::optional<absl::Time>> LastScheduledTime(const std::string&) override {
    return Nope();
  }
  absl::StatusOr<int64_t> CountClusterings(const std::string&) override { return Nope(); }
  absl::StatusOr<std::vector<TraceRecord>> LoadWindow(const std::string&, absl::Time, absl::Time,
                                                      size_t) override {
    return Nope();
  }
  absl::Status PublishClustering(
      const std::string&, int64_t, const std::string&, absl::Time,
      const std::function<absl::StatusOr<PublishPlan>(const PublishContext&)>&,
      const LateAssigner&) override {
    return Nope();
  }
  absl::StatusOr<std::optional<ModelRecord>> GetModel(const std::string&, int64_t) override {
    return Nope();
  }
  absl::StatusOr<std::vector<ClusterRecord>> ListClusterRows(const std::string&, int64_t) override {
    return Nope();
  }
  absl::StatusOr<std::optional<ClusterRecord>> GetClusterRow(const std::string&, const std::string&,
                                                             int64_t) override {
    return std::optional<ClusterRecord>();
  }
  absl::Status UpdateClusterAttributes(const std::string&, const std::string&,
                                       const AttributeUpdate&) override {
    return Nope();
  }
  absl::StatusOr<int64_t> MergeClusters(const std::string&, int64_t,
                                        const std::vector<std::string>&,
                                        const std::string&) override {
    return Nope();
  }
  absl::Status ApplySplit(const std::string&, int64_t, const std::string&, const SplitPlan&,
                          const std::string&) override {
    return Nope();
  }
  absl::StatusOr<std::optional<SplitRequestRecord>> FindSplitRequest(const std::string&,
                                                                     const std::string&) override {
    return std::optional<SplitRequestRecord>();
  }
  absl::StatusOr<std::vector<MemberRecord>> ListMembers(const std::string&,
                                                        const MemberQuery&) override {
    return Nope();
  }
  absl::StatusOr<std::optional<MembershipRecord>> GetMembership(const std::string&,
                                                                const std::string&,
                                                                int64_t) override {
    return std::optional<MembershipRecord>();
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListAssignments(
      const std::string&, int64_t) override {
    return Nope();
  }
  absl::StatusOr<bool> TraceSeen(const std::string&, const std::string& trace_id) override {
    return trace_id == "seen";
  }
  absl::StatusOr<std::vector<EmbeddedTrace>> LoadEmbedded(const std::string&, int64_t,
                                                          const std::vector<std::string>&, bool,
                                                          std::optional<absl::Time>,
                                                          std::optional<absl::Time>,
                                                          bool) override {
    return Nope();
  }
  absl::StatusOr<std::vector<StatsRow>> LoadStatsRows(const std::string&, absl::Time,
                                                      absl::Time) override {
    return std::vector<StatsRow>();
  }
  absl::StatusOr<std::vector<std::pair<std::string, absl::Time>>> FirstSeen(
      const std::string&, const std::vector<std::string>&) override {
    return std::vector<std::pair<std::string, absl::Time>>();
  }

  std::optional<SettingsRecord> settings_;
  std::vector<ClusteringRecord> created_;
};

class ClusteringLogicTest : public ::testing::Test {
 protected:
  ClusteringLogicTest() : cache_(&repository_), logic_(&repository_, &cache_, Options()) {}
  static LogicOptions Options() {
    LogicOptions options;
    options.now = [] { return absl::FromUnixSeconds(1795000000); };
    return options;
  }
  FakeRepository repository_;
  ThemeIndexCache cache_;
  ClusteringLogic logic_;
};

TEST(UtilTest, GeneratedIdsAreUniqueLowercaseAndTimeOrdered) {
  std::set<std::string> ids;
  std::string previous;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = GenerateId();
    ASSERT_EQ(id.size(), 26u);
    for (char c : id) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')) << id;
    EXPECT_TRUE(ids.insert(id).second);
    EXPECT_GE(id.substr(0, 10), previous.substr(0, std::min<size_t>(10, previous.size())));
    previous = id;
  }
}

TEST(UtilTest, PageTokensAreBoundToKindFiltersAndLifetime) {
  const absl::Time now = absl::FromUnixSeconds(1795000000);
  const std::string token = EncodePageToken("members", "f1", {"0.5", "trace|7"}, now);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> position,
                       DecodePageToken(token, "members", "f1", now + absl::Hours(1)));
  EXPECT_EQ(position, (std::vector<std::string>{"0.5", "trace|7"}));
  EXPECT_THAT(DecodePageToken(token, "members", "f2", now),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodePageToken(token, "clusters", "f1", now),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodePageToken(token, "members", "f1", now + absl::Hours(25)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodePageToken("%%%", "members", "f1", now),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(UtilTest, PackedVectorsRoundTripExactly) {
  const std::vector<float> v = {0.25f, -1.5f, 3.0e-7f, 0.0f};
  EXPECT_EQ(UnpackVector(PackVector(v)), v);
  EXPECT_TRUE(UnpackVector("").empty());
}

TEST(SnippetTest, CollapsesWhitespaceAndCutsOnWordBoundaryWithEllipsis) {
  EXPECT_EQ(Snippet("  hello \n\t world  "), "hello world");
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "word ";
  const std::string cut = Snippet(long_text, 12);
  EXPECT_EQ(cut, "word word\xE2\x80\xA6");
  // Code points, not bytes: 10 two-byte letters fit in 10.
  EXPECT_EQ(Snippet("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", 5),
            "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9");
}

TEST(TrendTest, ClassifiesGrowingShrinkingStableNewAndInsufficient) {
  const std::vector<bool> complete = {true, true, true, true, true, false};
  EXPECT_EQ(
      ComputeTrend({10, 10, 10, 10, 20, 3}, {0.1, 0.1, 0.1, 0.1, 0.2, 0.1}, complete, -1).trend,
      v1::TREND_GROWING);
  TrendResult shrinking =
      ComputeTrend({10, 10, 10, 10, 5, 3}, {0.2, 0.2, 0.2, 0.2, 0.1, 0.1}, complete, -1);
  EXPECT_EQ(shrinking.trend, v1::TREND_SHRINKING);
  EXPECT_DOUBLE_EQ(shrinking.ratio, 0.5);
  EXPECT_EQ(
      ComputeTrend({10, 10, 10, 10, 10, 3}, {0.2, 0.2, 0.2, 0.2, 0.21, 0.1}, complete, -1).trend,
      v1::TREND_STABLE);
  EXPECT_EQ(ComputeTrend({0, 0, 0, 0, 4, 3}, {0, 0, 0, 0, 0.1, 0.1}, complete, 4).trend,
            v1::TREND_NEW);
  EXPECT_EQ(ComputeTrend({1, 1, 1, 1, 1, 3}, {0.1, 0.1, 0.1, 0.1, 0.5, 0.1}, complete, -1).trend,
            v1::TREND_INSUFFICIENT_DATA);
  EXPECT_EQ(ComputeTrend({50, 3}, {0.5, 0.1}, {true, false}, -1).trend,
            v1::TREND_INSUFFICIENT_DATA);
}

TEST(FeedEntryTest, UserKeyFallsBackToSessionThenTraceAndSignalClassesComeFromFailureVotes) {
  capture::v1::FlaggedFeedEntry e;
  e.set_sequence(3);
  e.set_trace_id("t1");
  auto* r1 = e.add_reasons();
  r1->set_signal_kind(capture::v1::SIGNAL_KIND_REGENERATE);
  r1->set_vote(capture::v1::LABEL_VOTE_FAILURE);
  auto* r2 = e.add_reasons();
  r2->set_signal_kind(capture::v1::SIGNAL_KIND_THUMBS_UP);
  r2->set_vote(capture::v1::LABEL_VOTE_SUCCESS);
  e.mutable_trace()->set_session_id("s9");
  TraceRecord t = TraceFromFeedEntry(e);
  EXPECT_EQ(t.user_key, "s:s9");
  EXPECT_EQ(t.signal_classes, kSignalImplicit);
  e.mutable_trace()->clear_session_id();
  EXPECT_EQ(TraceFromFeedEntry(e).user_key, "t:t1");
  e.mutable_trace()->set_user_id("u1");
  EXPECT_EQ(TraceFromFeedEntry(e).user_key, "u1");
}

TEST_F(ClusteringLogicTest, SettingsReadWithDefaultsAndValidateEachField) {
  ASSERT_OK_AND_ASSIGN(v1::GetClusteringSettingsResponse got,
                       logic_.GetClusteringSettings("p", {}));
  EXPECT_EQ(got.settings().min_distinct_users(), 5);
  EXPECT_DOUBLE_EQ(got.settings().assignment_similarity_threshold(), 0.3);
  EXPECT_DOUBLE_EQ(got.settings().id_stability_threshold(), 0.7);
  EXPECT_EQ(got.settings().recluster_interval().seconds(), 24 * 3600);
  EXPECT_EQ(got.settings().max_k(), 50);
  EXPECT_EQ(got.settings().embedder().builtin().dimension(), 256);

  auto update = [&](const std::string& path, auto set) {
    v1::UpdateClusteringSettingsRequest request;
    set(request.mutable_settings());
    request.mutable_update_mask()->add_paths(path);
    return logic_.UpdateClusteringSettings("p", request);
  };
  EXPECT_THAT(update("min_distinct_users", [](auto* s) { s->set_min_distinct_users(1001); }),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(update("id_stability_threshold", [](auto* s) { s->set_id_stability_threshold(0.4); }),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(update("max_k", [](auto* s) { s->set_max_k(1); }),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(update("colour", [](auto*) {}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(update("recluster_interval",
                     [](auto* s) { s->mutable_recluster_interval()->set_seconds(60); }),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // An explicit zero interval disables scheduling; min users 0 resets to the default.
  ASSERT_OK_AND_ASSIGN(v1::UpdateClusteringSettingsResponse off,
                       update("recluster_interval",
                              [](auto* s) { s->mutable_recluster_interval()->set_seconds(0); }));
  EXPECT_EQ(off.settings().recluster_interval().seconds(), 0);
  ASSERT_OK_AND_ASSIGN(v1::UpdateClusteringSettingsResponse seven,
                       update("min_distinct_users", [](auto* s) { s->set_min_distinct_users(7); }));
  EXPECT_EQ(seven.settings().min_distinct_users(), 7);
  EXPECT_EQ(seven.settings().recluster_interval().seconds(), 0) << "unmasked fields kept";
  // Stale etag.
  v1::UpdateClusteringSettingsRequest stale;
  stale.set_etag(off.settings().etag());
  stale.mutable_update_mask()->add_paths("max_k");
  stale.mutable_settings()->set_max_k(30);
  EXPECT_THAT(logic_.UpdateClusteringSettings("p", stale), StatusIs(absl::StatusCode::kAborted));
}

TEST_F(ClusteringLogicTest, TriggerReclusterValidatesWindowKAndRequestId) {
  v1::TriggerReclusterRequest bad_id;
  bad_id.set_request_id("has space");
  EXPECT_THAT(logic_.TriggerRecluster("p", bad_id), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::TriggerReclusterRequest bad_k;
  bad_k.set_k(1);
  EXPECT_THAT(logic_.TriggerRecluster("p", bad_k), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::TriggerReclusterRequest reversed;
  reversed.mutable_window()->mutable_start_time()->set_seconds(1794000000);
  reversed.mutable_window()->mutable_end_time()->set_seconds(1793000000);
  EXPECT_THAT(logic_.TriggerRecluster("p", reversed), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::TriggerReclusterRequest too_long;
  too_long.mutable_window()->mutable_start_time()->set_seconds(1794000000 - 400 * 86400);
  too_long.mutable_window()->mutable_end_time()->set_seconds(1794000000);
  EXPECT_THAT(logic_.TriggerRecluster("p", too_long), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::TriggerReclusterRequest ok;
  ok.set_request_id("r-1");
  ASSERT_OK_AND_ASSIGN(v1::TriggerReclusterResponse r, logic_.TriggerRecluster("p", ok));
  EXPECT_TRUE(r.started());
  ASSERT_EQ(repository_.created_.size(), 1u);
  EXPECT_EQ(repository_.created_[0].window_end - repository_.created_[0].window_start,
            absl::Hours(24 * 30));
  EXPECT_EQ(repository_.created_[0].params.min_distinct_users(), 5);
}

TEST_F(ClusteringLogicTest, ReadsBeforeAnyClusteringAnswerPerContract) {
  EXPECT_THAT(logic_.GetClustering("p", {}), StatusIs(absl::StatusCode::kFailedPrecondition));
  v1::GetClusteringRequest negative;
  negative.set_version(-1);
  EXPECT_THAT(logic_.GetClustering("p", negative), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(logic_.ListClusters("p", {}), StatusIs(absl::StatusCode::kFailedPrecondition));
  v1::GetTraceAssignmentRequest where;
  where.set_trace_id("seen");
  ASSERT_OK_AND_ASSIGN(v1::GetTraceAssignmentResponse a, logic_.GetTraceAssignment("p", where));
  EXPECT_EQ(a.state(), v1::ASSIGNMENT_STATE_UNASSIGNED);
  EXPECT_EQ(a.clustering_version(), 0);
  where.set_trace_id("other");
  ASSERT_OK_AND_ASSIGN(a, logic_.GetTraceAssignment("p", where));
  EXPECT_EQ(a.state(), v1::ASSIGNMENT_STATE_NOT_SEEN);
  where.set_trace_id("bad id");
  EXPECT_THAT(logic_.GetTraceAssignment("p", where), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::GetClusterStatsRequest stats;
  stats.mutable_time_range()->mutable_start_time()->set_seconds(1795000000);
  stats.mutable_time_range()->mutable_end_time()->set_seconds(1794000000);
  EXPECT_THAT(logic_.GetClusterStats("p", stats), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::GetClusterStatsRequest wide;
  wide.mutable_time_range()->mutable_start_time()->set_seconds(1795000000 - 500 * 86400);
  wide.mutable_time_range()->mutable_end_time()->set_seconds(1795000000);
  EXPECT_THAT(logic_.GetClusterStats("p", wide), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::GetClusterStatsRequest week;
  week.set_granularity(v1::STATS_GRANULARITY_WEEK);
  ASSERT_OK_AND_ASSIGN(v1::GetClusterStatsResponse s, logic_.GetClusterStats("p", week));
  ASSERT_GE(s.flagged_totals_size(), 12);
  // Weekly buckets start on Mondays at 00:00 UTC.
  for (const auto& b : s.flagged_totals()) {
    const absl::CivilSecond civil =
        absl::ToCivilSecond(FromProtoTime(b.start_time()), absl::UTCTimeZone());
    EXPECT_EQ(absl::GetWeekday(absl::CivilDay(civil)), absl::Weekday::monday);
    EXPECT_EQ(civil.hour(), 0);
  }
  v1::MergeClustersRequest merge;
  merge.set_target_cluster_id("a");
  merge.add_source_cluster_ids("a");
  EXPECT_THAT(logic_.MergeClusters("p", merge), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::SplitClusterRequest split;
  split.set_cluster_id("a");
  split.set_k(1);
  EXPECT_THAT(logic_.SplitCluster("p", split), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace flywheel::clustering
