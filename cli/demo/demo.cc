#include "cli/demo/demo.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/cli_util.h"
#include "cli/demo/scenario.h"
#include "common/log/logger.h"
#include "common/proto/proto_time.h"
#include "flywheel/annotation/v1/annotation.grpc.pb.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "flywheel/clustering/v1/clustering.grpc.pb.h"
#include "flywheel/evalset/v1/evalset.grpc.pb.h"

namespace flywheel::demo {
namespace {

namespace cv1 = ::flywheel::capture::v1;
namespace clv1 = ::flywheel::clustering::v1;
namespace av1 = ::flywheel::annotation::v1;
namespace ev1 = ::flywheel::evalset::v1;

// Precision and recall of a detector against the hidden truth.
struct Detection {
  int true_positive = 0;
  int false_positive = 0;
  int false_negative = 0;
  double Precision() const {
    const int flagged = true_positive + false_positive;
    return flagged == 0 ? 0.0 : static_cast<double>(true_positive) / flagged;
  }
  double Recall() const {
    const int failures = true_positive + false_negative;
    return failures == 0 ? 0.0 : static_cast<double>(true_positive) / failures;
  }
  void Count(bool detected, bool failure) {
    if (detected && failure) ++true_positive;
    if (detected && !failure) ++false_positive;
    if (!detected && failure) ++false_negative;
  }
};

class Demo {
 public:
  explicit Demo(const DemoOptions& options) : options_(options) {
    capture_ = cv1::CaptureService::NewStub(
        grpc::CreateChannel(options.capture_address, grpc::InsecureChannelCredentials()));
    clustering_ = clv1::ClusteringService::NewStub(
        grpc::CreateChannel(options.clustering_address, grpc::InsecureChannelCredentials()));
    annotation_ = av1::AnnotationService::NewStub(
        grpc::CreateChannel(options.annotation_address, grpc::InsecureChannelCredentials()));
    evalset_ = ev1::EvalSetService::NewStub(
        grpc::CreateChannel(options.evalset_address, grpc::InsecureChannelCredentials()));
  }

  int Run() {
    ScenarioOptions scenario_options;
    scenario_options.seed = options_.seed;
    scenario_options.users = options_.users;
    // The traffic ends an hour ago, so capture's abandonment sweeper (30 min default) sees it.
    scenario_options.end = absl::Now() - absl::Hours(1);
    scenario_options.id_prefix =
        options_.run_id.empty()
            ? absl::FormatTime("demo-%Y%m%d%H%M%S", absl::Now(), absl::UTCTimeZone())
            : options_.run_id;
    scenario_prefix_ = scenario_options.id_prefix;
    window_start_ = scenario_options.end - scenario_options.span - absl::Hours(1);
    window_end_ = scenario_options.end + absl::Hours(1);
    scenario_ = GenerateScenario(scenario_options);
    Say("1/6 simulated product: %d users (%d power, %d casual, %d silent), %d sessions, %d "
        "traces, %d signals (seed %d)",
        options_.users, scenario_.users_by_kind[UserKind::kPower],
        scenario_.users_by_kind[UserKind::kCasual], scenario_.users_by_kind[UserKind::kSilent],
        scenario_.sessions, static_cast<int>(scenario_.truth.size()),
        static_cast<int>(scenario_.items.size() - scenario_.truth.size()),
        static_cast<int>(options_.seed));
    if (!Ingest()) return 1;
    if (!WaitForLabels()) return 1;
    ReportDetection();
    if (!Themes()) return WriteJson(), 1;
    if (!Review()) return WriteJson(), 1;
    if (!Evals()) return WriteJson(), 1;
    return WriteJson() ? 0 : 1;
  }

 private:
  template <typename... Args>
  void Say(const absl::FormatSpec<Args...>& format, const Args&... args) {
    if (options_.quiet) return;
    std::printf("%s\n", absl::StrFormat(format, args...).c_str());
    std::fflush(stdout);
  }

  bool Fail(const std::string& step, const grpc::Status& status) {
    if (!options_.quiet) std::printf("\n");
    std::fprintf(stderr, "demo: %s failed: %s (%s)\n", step.c_str(), status.error_message().c_str(),
                 StatusCodeName(status.error_code()));
    return false;
  }

  static const char* StatusCodeName(grpc::StatusCode code) {
    switch (code) {
      case grpc::StatusCode::UNAVAILABLE:
        return "UNAVAILABLE: is the service running?";
      case grpc::StatusCode::UNAUTHENTICATED:
        return "UNAUTHENTICATED: check the API key";
      case grpc::StatusCode::PERMISSION_DENIED:
        return "PERMISSION_DENIED: the key lacks a scope";
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        return "DEADLINE_EXCEEDED";
      default:
        return "see the service log";
    }
  }

  void Prepare(grpc::ClientContext& context, absl::Duration timeout = absl::Seconds(30)) {
    cli::PrepareCall(context, options_.api_key, timeout);
  }

  bool Ingest() {
    constexpr size_t kBatch = 500;
    const size_t total = scenario_.items.size();
    cv1::IngestCounts counts;
    const absl::Time start = absl::Now();
    for (size_t begin = 0; begin < total; begin += kBatch) {
      cv1::IngestRequest request;
      for (size_t i = begin; i < std::min(total, begin + kBatch); ++i) {
        *request.add_items() = scenario_.items[i];
      }
      cv1::IngestResponse response;
      grpc::Status status;
      // Retried on UNAVAILABLE: a batch is idempotent (client ids), so a retry is safe.
      for (int attempt = 0; attempt < 5; ++attempt) {
        grpc::ClientContext context;
        Prepare(context);
        status = capture_->Ingest(&context, request, &response);
        if (status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
        absl::SleepFor(absl::Seconds(1 << attempt));
      }
      if (!status.ok()) return Fail("capture Ingest", status);
      counts.set_accepted(counts.accepted() + response.counts().accepted());
      counts.set_duplicate(counts.duplicate() + response.counts().duplicate());
      counts.set_rejected(counts.rejected() + response.counts().rejected());
      for (const cv1::IngestResult& result : response.results()) {
        if (result.result().outcome() == common::v1::ITEM_OUTCOME_REJECTED) {
          std::fprintf(stderr, "demo: item rejected: %s\n",
                       result.result().ShortDebugString().c_str());
        }
      }
      if (!options_.quiet) {
        std::printf("\r    ingest %zu/%zu items", std::min(total, begin + kBatch), total);
        std::fflush(stdout);
      }
    }
    if (!options_.quiet) std::printf("\n");
    Say("    capture accepted %d, duplicate %d, rejected %d in %.1f s",
        static_cast<int>(counts.accepted()), static_cast<int>(counts.duplicate()),
        static_cast<int>(counts.rejected()), absl::ToDoubleSeconds(absl::Now() - start));
    ingest_counts_ = counts;
    return counts.rejected() == 0;
  }

  // Reads every demo trace's current label. Returns false on an RPC error.
  bool ReadLabels(std::map<std::string, cv1::TraceLabel>* labels) {
    labels->clear();
    std::string token;
    do {
      cv1::ListTracesRequest request;
      request.set_page_size(100);
      request.set_page_token(token);
      request.mutable_read_mask()->add_paths("trace_id");
      request.mutable_read_mask()->add_paths("label");
      *request.mutable_time_range()->mutable_start_time() = ToProtoTime(window_start_);
      *request.mutable_time_range()->mutable_end_time() = ToProtoTime(window_end_);
      cv1::ListTracesResponse response;
      grpc::ClientContext context;
      Prepare(context);
      grpc::Status status = capture_->ListTraces(&context, request, &response);
      if (!status.ok()) return Fail("capture ListTraces", status);
      for (const cv1::Trace& trace : response.traces()) {
        if (scenario_.truth.count(trace.trace_id()) && trace.has_label()) {
          (*labels)[trace.trace_id()] = trace.label();
        }
      }
      token = response.next_page_token();
    } while (!token.empty());
    return true;
  }

  // Waits until every trace has a label and the flagged count has been stable for a few polls
  // (late evidence such as abandonment sweeps and regenerate pairs settles after ingestion).
  bool WaitForLabels() {
    Say("2/6 labeling: waiting for capture's labeler");
    const absl::Time deadline = absl::Now() + options_.step_timeout;
    int stable = 0;
    int last_flagged = -1;
    while (true) {
      if (!ReadLabels(&labels_)) return false;
      int flagged = 0;
      for (const auto& [id, label] : labels_) flagged += label.flagged();
      const bool all = labels_.size() == scenario_.truth.size();
      stable = (all && flagged == last_flagged) ? stable + 1 : 0;
      last_flagged = flagged;
      if (!options_.quiet) {
        std::printf("\r    labeled %zu/%zu traces, %d flagged", labels_.size(),
                    scenario_.truth.size(), flagged);
        std::fflush(stdout);
      }
      if (stable >= 2) break;
      if (absl::Now() > deadline) {
        if (!options_.quiet) std::printf("\n");
        std::fprintf(stderr, "demo: labels did not settle within %s\n",
                     absl::FormatDuration(options_.step_timeout).c_str());
        return false;
      }
      absl::SleepFor(absl::Seconds(2));
    }
    if (!options_.quiet) std::printf("\n");
    return true;
  }

  void ReportDetection() {
    int traces = 0, failures = 0, explicit_covered = 0, implicit_covered = 0;
    std::set<std::string> sessions_with_implicit;
    for (const auto& [id, truth] : scenario_.truth) {
      ++traces;
      failures += truth.quality == Quality::kBad;
      explicit_covered += truth.any_explicit;
      implicit_covered += truth.any_implicit || truth.outcome;
      const bool failure = truth.quality == Quality::kBad;
      thumbs_.Count(truth.thumbs_down, failure);
      auto it = labels_.find(id);
      composite_.Count(it != labels_.end() && it->second.flagged(), failure);
      if (it != labels_.end() && it->second.flagged() && failure) ++found_by_theme_[truth.theme];
      if (failure) ++failures_by_theme_[truth.theme];
    }
    explicit_coverage_ = static_cast<double>(explicit_covered) / traces;
    implicit_coverage_ = static_cast<double>(implicit_covered) / traces;
    Say("3/6 what the signals found (hidden truth: %d of %d traces are failures)", failures,
        traces);
    Say("    coverage: explicit feedback on %.1f%% of traces, implicit or outcome signals on "
        "%.1f%%",
        100 * explicit_coverage_, 100 * implicit_coverage_);
    Say("    %-34s %9s %9s %9s", "detector", "flagged", "precision", "recall");
    Say("    %-34s %9d %8.0f%% %8.0f%%", "thumbs down only",
        thumbs_.true_positive + thumbs_.false_positive, 100 * thumbs_.Precision(),
        100 * thumbs_.Recall());
    Say("    %-34s %9d %8.0f%% %8.0f%%", "Flywheel composite labels",
        composite_.true_positive + composite_.false_positive, 100 * composite_.Precision(),
        100 * composite_.Recall());
    for (const auto& [theme, count] : failures_by_theme_) {
      Say("      %-32s %4d failures, %4d flagged (%.0f%%)", theme, count, found_by_theme_[theme],
          100.0 * found_by_theme_[theme] / count);
    }
  }

  bool WriteJson() {
    if (options_.json_path.empty()) return true;
    std::string json = absl::StrFormat(
        "{\"traces\":%d,\"signals\":%d,\"accepted\":%d,\"duplicate\":%d,\"rejected\":%d,"
        "\"labeled\":%d,\"explicit_coverage\":%.4f,\"implicit_coverage\":%.4f,"
        "\"thumbs_precision\":%.4f,\"thumbs_recall\":%.4f,\"composite_precision\":%.4f,"
        "\"composite_recall\":%.4f,\"themes\":%d,\"hidden_themes_recovered\":%d,"
        "\"theme_purity\":%.4f,\"reviewed\":%d,\"promoted\":%d,\"cases\":%d,"
        "\"pass_rate_delta_points\":%.2f}",
        static_cast<int>(scenario_.truth.size()),
        static_cast<int>(scenario_.items.size() - scenario_.truth.size()),
        static_cast<int>(ingest_counts_.accepted()), static_cast<int>(ingest_counts_.duplicate()),
        static_cast<int>(ingest_counts_.rejected()), static_cast<int>(labels_.size()),
        explicit_coverage_, implicit_coverage_, thumbs_.Precision(), thumbs_.Recall(),
        composite_.Precision(), composite_.Recall(), themes_found_, hidden_themes_recovered_,
        theme_purity_, reviewed_, confirmed_failures_, cases_, pass_rate_delta_);
    std::ofstream out(options_.json_path);
    out << json << "\n";
    if (!out) {
      std::fprintf(stderr, "demo: cannot write %s\n", options_.json_path.c_str());
      return false;
    }
    return true;
  }

  // ---- 4/6 themes -------------------------------------------------------------------------

  static constexpr char kNotAFailure[] = "(not a failure)";

  // The most common hidden theme among members: (name, its count, all members).
  static std::tuple<std::string, int, int> Majority(const std::map<std::string, int>& hidden) {
    std::string majority = "-";
    int majority_count = 0;
    int members = 0;
    for (const auto& [name, count] : hidden) {
      members += count;
      if (count > majority_count) majority = name, majority_count = count;
    }
    return {majority, majority_count, members};
  }

  static std::string Title(const clv1::Cluster& cluster) {
    if (!cluster.name().empty()) return cluster.name();
    std::string keywords;
    for (int i = 0; i < std::min(4, cluster.keywords_size()); ++i) {
      absl::StrAppend(&keywords, i ? ", " : "", cluster.keywords(i).term());
    }
    return keywords;
  }

  bool ListLevel(int64_t version, clv1::ClusterLevel level, std::vector<clv1::Cluster>* out) {
    std::string token;
    do {
      clv1::ListClustersRequest list;
      list.set_clustering_version(version);
      list.set_level(level);
      list.set_page_size(100);
      list.set_page_token(token);
      clv1::ListClustersResponse listed;
      grpc::ClientContext context;
      Prepare(context);
      grpc::Status status = clustering_->ListClusters(&context, list, &listed);
      if (!status.ok()) return Fail("clustering ListClusters", status);
      for (const clv1::Cluster& cluster : listed.clusters()) out->push_back(cluster);
      token = listed.next_page_token();
    } while (!token.empty());
    return true;
  }

  bool Themes() {
    Say("4/6 themes: re-clustering the flagged traces");
    clv1::TriggerReclusterRequest request;
    request.set_request_id(scenario_prefix_ + "-recluster");
    *request.mutable_window()->mutable_start_time() = ToProtoTime(window_start_);
    *request.mutable_window()->mutable_end_time() = ToProtoTime(window_end_);
    clv1::TriggerReclusterResponse response;
    {
      grpc::ClientContext context;
      Prepare(context);
      grpc::Status status = clustering_->TriggerRecluster(&context, request, &response);
      if (!status.ok()) return Fail("clustering TriggerRecluster", status);
    }
    const int64_t version = response.clustering().version();
    const absl::Time deadline = absl::Now() + options_.step_timeout;
    clv1::Clustering clustering = response.clustering();
    while (clustering.state() != clv1::CLUSTERING_STATE_SUCCEEDED) {
      if (clustering.state() == clv1::CLUSTERING_STATE_FAILED) {
        if (!options_.quiet) std::printf("\n");
        std::fprintf(stderr, "demo: re-clustering failed: %s\n",
                     clustering.error_message().c_str());
        return false;
      }
      if (absl::Now() > deadline) {
        if (!options_.quiet) std::printf("\n");
        std::fprintf(stderr, "demo: re-clustering did not finish within %s\n",
                     absl::FormatDuration(options_.step_timeout).c_str());
        return false;
      }
      absl::SleepFor(absl::Seconds(1));
      clv1::GetClusteringRequest get;
      get.set_version(version);
      clv1::GetClusteringResponse got;
      grpc::ClientContext context;
      Prepare(context);
      grpc::Status status = clustering_->GetClustering(&context, get, &got);
      if (!status.ok()) return Fail("clustering GetClustering", status);
      clustering = got.clustering();
      if (!options_.quiet) {
        std::printf("\r    clustering v%lld: %.0f%%", static_cast<long long>(version),
                    100 * clustering.progress().fraction_done());
        std::fflush(stdout);
      }
    }
    if (!options_.quiet) std::printf("\n");
    std::vector<clv1::Cluster> themes;
    std::vector<clv1::Cluster> groups;
    if (!ListLevel(version, clv1::CLUSTER_LEVEL_THEME, &themes)) return false;
    if (!ListLevel(version, clv1::CLUSTER_LEVEL_GROUP, &groups)) return false;
    // Members of each theme, compared with the hidden failure themes of this run's traffic.
    std::map<std::string, std::map<std::string, int>> hidden_by_theme;
    std::map<std::string, int> best_by_hidden;  // hidden theme -> members in its best theme
    int assigned = 0;
    int majority_total = 0;
    for (const clv1::Cluster& theme : themes) {
      std::map<std::string, int>& hidden = hidden_by_theme[theme.cluster_id()];
      std::string page;
      do {
        clv1::ListClusterMembersRequest list;
        list.set_cluster_id(theme.cluster_id());
        list.set_clustering_version(version);
        list.set_page_size(500);
        list.set_page_token(page);
        clv1::ListClusterMembersResponse listed;
        grpc::ClientContext context;
        Prepare(context);
        grpc::Status status = clustering_->ListClusterMembers(&context, list, &listed);
        if (!status.ok()) return Fail("clustering ListClusterMembers", status);
        for (const clv1::ClusterMember& member : listed.members()) {
          auto it = scenario_.truth.find(member.trace_id());
          if (it == scenario_.truth.end()) continue;
          ++hidden[it->second.theme.empty() ? std::string(kNotAFailure) : it->second.theme];
        }
        page = listed.next_page_token();
      } while (!page.empty());
      const auto [majority, majority_count, members] = Majority(hidden);
      majority_total += majority_count;
      assigned += members;
      if (members > 0 && majority != kNotAFailure) {
        best_by_hidden[majority] = std::max(best_by_hidden[majority], majority_count);
      }
    }
    Say("    %d themes in %d groups from %lld flagged traces (clustering v%lld); next to each, "
        "the hidden theme most of its members have:",
        static_cast<int>(themes.size()), static_cast<int>(groups.size()),
        static_cast<long long>(clustering.member_count()), static_cast<long long>(version));
    for (const clv1::Cluster& group : groups) {
      std::map<std::string, int> hidden;
      int children = 0;
      for (const clv1::Cluster& theme : themes) {
        if (theme.parent_cluster_id() != group.cluster_id()) continue;
        ++children;
        for (const auto& [name, count] : hidden_by_theme[theme.cluster_id()]) hidden[name] += count;
      }
      const auto [majority, majority_count, members] = Majority(hidden);
      Say("    group %-36.36s %2d themes %4d traces  ~ %s (%.0f%%)", Title(group), children,
          members, majority, members ? 100.0 * majority_count / members : 0.0);
    }
    constexpr size_t kShown = 12;
    for (size_t t = 0; t < themes.size() && t < kShown; ++t) {
      const auto [majority, majority_count, members] =
          Majority(hidden_by_theme[themes[t].cluster_id()]);
      Say("      theme %-34.34s %4lld traces %4lld users  ~ %s (%.0f%%)", Title(themes[t]),
          static_cast<long long>(themes[t].member_count()),
          static_cast<long long>(themes[t].distinct_users()), majority,
          members ? 100.0 * majority_count / members : 0.0);
    }
    if (themes.size() > kShown) {
      Say("      ... and %d smaller themes", static_cast<int>(themes.size() - kShown));
    }
    themes_found_ = static_cast<int>(themes.size());
    hidden_themes_recovered_ = static_cast<int>(best_by_hidden.size());
    theme_purity_ = assigned ? static_cast<double>(majority_total) / assigned : 0;
    Say("    hidden themes recovered: %d of %d; purity (members sharing their theme's majority "
        "hidden theme): %.0f%%",
        hidden_themes_recovered_, static_cast<int>(std::size(kThemes)), 100 * theme_purity_);
    return true;
  }

  // ---- 5/6 review queue ---------------------------------------------------------------------

  bool Review() {
    Say("5/6 review: a cluster-balanced queue, worked by a simulated reviewer who reads each "
        "response");
    // The eval set that reviewed failures are promoted into.
    {
      ev1::CreateEvalSetRequest request;
      request.mutable_eval_set()->set_eval_set_id(scenario_prefix_ + "-regressions");
      request.mutable_eval_set()->set_display_name("Demo regressions");
      request.mutable_eval_set()->set_description("Reviewed failures of the simulated product");
      ev1::CreateEvalSetResponse response;
      grpc::ClientContext context;
      Prepare(context);
      grpc::Status status = evalset_->CreateEvalSet(&context, request, &response);
      if (!status.ok()) return Fail("eval-set CreateEvalSet", status);
      eval_set_id_ = response.eval_set().eval_set_id();
    }
    {
      av1::CreateQueueRequest request;
      av1::Queue* queue = request.mutable_queue();
      queue->set_queue_id(scenario_prefix_ + "-triage");
      queue->set_display_name("Demo triage");
      queue->set_description("Flagged traces, a few per theme per day");
      queue->set_reviewers_per_item(1);
      queue->mutable_lease_duration()->set_seconds(300);
      queue->set_default_eval_set_id(eval_set_id_);
      queue->mutable_promotion_policy()->set_mode(av1::PROMOTION_MODE_MANUAL);
      queue->mutable_sampling()->set_strategy(av1::SAMPLING_STRATEGY_CLUSTER_BALANCED);
      // Quotas are spread pro rata over the day (never front-loaded); a demo wants its items now,
      // so the per-theme quota is high and the simulated reviewer stops after max_reviews.
      queue->mutable_sampling()->set_count_per_stratum(10000);
      av1::RubricField* verdict = queue->mutable_rubric()->add_fields();
      verdict->set_key("verdict");
      verdict->set_label("Is the response a failure?");
      verdict->set_required(true);
      for (const char* value : {"fail", "pass"}) {
        verdict->mutable_categorical()->add_options()->set_value(value);
      }
      av1::RubricField* kind = queue->mutable_rubric()->add_fields();
      kind->set_key("failure_kind");
      kind->set_label("What went wrong");
      for (const char* theme : kThemes)
        kind->mutable_categorical()->add_options()->set_value(theme);
      kind->mutable_categorical()->add_options()->set_value("other");
      av1::RubricField* correction = queue->mutable_rubric()->add_fields();
      correction->set_key("correction");
      correction->set_label("What the answer should have been");
      correction->mutable_correction()->set_prefill_with_output(true);
      av1::CreateQueueResponse response;
      grpc::ClientContext context;
      Prepare(context);
      grpc::Status status = annotation_->CreateQueue(&context, request, &response);
      if (!status.ok()) return Fail("annotation CreateQueue", status);
      queue_id_ = response.queue().queue_id();
    }
    // Wait for the filler to enqueue, then review until the queue is empty.
    const absl::Time deadline = absl::Now() + options_.step_timeout;
    const std::string reviewer = "demo-reviewer";
    // First wait for the filler (it follows capture's feed and asks clustering for themes).
    while (true) {
      av1::GetQueueProgressRequest request;
      request.set_queue_id(queue_id_);
      av1::GetQueueProgressResponse progress;
      grpc::ClientContext context;
      Prepare(context);
      grpc::Status status = annotation_->GetQueueProgress(&context, request, &progress);
      if (!status.ok()) return Fail("annotation GetQueueProgress", status);
      if (progress.total_count() > 0) break;
      if (absl::Now() > deadline) {
        std::fprintf(stderr, "demo: the queue received no items within %s\n",
                     absl::FormatDuration(options_.step_timeout).c_str());
        return false;
      }
      absl::SleepFor(absl::Milliseconds(500));
    }
    int idle_polls = 0;
    while (absl::Now() < deadline && idle_polls < 2 && reviewed_ < options_.max_reviews) {
      av1::ClaimItemRequest claim;
      claim.set_queue_id(queue_id_);
      claim.set_reviewer_id(reviewer);
      claim.mutable_wait_timeout()->set_seconds(2);
      av1::ClaimItemResponse claimed;
      {
        grpc::ClientContext context;
        Prepare(context);
        grpc::Status status = annotation_->ClaimItem(&context, claim, &claimed);
        if (!status.ok()) return Fail("annotation ClaimItem", status);
      }
      if (!claimed.has_item()) {
        ++idle_polls;
        continue;
      }
      idle_polls = 0;
      const std::string& trace_id = claimed.item().trace_id();
      // The simulated reviewer reads the response (it knows this product's failure modes), so
      // it can label items of earlier demo runs too; the hidden truth only supplies corrections.
      const std::string theme = ReviewOutput(claimed.item().snapshot().output());
      const bool failure = !theme.empty();
      auto it = scenario_.truth.find(trace_id);
      av1::SubmitAnnotationRequest submit;
      submit.set_queue_id(queue_id_);
      submit.set_lease_id(claimed.lease().lease_id());
      submit.set_reviewer_id(reviewer);
      (*submit.mutable_values())["verdict"].mutable_categorical()->add_values(failure ? "fail"
                                                                                      : "pass");
      if (failure) {
        (*submit.mutable_values())["failure_kind"].mutable_categorical()->add_values(theme);
        if (it != scenario_.truth.end()) {
          (*submit.mutable_values())["correction"].set_correction(it->second.good_output);
        }
        reviewed_theme_[trace_id] = theme;
      }
      submit.set_promote(failure);
      av1::SubmitAnnotationResponse submitted;
      grpc::ClientContext context;
      Prepare(context);
      grpc::Status status = annotation_->SubmitAnnotation(&context, submit, &submitted);
      if (!status.ok()) return Fail("annotation SubmitAnnotation", status);
      ++reviewed_;
      confirmed_failures_ += failure;
      if (!options_.quiet) {
        std::printf("\r    reviewed %d items: %d confirmed failures promoted", reviewed_,
                    confirmed_failures_);
        std::fflush(stdout);
      }
    }
    if (!options_.quiet && reviewed_ > 0) std::printf("\n");
    av1::GetQueueProgressRequest request;
    request.set_queue_id(queue_id_);
    av1::GetQueueProgressResponse progress;
    grpc::ClientContext context;
    Prepare(context);
    grpc::Status status = annotation_->GetQueueProgress(&context, request, &progress);
    if (!status.ok()) return Fail("annotation GetQueueProgress", status);
    Say("    queue %s: %lld items, %lld done, %lld pending, %lld leased, %lld skipped", queue_id_,
        static_cast<long long>(progress.total_count()),
        static_cast<long long>(progress.done_count()),
        static_cast<long long>(progress.pending_count()),
        static_cast<long long>(progress.leased_count()),
        static_cast<long long>(progress.skipped_count()));
    if (confirmed_failures_ == 0) {
      std::fprintf(stderr, "demo: the reviewer confirmed no failures among %d items\n", reviewed_);
      return false;
    }
    return true;
  }

  // ---- 6/6 eval set and runs ----------------------------------------------------------------

  bool Evals() {
    Say("6/6 evals: promoted cases, a run before and after a pretend fix, release notes");
    // Promotion goes through annotation's outbox: wait until every promoted case has arrived.
    std::vector<ev1::Case> cases;
    const absl::Time deadline = absl::Now() + options_.step_timeout;
    while (true) {
      cases.clear();
      std::string token;
      do {
        ev1::ListCasesRequest request;
        request.set_eval_set_id(eval_set_id_);
        request.mutable_version()->set_latest(true);
        request.set_page_size(200);
        request.set_page_token(token);
        ev1::ListCasesResponse response;
        grpc::ClientContext context;
        Prepare(context);
        grpc::Status status = evalset_->ListCases(&context, request, &response);
        // An eval set without cases has no version yet: nothing has arrived so far.
        if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) break;
        if (!status.ok()) return Fail("eval-set ListCases", status);
        for (const ev1::Case& c : response.cases()) cases.push_back(c);
        token = response.next_page_token();
      } while (!token.empty());
      if (static_cast<int>(cases.size()) >= confirmed_failures_) break;
      if (absl::Now() > deadline) {
        std::fprintf(stderr, "demo: %d of %d promoted cases arrived within %s\n",
                     static_cast<int>(cases.size()), confirmed_failures_,
                     absl::FormatDuration(options_.step_timeout).c_str());
        return false;
      }
      absl::SleepFor(absl::Seconds(1));
    }
    cases_ = static_cast<int>(cases.size());
    Say("    eval set %s: %d cases", eval_set_id_, cases_);
    // The pretend fix (prompt v4): fixes most hallucinated citations and truncated code, some
    // stale data and refusals, nothing about tone; and breaks a few answers that used to pass.
    const std::map<std::string, double> fixed_share = {{"hallucinated_citation", 0.85},
                                                       {"truncated_code", 0.9},
                                                       {"stale_data", 0.5},
                                                       {"refused_valid_request", 0.3},
                                                       {"wrong_tone", 0.0}};
    std::mt19937_64 rng(options_.seed);
    std::string run_ids[2];
    for (int r = 0; r < 2; ++r) {
      ev1::CreateRunRequest create;
      create.mutable_run()->set_eval_set_id(eval_set_id_);
      create.mutable_run()->set_candidate_label(r == 0 ? "prompt v3" : "prompt v4");
      create.mutable_version()->set_latest(true);
      ev1::CreateRunResponse created;
      {
        grpc::ClientContext context;
        Prepare(context);
        grpc::Status status = evalset_->CreateRun(&context, create, &created);
        if (!status.ok()) return Fail("eval-set CreateRun", status);
      }
      run_ids[r] = created.run().run_id();
      ev1::RecordResultsRequest record;
      record.set_run_id(run_ids[r]);
      for (const ev1::Case& c : cases) {
        auto it = reviewed_theme_.find(c.source_trace_id());
        const std::string theme = it == reviewed_theme_.end() ? "" : it->second;
        bool pass = theme.empty();
        if (r == 1) {
          const double u = std::uniform_real_distribution<double>(0, 1)(rng);
          if (!pass)
            pass = u < (fixed_share.count(theme) ? fixed_share.at(theme) : 0.0);
          else
            pass = u > 0.1;
        }
        ev1::CaseResult* result = record.add_results();
        result->set_case_id(c.case_id());
        result->set_verdict(pass ? ev1::VERDICT_PASS : ev1::VERDICT_FAIL);
        result->set_score(pass ? 1.0 : 0.0);
      }
      {
        grpc::ClientContext context;
        Prepare(context);
        ev1::RecordResultsResponse recorded;
        grpc::Status status = evalset_->RecordResults(&context, record, &recorded);
        if (!status.ok()) return Fail("eval-set RecordResults", status);
      }
      ev1::CompleteRunRequest complete;
      complete.set_run_id(run_ids[r]);
      complete.set_state(ev1::RUN_STATE_COMPLETED);
      ev1::CompleteRunResponse completed;
      grpc::ClientContext context;
      Prepare(context);
      grpc::Status status = evalset_->CompleteRun(&context, complete, &completed);
      if (!status.ok()) return Fail("eval-set CompleteRun", status);
    }
    ev1::CompareRunsRequest compare;
    compare.set_baseline_run_id(run_ids[0]);
    compare.set_candidate_run_id(run_ids[1]);
    compare.set_release_notes_min_cases(1);
    ev1::CompareRunsResponse comparison;
    grpc::ClientContext context;
    Prepare(context);
    grpc::Status status = evalset_->CompareRuns(&context, compare, &comparison);
    if (!status.ok()) return Fail("eval-set CompareRuns", status);
    pass_rate_delta_ = comparison.pass_rate_delta_points();
    Say("    pass rate %+.1f points; %lld fixes, %lld regressions", pass_rate_delta_,
        static_cast<long long>(comparison.fix_count()),
        static_cast<long long>(comparison.regression_count()));
    Say("\nRelease notes (eval-set CompareRuns):\n%s", comparison.release_notes());
    return true;
  }

  const DemoOptions& options_;
  std::unique_ptr<cv1::CaptureService::Stub> capture_;
  std::unique_ptr<clv1::ClusteringService::Stub> clustering_;
  std::unique_ptr<av1::AnnotationService::Stub> annotation_;
  std::unique_ptr<ev1::EvalSetService::Stub> evalset_;
  Scenario scenario_;
  cv1::IngestCounts ingest_counts_;
  std::map<std::string, cv1::TraceLabel> labels_;
  Detection thumbs_;
  Detection composite_;
  std::map<std::string, int> failures_by_theme_;
  std::map<std::string, int> found_by_theme_;
  double explicit_coverage_ = 0;
  double implicit_coverage_ = 0;
  absl::Time window_start_;
  absl::Time window_end_;
  std::string scenario_prefix_;
  int themes_found_ = 0;
  int hidden_themes_recovered_ = 0;
  double theme_purity_ = 0;
  std::string eval_set_id_;
  std::string queue_id_;
  int reviewed_ = 0;
  std::map<std::string, std::string> reviewed_theme_;  // trace id -> failure theme
  int confirmed_failures_ = 0;
  int cases_ = 0;
  double pass_rate_delta_ = 0;
};

}  // namespace

int RunDemo(const DemoOptions& options) {
  if (options.api_key.empty()) {
    std::fprintf(stderr, "demo: an API key is required (--key_file)\n");
    return 2;
  }
  if (options.users < 10 || options.users > 100000) {
    std::fprintf(stderr, "demo: --users must be in 10..100000\n");
    return 2;
  }
  if (options.max_reviews < 1 || options.max_reviews > 10000) {
    std::fprintf(stderr, "demo: --max_reviews must be in 1..10000\n");
    return 2;
  }
  return Demo(options).Run();
}

}  // namespace flywheel::demo
