// The clustering service on the real schema: feed cursor resume after a crash, concurrent
// replicas, re-clustering with stable ids, stats and the privacy threshold, curation, paging.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status/status_matchers.h"
#include "services/clustering/clustering_logic.h"
#include "services/clustering/feed_follower.h"
#include "services/clustering/pg_clustering_repository.h"
#include "services/clustering/recluster.h"
#include "services/clustering/theme_index.h"
#include "services/clustering/util.h"
#include "tests/pg/test_database.h"

namespace flywheel::clustering {
namespace {

using ::flywheel::testing::StatusIs;
using ::flywheel::testing::TestDatabase;

constexpr char kProject[] = "proj";

// Four failure topics with disjoint vocabularies.
const std::vector<std::vector<std::string>> kTopics = {
    {"citation", "link", "source", "reference", "footnote", "broken", "url", "cited"},
    {"currency", "conversion", "euro", "dollar", "exchange", "rate", "amount", "price"},
    {"language", "french", "spanish", "translation", "german", "translated", "english", "reply"},
    {"upload", "pdf", "file", "timeout", "attachment", "document", "size", "failed"},
};

// Capture's flagged feed, in memory.
class FakeFeed : public FeedSource {
 public:
  absl::StatusOr<FeedPage> Read(const std::string& project, int64_t after, int max) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++reads_;
    read_after_.push_back(after);
    if (fail_reads_ > 0) {
      --fail_reads_;
      return absl::UnavailableError("capture down");
    }
    FeedPage page;
    page.high_water_mark = static_cast<int64_t>(entries_[project].size());
    page.next_after_sequence = after;
    for (const auto& e : entries_[project]) {
      if (e.sequence() <= after) continue;
      if (static_cast<int>(page.entries.size()) >= max) break;
      page.entries.push_back(e);
      page.next_after_sequence = e.sequence();
    }
    return page;
  }

  int64_t AddFlagged(const std::string& trace_id, const std::string& user, const std::string& text,
                     absl::Time start, const std::string& project = kProject) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& list = entries_[project];
    capture::v1::FlaggedFeedEntry e;
    e.set_sequence(static_cast<int64_t>(list.size()) + 1);
    e.set_entry_type(capture::v1::FLAGGED_FEED_ENTRY_TYPE_FLAGGED);
    e.set_trace_id(trace_id);
    *e.mutable_flag_time() = ToProtoTime(start + absl::Minutes(1));
    capture::v1::LabelReason* reason = e.add_reasons();
    reason->set_signal_kind(capture::v1::SIGNAL_KIND_THUMBS_DOWN);
    reason->set_vote(capture::v1::LABEL_VOTE_FAILURE);
    capture::v1::TraceSummary* s = e.mutable_trace();
    s->set_trace_id(trace_id);
    s->set_user_id(user);
    s->set_feature_area(list.size() % 2 == 0 ? "chat" : "search");
    s->set_model_version("m-1");
    s->set_input_text(text);
    s->set_output_head("here is the answer");
    *s->mutable_start_time() = ToProtoTime(start);
    list.push_back(e);
    return e.sequence();
  }

  void AddUnflagged(const std::string& trace_id, const std::string& project = kProject) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& list = entries_[project];
    capture::v1::FlaggedFeedEntry e;
    e.set_sequence(static_cast<int64_t>(list.size()) + 1);
    e.set_entry_type(capture::v1::FLAGGED_FEED_ENTRY_TYPE_UNFLAGGED);
    e.set_trace_id(trace_id);
    list.push_back(e);
  }

  int64_t size(const std::string& project = kProject) {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(entries_[project].size());
  }
  void FailNextReads(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_reads_ = n;
  }
  std::vector<int64_t> read_after() {
    std::lock_guard<std::mutex> lock(mu_);
    return read_after_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<capture::v1::FlaggedFeedEntry>> entries_;
  std::vector<int64_t> read_after_;
  int fail_reads_ = 0;
  int reads_ = 0;
};

std::string TopicText(int topic, std::mt19937& rng) {
  const auto& words = kTopics[topic];
  std::uniform_int_distribution<size_t> pick(0, words.size() - 1);
  std::string text = "the answer";
  for (int i = 0; i < 7; ++i) absl::StrAppend(&text, " ", words[pick(rng)]);
  return text;
}

class ClusteringDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(db_, TestDatabase::Create());
    pool_ = std::make_unique<db::ConnectionPool>(db::PoolOptions{db_->conninfo(), 6});
    repository_ = std::make_unique<PgClusteringRepository>(pool_.get(), &logger_);
    cache_ = std::make_unique<ThemeIndexCache>(repository_.get());
    LogicOptions options;
    options.now = [this] { return now_; };
    logic_ = std::make_unique<ClusteringLogic>(repository_.get(), cache_.get(), options);
    reclusterer_ =
        std::make_unique<Reclusterer>(repository_.get(), logic_.get(), "worker-1", &logger_);
  }

  std::unique_ptr<FeedFollower> Follower(const std::string& owner, FollowerOptions options = {}) {
    return std::make_unique<FeedFollower>(repository_.get(), &feed_, cache_.get(), owner, options);
  }

  // Adds `count` traces of `topic` from `users` distinct users, created an hour apart ending
  // at `end`.
  void AddTopic(int topic, int count, int users, const std::string& prefix, absl::Time end) {
    for (int i = 0; i < count; ++i) {
      feed_.AddFlagged(absl::StrCat(prefix, "-", topic, "-", i),
                       absl::StrCat("user-", topic, "-", i % users), TopicText(topic, rng_),
                       end - absl::Hours(i % 48));
    }
  }

  void SyncAll() {
    auto follower = Follower("sync");
    for (int i = 0; i < 100; ++i) {
      ASSERT_OK_AND_ASSIGN(FeedFollower::SyncResult r, follower->SyncProject(kProject));
      if (r.cursor >= feed_.size()) break;
    }
    ASSERT_OK(follower->Release(kProject));
  }

  // Triggers an on-demand re-clustering with k themes and runs it.
  v1::Clustering Recluster(int k) {
    v1::TriggerReclusterRequest request;
    request.set_k(k);
    absl::StatusOr<v1::TriggerReclusterResponse> started =
        logic_->TriggerRecluster(kProject, request);
    EXPECT_OK(started);
    absl::StatusOr<bool> ran = reclusterer_->RunOnePending();
    EXPECT_OK(ran);
    v1::GetClusteringRequest get;
    get.set_version(started->clustering().version());
    absl::StatusOr<v1::GetClusteringResponse> got = logic_->GetClustering(kProject, get);
    EXPECT_OK(got);
    return got->clustering();
  }

  std::vector<v1::Cluster> Themes(int64_t version = 0) {
    v1::ListClustersRequest request;
    request.set_clustering_version(version);
    request.set_page_size(200);
    absl::StatusOr<v1::ListClustersResponse> r = logic_->ListClusters(kProject, request);
    EXPECT_OK(r);
    return {r->clusters().begin(), r->clusters().end()};
  }

  int64_t CountRows(const std::string& sql) {
    pqxx::connection c(db_->conninfo());
    pqxx::work tx(c);
    return tx.exec1(sql)[0].as<int64_t>();
  }

  Logger logger_{"test", Logger::Level::kError};
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<db::ConnectionPool> pool_;
  std::unique_ptr<PgClusteringRepository> repository_;
  std::unique_ptr<ThemeIndexCache> cache_;
  std::unique_ptr<ClusteringLogic> logic_;
  std::unique_ptr<Reclusterer> reclusterer_;
  FakeFeed feed_;
  std::mt19937 rng_{7};
  absl::Time now_ = absl::FromUnixSeconds(1795000000);  // 2026-11-18
};

TEST_F(ClusteringDbTest, FollowerResumesFromCursorAfterCrashWithoutDuplicatesOrGaps) {
  for (int i = 0; i < 230; ++i) {
    feed_.AddFlagged(absl::StrCat("t", i), absl::StrCat("u", i % 9), TopicText(i % 4, rng_),
                     now_ - absl::Hours(1));
  }
  feed_.AddUnflagged("t5");
  FollowerOptions options;
  options.batch_size = 50;
  options.max_pages_per_sync = 2;
  options.lease_ttl = absl::Milliseconds(200);
  auto first = Follower("replica-a", options);
  ASSERT_OK_AND_ASSIGN(FeedFollower::SyncResult r, first->SyncProject(kProject));
  EXPECT_TRUE(r.leased);
  EXPECT_EQ(r.cursor, 100);
  // The next read fails mid-way: nothing of it is stored, the cursor stays.
  feed_.FailNextReads(1);
  EXPECT_THAT(first->SyncProject(kProject), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK_AND_ASSIGN(int64_t cursor, repository_->FeedCursor(kProject));
  EXPECT_EQ(cursor, 100);
  first.reset();  // crash: the lease is never released

  auto second = Follower("replica-b", options);
  ASSERT_OK_AND_ASSIGN(r, second->SyncProject(kProject));
  EXPECT_FALSE(r.leased) << "the crashed replica's lease has not expired yet";
  absl::SleepFor(absl::Milliseconds(250));
  for (int i = 0; i < 5; ++i) ASSERT_OK(second->SyncProject(kProject).status());
  ASSERT_OK_AND_ASSIGN(cursor, repository_->FeedCursor(kProject));
  EXPECT_EQ(cursor, 231);
  const std::vector<int64_t> reads = feed_.read_after();
  // Replica b started reading exactly after the committed cursor: nothing skipped.
  bool resumed_at_cursor = false;
  for (size_t i = 3; i < reads.size(); ++i) resumed_at_cursor |= reads[i] == 100;
  EXPECT_TRUE(resumed_at_cursor);
  EXPECT_EQ(CountRows("SELECT count(*) FROM clustering.traces WHERE flagged"), 229);
  EXPECT_EQ(CountRows("SELECT count(*) FROM clustering.traces"), 230);
  EXPECT_EQ(CountRows("SELECT processed_total FROM clustering.feed_cursors"), 231);
}

TEST_F(ClusteringDbTest, ReplayedBatchIsDroppedByTheCursorCheck) {
  ASSERT_OK_AND_ASSIGN(std::optional<int64_t> cursor,
                       repository_->ClaimFeedLease(kProject, "a", absl::Seconds(30)));
  ASSERT_EQ(cursor, 0);
  FeedBatch batch;
  batch.expected_cursor = 0;
  batch.next_cursor = 1;
  TraceRecord t;
  t.trace_id = "t1";
  t.user_key = "u1";
  t.feed_sequence = 1;
  batch.flagged.push_back(t);
  ASSERT_OK_AND_ASSIGN(CommitOutcome outcome, repository_->CommitFeedBatch(kProject, "a", batch));
  EXPECT_EQ(outcome, CommitOutcome::kCommitted);
  ASSERT_OK_AND_ASSIGN(outcome, repository_->CommitFeedBatch(kProject, "a", batch));
  EXPECT_EQ(outcome, CommitOutcome::kLostLease);
  batch.expected_cursor = 1;
  batch.next_cursor = 2;
  ASSERT_OK_AND_ASSIGN(outcome, repository_->CommitFeedBatch(kProject, "b", batch));
  EXPECT_EQ(outcome, CommitOutcome::kLostLease) << "b holds no lease";
  EXPECT_EQ(CountRows("SELECT processed_total FROM clustering.feed_cursors"), 1);
}

TEST_F(ClusteringDbTest, ConcurrentReplicasProcessEachEntryExactlyOnce) {
  for (int i = 0; i < 1200; ++i) {
    feed_.AddFlagged(absl::StrCat("t", i), absl::StrCat("u", i % 13), TopicText(i % 4, rng_),
                     now_ - absl::Hours(2));
  }
  FollowerOptions options;
  options.batch_size = 40;
  options.max_pages_per_sync = 3;
  options.lease_ttl = absl::Milliseconds(30);  // short: leadership moves between replicas
  std::atomic<int64_t> committed{0};
  std::atomic<int> errors{0};
  std::atomic<int> leader_switches{0};
  auto run = [&](const std::string& owner) {
    auto follower = Follower(owner, options);
    bool had = false;
    for (int i = 0; i < 400; ++i) {
      absl::StatusOr<FeedFollower::SyncResult> r = follower->SyncProject(kProject);
      if (!r.ok()) {
        ++errors;
        continue;
      }
      committed += r->entries;
      if (r->leased && !had) ++leader_switches;
      had = r->leased;
      if (r->cursor >= 1200) break;
      if (r->leased) absl::SleepFor(absl::Milliseconds(40));  // let the lease lapse sometimes
    }
  };
  std::thread a(run, "replica-a"), b(run, "replica-b");
  a.join();
  b.join();
  // Drain whatever is left.
  auto last = Follower("replica-c", options);
  absl::SleepFor(absl::Milliseconds(40));
  for (int i = 0; i < 50; ++i) {
    ASSERT_OK_AND_ASSIGN(FeedFollower::SyncResult r, last->SyncProject(kProject));
    committed += r.entries;
    if (r.cursor >= 1200) break;
  }
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(committed.load(), 1200) << "every entry committed exactly once across replicas";
  EXPECT_EQ(CountRows("SELECT count(*) FROM clustering.traces"), 1200);
  EXPECT_EQ(CountRows("SELECT processed_total FROM clustering.feed_cursors"), 1200);
  EXPECT_GE(leader_switches.load(), 1);
}

TEST_F(ClusteringDbTest, ReclusterKeepsThemeIdsStableOnOverlappingWindows) {
  for (int topic = 0; topic < 4; ++topic) AddTopic(topic, 40, 10, "a", now_ - absl::Hours(1));
  SyncAll();
  const v1::Clustering first = Recluster(4);
  ASSERT_EQ(first.state(), v1::CLUSTERING_STATE_SUCCEEDED) << first.error_message();
  EXPECT_EQ(first.theme_count(), 4);
  EXPECT_EQ(first.member_count() + first.unassigned_count(), 160);
  EXPECT_GE(first.member_count(), 140);
  std::vector<v1::Cluster> before = Themes();
  ASSERT_EQ(before.size(), 4u);
  for (const v1::Cluster& c : before) {
    EXPECT_FALSE(c.name().empty());
    EXPECT_FALSE(c.keywords().empty());
    // Five examples, one per user (trace "a-<topic>-<i>" belongs to user i % 10).
    EXPECT_EQ(c.representative_examples_size(), 5);
    std::set<std::string> users;
    for (const auto& e : c.representative_examples()) {
      users.insert(
          std::to_string(std::stoi(e.trace_id().substr(e.trace_id().rfind('-') + 1)) % 10));
      EXPECT_FALSE(e.snippet().empty());
    }
    EXPECT_EQ(users.size(), 5u);
  }

  // New traces arrive: streaming assignment puts them into the latest clustering.
  now_ += absl::Hours(2);
  for (int topic = 0; topic < 4; ++topic) AddTopic(topic, 8, 8, "b", now_ - absl::Minutes(30));
  SyncAll();
  ASSERT_OK_AND_ASSIGN(v1::GetClusteringResponse latest, logic_->GetClustering(kProject, {}));
  EXPECT_GE(latest.clustering().streaming_assigned_count(), 24);
  v1::GetTraceAssignmentRequest assignment;
  assignment.set_trace_id("b-2-3");
  ASSERT_OK_AND_ASSIGN(v1::GetTraceAssignmentResponse where,
                       logic_->GetTraceAssignment(kProject, assignment));
  EXPECT_EQ(where.state(), v1::ASSIGNMENT_STATE_ASSIGNED);
  EXPECT_EQ(where.assignment_source(), v1::ASSIGNMENT_SOURCE_STREAMING);
  assignment.set_trace_id("never-flagged");
  ASSERT_OK_AND_ASSIGN(where, logic_->GetTraceAssignment(kProject, assignment));
  EXPECT_EQ(where.state(), v1::ASSIGNMENT_STATE_NOT_SEEN);

  const v1::Clustering second = Recluster(4);
  ASSERT_EQ(second.state(), v1::CLUSTERING_STATE_SUCCEEDED) << second.error_message();
  EXPECT_EQ(second.previous_version(), first.version());
  EXPECT_GE(second.matched_cluster_count(), 4);
  EXPECT_EQ(second.theme_count(), 4);
  std::set<std::string> ids_before, ids_after;
  for (const auto& c : before) ids_before.insert(c.cluster_id());
  for (const auto& c : Themes()) ids_after.insert(c.cluster_id());
  EXPECT_EQ(ids_before, ids_after) << "every theme kept its id";
  for (const auto& c : Themes()) {
    EXPECT_EQ(c.clustering_version(), second.version());
    EXPECT_EQ(c.created_version(), first.version());
  }
}

TEST_F(ClusteringDbTest, ThemeBelowPrivacyThresholdIsNeverListedButAggregated) {
  AddTopic(0, 40, 10, "a", now_ - absl::Hours(1));
  AddTopic(1, 40, 10, "a", now_ - absl::Hours(1));
  AddTopic(2, 40, 10, "a", now_ - absl::Hours(1));
  AddTopic(3, 30, 4, "a", now_ - absl::Hours(1));  // only 4 distinct users
  SyncAll();
  const v1::Clustering c = Recluster(4);
  ASSERT_EQ(c.state(), v1::CLUSTERING_STATE_SUCCEEDED) << c.error_message();
  EXPECT_EQ(c.hidden_theme_count(), 1);

  v1::ListClustersRequest list;
  ASSERT_OK_AND_ASSIGN(v1::ListClustersResponse listed, logic_->ListClusters(kProject, list));
  EXPECT_EQ(listed.clusters_size(), 3);
  EXPECT_EQ(listed.total_size(), 3);
  EXPECT_EQ(listed.min_distinct_users(), 5);
  EXPECT_EQ(listed.small_themes().theme_count(), 1);
  EXPECT_GT(listed.small_themes().member_count(), 0);
  for (const auto& cluster : listed.clusters()) EXPECT_GE(cluster.distinct_users(), 5);

  // The hidden theme: the one topic-3 traces are in.
  v1::GetTraceAssignmentRequest where;
  where.set_trace_id("a-3-0");
  ASSERT_OK_AND_ASSIGN(v1::GetTraceAssignmentResponse a,
                       logic_->GetTraceAssignment(kProject, where));
  ASSERT_EQ(a.state(), v1::ASSIGNMENT_STATE_ASSIGNED);
  EXPECT_TRUE(a.hidden_by_privacy_threshold());
  EXPECT_TRUE(a.cluster_name().empty());
  const std::string hidden_id = a.cluster_id();
  for (const auto& cluster : listed.clusters()) EXPECT_NE(cluster.cluster_id(), hidden_id);

  v1::GetClusterRequest get;
  get.set_cluster_id(hidden_id);
  ASSERT_OK_AND_ASSIGN(v1::GetClusterResponse hidden, logic_->GetCluster(kProject, get));
  EXPECT_TRUE(hidden.cluster().hidden_by_privacy_threshold());
  EXPECT_TRUE(hidden.cluster().name().empty());
  EXPECT_EQ(hidden.cluster().keywords_size(), 0);
  EXPECT_EQ(hidden.cluster().representative_examples_size(), 0);
  EXPECT_EQ(hidden.cluster().distinct_users(), 4);
  EXPECT_EQ(listed.small_themes().member_count(), hidden.cluster().member_count());

  v1::ListClusterMembersRequest members;
  members.set_cluster_id(hidden_id);
  EXPECT_THAT(logic_->ListClusterMembers(kProject, members),
              StatusIs(absl::StatusCode::kFailedPrecondition));

  // Stats: three named series plus one aggregate holding the hidden theme's traces.
  v1::GetClusterStatsRequest stats;
  stats.mutable_time_range()->mutable_start_time()->set_seconds(
      absl::ToUnixSeconds(now_ - absl::Hours(24 * 5)));
  *stats.mutable_time_range()->mutable_end_time() = ToProtoTime(now_);
  ASSERT_OK_AND_ASSIGN(v1::GetClusterStatsResponse s, logic_->GetClusterStats(kProject, stats));
  ASSERT_EQ(s.series_size(), 4);
  int64_t flagged = 0;
  for (const auto& b : s.flagged_totals()) flagged += b.trace_count();
  EXPECT_EQ(flagged, 150);
  int aggregates = 0;
  int64_t sum = 0;
  for (const auto& series : s.series()) {
    EXPECT_NE(series.cluster_id(), hidden_id);
    sum += series.total_trace_count();
    if (series.small_themes_aggregate()) {
      ++aggregates;
      EXPECT_EQ(series.total_trace_count(), hidden.cluster().member_count());
      EXPECT_TRUE(series.cluster_name().empty());
      for (const auto& b : series.buckets()) EXPECT_EQ(b.feature_areas().entries_size(), 0);
    } else {
      EXPECT_FALSE(series.cluster_name().empty());
      int64_t explicit_count = 0, users = 0;
      for (const auto& b : series.buckets()) {
        explicit_count += b.signal_mix().explicit_count();
        users = std::max(users, b.distinct_users());
        if (b.trace_count() > 0) {
          EXPECT_GT(b.share_of_flagged(), 0);
          EXPECT_LE(b.share_of_flagged(), 1);
          EXPECT_FALSE(b.feature_areas().entries().empty());
        }
      }
      EXPECT_EQ(explicit_count, series.total_trace_count());
      EXPECT_GE(users, 5);
      // First seen two days ago, after an empty baseline: new or growing, never flat.
      EXPECT_THAT(series.trend(), ::testing::AnyOf(v1::TREND_NEW, v1::TREND_GROWING));
      EXPECT_GE(FromProtoTime(series.first_seen_time()), now_ - absl::Hours(49));
    }
  }
  EXPECT_EQ(aggregates, 1);
  EXPECT_EQ(sum, c.member_count());

  // Lowering the threshold to 4 lists it.
  v1::UpdateClusteringSettingsRequest settings;
  settings.mutable_settings()->set_min_distinct_users(4);
  settings.mutable_update_mask()->add_paths("min_distinct_users");
  ASSERT_OK(logic_->UpdateClusteringSettings(kProject, settings));
  ASSERT_OK_AND_ASSIGN(listed, logic_->ListClusters(kProject, list));
  EXPECT_EQ(listed.clusters_size(), 4);
  EXPECT_EQ(listed.small_themes().theme_count(), 0);
}

TEST_F(ClusteringDbTest, RemoteNamerNamesOnlyVisibleThemesAndFallsBackOnError) {
  AddTopic(0, 30, 10, "a", now_ - absl::Hours(1));
  AddTopic(1, 30, 10, "a", now_ - absl::Hours(1));
  AddTopic(2, 30, 10, "a", now_ - absl::Hours(1));
  AddTopic(3, 30, 4, "a", now_ - absl::Hours(1));  // hidden: 4 distinct users
  SyncAll();
  std::mutex mu;
  std::vector<engine::NamingRequest> requests;
  ReclusterOptions options;
  options.namer_name = "fake-namer";
  options.namer =
      [&](const engine::NamingRequest& request) -> absl::StatusOr<engine::NamingResult> {
    std::lock_guard<std::mutex> lock(mu);
    requests.push_back(request);
    for (const auto& k : request.keywords) {
      if (k == "language" || k == "french" || k == "translation") {
        return absl::UnavailableError("namer down");
      }
    }
    if (request.keywords.empty()) return absl::InvalidArgumentError("no keywords");
    return engine::NamingResult{"Named " + request.keywords[0], "a description"};
  };
  reclusterer_ =
      std::make_unique<Reclusterer>(repository_.get(), logic_.get(), "worker-n", &logger_, options);
  const v1::Clustering c = Recluster(4);
  ASSERT_EQ(c.state(), v1::CLUSTERING_STATE_SUCCEEDED) << c.error_message();
  EXPECT_EQ(c.params().namer_name(), "fake-namer");
  ASSERT_EQ(requests.size(), 3u) << "only the three themes above the privacy threshold are sent";
  for (const auto& r : requests) {
    EXPECT_FALSE(r.in_theme_examples.empty());
    EXPECT_FALSE(r.out_of_theme_examples.empty());
    for (const auto& k : r.keywords) {
      EXPECT_TRUE(k != "upload" && k != "pdf" && k != "attachment") << "hidden theme sent";
    }
  }
  int remote = 0, builtin = 0;
  for (const v1::Cluster& theme : Themes()) {
    if (theme.name().rfind("Named ", 0) == 0) {
      ++remote;
      EXPECT_EQ(theme.description(), "a description");
    } else {
      ++builtin;
      EXPECT_NE(theme.name().find(" / "), std::string::npos) << theme.name();
    }
  }
  EXPECT_EQ(remote, 2);
  EXPECT_EQ(builtin, 1);
}

TEST_F(ClusteringDbTest, RenamePinAndMergeAreOperatorControlled) {
  for (int topic = 0; topic < 4; ++topic) AddTopic(topic, 30, 10, "a", now_ - absl::Hours(1));
  SyncAll();
  const v1::Clustering c = Recluster(4);
  ASSERT_EQ(c.state(), v1::CLUSTERING_STATE_SUCCEEDED) << c.error_message();
  std::vector<v1::Cluster> themes = Themes();
  ASSERT_EQ(themes.size(), 4u);
  // Order: the topic-0 theme first, the topic-1 theme second.
  auto theme_of = [&](const std::string& trace_id) {
    v1::GetTraceAssignmentRequest request;
    request.set_trace_id(trace_id);
    absl::StatusOr<v1::GetTraceAssignmentResponse> r =
        logic_->GetTraceAssignment(kProject, request);
    EXPECT_OK(r);
    return r->cluster_id();
  };
  const std::string topic0 = theme_of("a-0-0"), topic1 = theme_of("a-1-0");
  ASSERT_NE(topic0, topic1);
  std::stable_sort(themes.begin(), themes.end(), [&](const v1::Cluster& x, const v1::Cluster& y) {
    auto rank = [&](const v1::Cluster& c) {
      return c.cluster_id() == topic0 ? 0 : c.cluster_id() == topic1 ? 1 : 2;
    };
    return rank(x) < rank(y);
  });
  ASSERT_EQ(themes[0].cluster_id(), topic0);
  ASSERT_EQ(themes[1].cluster_id(), topic1);

  v1::UpdateClusterRequest rename;
  rename.mutable_cluster()->set_cluster_id(themes[0].cluster_id());
  rename.mutable_cluster()->set_name("Broken citations");
  rename.mutable_update_mask()->add_paths("name");
  rename.set_etag(themes[0].etag());
  ASSERT_OK_AND_ASSIGN(v1::UpdateClusterResponse renamed, logic_->UpdateCluster(kProject, rename));
  EXPECT_EQ(renamed.cluster().name(), "Broken citations");
  EXPECT_TRUE(renamed.cluster().name_pinned());
  EXPECT_NE(renamed.cluster().etag(), themes[0].etag());
  EXPECT_THAT(logic_->UpdateCluster(kProject, rename), StatusIs(absl::StatusCode::kAborted));
  rename.clear_etag();
  rename.mutable_update_mask()->add_paths("color");
  EXPECT_THAT(logic_->UpdateCluster(kProject, rename),
              StatusIs(absl::StatusCode::kInvalidArgument));

  // Merge theme 1 into theme 0.
  v1::MergeClustersRequest merge;
  merge.set_target_cluster_id(themes[0].cluster_id());
  merge.add_source_cluster_ids(themes[1].cluster_id());
  merge.set_expected_clustering_version(c.version());
  ASSERT_OK_AND_ASSIGN(v1::MergeClustersResponse merged, logic_->MergeClusters(kProject, merge));
  EXPECT_EQ(merged.moved_member_count(), themes[1].member_count());
  EXPECT_EQ(merged.target().member_count(), themes[0].member_count() + themes[1].member_count());
  EXPECT_EQ(merged.target().name(), "Broken citations");
  ASSERT_EQ(merged.sources_size(), 1);
  EXPECT_EQ(merged.sources(0).state(), v1::CLUSTER_STATE_MERGED);
  EXPECT_EQ(merged.sources(0).merged_into_cluster_id(), themes[0].cluster_id());
  // Idempotent repeat.
  ASSERT_OK_AND_ASSIGN(merged, logic_->MergeClusters(kProject, merge));
  EXPECT_EQ(merged.moved_member_count(), 0);
  EXPECT_EQ(Themes().size(), 3u);
  // Merging into the merged source now fails; a stale version is ABORTED.
  v1::MergeClustersRequest bad;
  bad.set_target_cluster_id(themes[1].cluster_id());
  bad.add_source_cluster_ids(themes[2].cluster_id());
  EXPECT_THAT(logic_->MergeClusters(kProject, bad),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  merge.set_expected_clustering_version(c.version() + 5);
  EXPECT_THAT(logic_->MergeClusters(kProject, merge), StatusIs(absl::StatusCode::kAborted));

  // Streaming assignment uses the merged themes at once: no trace lands in the merged source.
  for (int i = 0; i < 6; ++i) {
    feed_.AddFlagged(absl::StrCat("late-", i), "user-x", TopicText(1, rng_), now_);
  }
  SyncAll();
  v1::GetTraceAssignmentRequest where;
  where.set_trace_id("late-0");
  ASSERT_OK_AND_ASSIGN(v1::GetTraceAssignmentResponse a,
                       logic_->GetTraceAssignment(kProject, where));
  EXPECT_NE(a.cluster_id(), themes[1].cluster_id());

  // Merges are sticky: re-clustering into 4 themes re-forms the merged topic, which is folded
  // into the target again (its row MERGED under the source's id); the pinned name survives.
  const v1::Clustering next = Recluster(4);
  ASSERT_EQ(next.state(), v1::CLUSTERING_STATE_SUCCEEDED) << next.error_message();
  EXPECT_EQ(next.theme_count(), 3);
  const std::vector<v1::Cluster> after = Themes();
  ASSERT_EQ(after.size(), 3u);
  std::set<std::string> ids;
  for (const auto& t : after) ids.insert(t.cluster_id());
  EXPECT_EQ(ids.count(themes[0].cluster_id()), 1u);
  EXPECT_EQ(ids.count(themes[1].cluster_id()), 0u);
  v1::GetClusterRequest get;
  get.set_cluster_id(themes[0].cluster_id());
  ASSERT_OK_AND_ASSIGN(v1::GetClusterResponse target, logic_->GetCluster(kProject, get));
  EXPECT_EQ(target.cluster().clustering_version(), next.version());
  EXPECT_EQ(target.cluster().name(), "Broken citations");
  get.set_cluster_id(themes[1].cluster_id());
  ASSERT_OK_AND_ASSIGN(v1::GetClusterResponse source, logic_->GetCluster(kProject, get));
  EXPECT_EQ(source.cluster().state(), v1::CLUSTER_STATE_MERGED);
  EXPECT_EQ(source.cluster().merged_into_cluster_id(), themes[0].cluster_id());
  ASSERT_OK_AND_ASSIGN(a, logic_->GetTraceAssignment(kProject, where));
  EXPECT_EQ(a.cluster_id(), themes[0].cluster_id());
  EXPECT_EQ(a.clustering_version(), next.version());
}

TEST_F(ClusteringDbTest, MembersAndClusteringsPageWithoutGapsOrRepeats) {
  for (int topic = 0; topic < 4; ++topic) AddTopic(topic, 25, 10, "a", now_ - absl::Hours(1));
  SyncAll();
  ASSERT_EQ(Recluster(4).state(), v1::CLUSTERING_STATE_SUCCEEDED);
  ASSERT_EQ(Recluster(4).state(), v1::CLUSTERING_STATE_SUCCEEDED);
  const std::vector<v1::Cluster> themes = Themes();
  ASSERT_FALSE(themes.empty());
  for (v1::MemberOrder order :
       {v1::MEMBER_ORDER_SIMILARITY_DESC, v1::MEMBER_ORDER_ASSIGN_TIME_DESC}) {
    v1::ListClusterMembersRequest request;
    request.set_cluster_id(themes[0].cluster_id());
    request.set_page_size(7);
    request.set_order(order);
    std::set<std::string> seen;
    double last_similarity = 2;
    int pages = 0;
    do {
      ASSERT_OK_AND_ASSIGN(v1::ListClusterMembersResponse page,
                           logic_->ListClusterMembers(kProject, request));
      ++pages;
      EXPECT_LE(page.members_size(), 7);
      for (const auto& m : page.members()) {
        EXPECT_TRUE(seen.insert(m.trace_id()).second) << "repeated " << m.trace_id();
        EXPECT_EQ(m.cluster_id(), themes[0].cluster_id());
        if (order == v1::MEMBER_ORDER_SIMILARITY_DESC) {
          EXPECT_LE(m.similarity(), last_similarity);
          last_similarity = m.similarity();
        }
      }
      request.set_page_token(page.next_page_token());
    } while (!request.page_token().empty());
    EXPECT_EQ(static_cast<int64_t>(seen.size()), themes[0].member_count());
    EXPECT_GE(pages, 2);
  }
  // A token is bound to its filters.
  v1::ListClusterMembersRequest first;
  first.set_cluster_id(themes[0].cluster_id());
  first.set_page_size(3);
  ASSERT_OK_AND_ASSIGN(v1::ListClusterMembersResponse page,
                       logic_->ListClusterMembers(kProject, first));
  ASSERT_FALSE(page.next_page_token().empty());
  v1::ListClusterMembersRequest other = first;
  other.set_order(v1::MEMBER_ORDER_ASSIGN_TIME_DESC);
  other.set_page_token(page.next_page_token());
  EXPECT_THAT(logic_->ListClusterMembers(kProject, other),
              StatusIs(absl::StatusCode::kInvalidArgument));

  v1::ListClusteringsRequest list;
  list.set_page_size(1);
  ASSERT_OK_AND_ASSIGN(v1::ListClusteringsResponse p1, logic_->ListClusterings(kProject, list));
  ASSERT_EQ(p1.clusterings_size(), 1);
  EXPECT_EQ(p1.clusterings(0).version(), 2);
  EXPECT_EQ(p1.latest_version(), 2);
  list.set_page_token(p1.next_page_token());
  ASSERT_OK_AND_ASSIGN(v1::ListClusteringsResponse p2, logic_->ListClusterings(kProject, list));
  ASSERT_EQ(p2.clusterings_size(), 1);
  EXPECT_EQ(p2.clusterings(0).version(), 1);
  EXPECT_TRUE(p2.next_page_token().empty());
}

TEST_F(ClusteringDbTest, TriggerReclusterIsIdempotentAndSingleFlight) {
  for (int topic = 0; topic < 4; ++topic) AddTopic(topic, 10, 5, "a", now_ - absl::Hours(1));
  SyncAll();
  v1::TriggerReclusterRequest request;
  request.set_request_id("req-1");
  request.set_k(3);
  ASSERT_OK_AND_ASSIGN(v1::TriggerReclusterResponse first,
                       logic_->TriggerRecluster(kProject, request));
  EXPECT_TRUE(first.started());
  EXPECT_EQ(first.clustering().state(), v1::CLUSTERING_STATE_PENDING);
  ASSERT_OK_AND_ASSIGN(v1::TriggerReclusterResponse again,
                       logic_->TriggerRecluster(kProject, request));
  EXPECT_TRUE(again.started());
  EXPECT_EQ(again.clustering().version(), first.clustering().version());
  request.set_k(4);
  EXPECT_THAT(logic_->TriggerRecluster(kProject, request),
              StatusIs(absl::StatusCode::kAlreadyExists));
  v1::TriggerReclusterRequest other;
  ASSERT_OK_AND_ASSIGN(v1::TriggerReclusterResponse running,
                       logic_->TriggerRecluster(kProject, other));
  EXPECT_FALSE(running.started());
  EXPECT_EQ(running.clustering().version(), first.clustering().version());
  // Before any success: version 0 is FAILED_PRECONDITION.
  EXPECT_THAT(logic_->GetClustering(kProject, {}), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(bool ran, reclusterer_->RunOnePending());
  EXPECT_TRUE(ran);
  ASSERT_OK_AND_ASSIGN(v1::GetClusteringResponse done, logic_->GetClustering(kProject, {}));
  EXPECT_EQ(done.clustering().state(), v1::CLUSTERING_STATE_SUCCEEDED);
  EXPECT_EQ(done.clustering().params().chosen_k(), 3);
  EXPECT_EQ(done.clustering().progress().fraction_done(), 1.0);

  // A window with too few traces fails without replacing the latest clustering.
  v1::TriggerReclusterRequest tiny;
  *tiny.mutable_window()->mutable_start_time() = ToProtoTime(now_ - absl::Minutes(10));
  *tiny.mutable_window()->mutable_end_time() = ToProtoTime(now_);
  ASSERT_OK_AND_ASSIGN(v1::TriggerReclusterResponse t, logic_->TriggerRecluster(kProject, tiny));
  ASSERT_OK(reclusterer_->RunOnePending().status());
  v1::GetClusteringRequest get;
  get.set_version(t.clustering().version());
  ASSERT_OK_AND_ASSIGN(v1::GetClusteringResponse failed, logic_->GetClustering(kProject, get));
  EXPECT_EQ(failed.clustering().state(), v1::CLUSTERING_STATE_FAILED);
  EXPECT_FALSE(failed.clustering().error_message().empty());
  ASSERT_OK_AND_ASSIGN(done, logic_->GetClustering(kProject, {}));
  EXPECT_EQ(done.clustering().version(), first.clustering().version());
}

TEST_F(ClusteringDbTest, FirstClusteringIsScheduledOnceEnoughTracesArrivedThenEveryInterval) {
  const absl::Time now = absl::Now();
  for (int topic = 0; topic < 3; ++topic) AddTopic(topic, 10, 5, "a", now - absl::Hours(1));
  SyncAll();
  ASSERT_OK_AND_ASSIGN(bool scheduled, reclusterer_->ScheduleIfDue(kProject, now));
  EXPECT_FALSE(scheduled) << "30 flagged traces are below the first-clustering threshold of 50";
  for (int topic = 0; topic < 3; ++topic) AddTopic(topic, 10, 5, "b", now - absl::Hours(1));
  SyncAll();
  ASSERT_OK_AND_ASSIGN(scheduled, reclusterer_->ScheduleIfDue(kProject, now));
  EXPECT_TRUE(scheduled);
  ASSERT_OK_AND_ASSIGN(scheduled, reclusterer_->ScheduleIfDue(kProject, now));
  EXPECT_FALSE(scheduled) << "one job at a time";
  ASSERT_OK_AND_ASSIGN(bool ran, reclusterer_->RunOnePending());
  EXPECT_TRUE(ran);
  ASSERT_OK_AND_ASSIGN(v1::GetClusteringResponse latest, logic_->GetClustering(kProject, {}));
  EXPECT_EQ(latest.clustering().state(), v1::CLUSTERING_STATE_SUCCEEDED)
      << latest.clustering().error_message();
  EXPECT_EQ(latest.clustering().trigger(), v1::CLUSTERING_TRIGGER_SCHEDULED);
  EXPECT_GE(latest.clustering().params().chosen_k(), 2);
  ASSERT_OK_AND_ASSIGN(scheduled, reclusterer_->ScheduleIfDue(kProject, now + absl::Hours(1)));
  EXPECT_FALSE(scheduled) << "the default interval is 24 h";
  ASSERT_OK_AND_ASSIGN(scheduled, reclusterer_->ScheduleIfDue(kProject, now + absl::Hours(25)));
  EXPECT_TRUE(scheduled);
}

TEST_F(ClusteringDbTest, SplitAndSimilaritySearchUseTheLatestModel) {
  AddTopic(0, 30, 10, "a", now_ - absl::Hours(1));
  AddTopic(1, 30, 10, "a", now_ - absl::Hours(1));
  SyncAll();
  const v1::Clustering c = Recluster(2);
  ASSERT_EQ(c.state(), v1::CLUSTERING_STATE_SUCCEEDED) << c.error_message();

  v1::NearestClustersRequest nearest;
  nearest.add_queries()->set_text("the currency conversion euro dollar rate is wrong");
  nearest.add_queries()->set_trace_id("a-0-1");
  nearest.add_queries()->set_trace_id("unknown");
  nearest.add_queries()->set_text("");
  ASSERT_OK_AND_ASSIGN(v1::NearestClustersResponse near,
                       logic_->NearestClusters(kProject, nearest));
  ASSERT_EQ(near.results_size(), 4);
  EXPECT_EQ(near.results(0).code(), 0);
  ASSERT_GE(near.results(0).matches_size(), 1);
  EXPECT_EQ(near.results(1).code(), 0);
  EXPECT_EQ(near.results(2).code(), 5);
  EXPECT_EQ(near.results(3).code(), 3);
  v1::GetTraceAssignmentRequest where;
  where.set_trace_id("a-1-0");
  ASSERT_OK_AND_ASSIGN(v1::GetTraceAssignmentResponse currency,
                       logic_->GetTraceAssignment(kProject, where));
  EXPECT_EQ(near.results(0).matches(0).cluster_id(), currency.cluster_id());

  v1::FindSimilarTracesRequest similar;
  similar.set_trace_id("a-1-0");
  similar.set_top_k(5);
  ASSERT_OK_AND_ASSIGN(v1::FindSimilarTracesResponse found,
                       logic_->FindSimilarTraces(kProject, similar));
  ASSERT_EQ(found.traces_size(), 5);
  for (const auto& t : found.traces()) {
    EXPECT_NE(t.trace_id(), "a-1-0");
    EXPECT_EQ(t.cluster_id(), currency.cluster_id());
  }

  v1::GetClusterRequest get;
  get.set_cluster_id(currency.cluster_id());
  ASSERT_OK_AND_ASSIGN(v1::GetClusterResponse before, logic_->GetCluster(kProject, get));
  v1::SplitClusterRequest split;
  split.set_cluster_id(currency.cluster_id());
  split.set_k(2);
  split.set_request_id("split-1");
  ASSERT_OK_AND_ASSIGN(v1::SplitClusterResponse result, logic_->SplitCluster(kProject, split));
  EXPECT_EQ(result.split_cluster().state(), v1::CLUSTER_STATE_SPLIT);
  ASSERT_EQ(result.new_clusters_size(), 2);
  int64_t moved = 0;
  for (const auto& child : result.new_clusters()) moved += child.member_count();
  EXPECT_EQ(moved, before.cluster().member_count());
  ASSERT_OK_AND_ASSIGN(v1::SplitClusterResponse repeat, logic_->SplitCluster(kProject, split));
  EXPECT_EQ(repeat.new_clusters(0).cluster_id(), result.new_clusters(0).cluster_id());
  split.set_k(3);
  EXPECT_THAT(logic_->SplitCluster(kProject, split), StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK_AND_ASSIGN(v1::GetTraceAssignmentResponse now_in,
                       logic_->GetTraceAssignment(kProject, where));
  EXPECT_EQ(now_in.assignment_source(), v1::ASSIGNMENT_SOURCE_OPERATOR);
  EXPECT_TRUE(now_in.cluster_id() == result.new_clusters(0).cluster_id() ||
              now_in.cluster_id() == result.new_clusters(1).cluster_id());
  ASSERT_OK_AND_ASSIGN(v1::GetClusterResponse after, logic_->GetCluster(kProject, get));
  EXPECT_EQ(after.cluster().state(), v1::CLUSTER_STATE_SPLIT);
  EXPECT_EQ(after.cluster().split_into_cluster_ids_size(), 2);
}

}  // namespace
}  // namespace flywheel::clustering
