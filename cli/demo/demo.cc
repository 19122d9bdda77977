#include "cli/demo/demo.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/demo/scenario.h"
#include "common/log/logger.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"

namespace flywheel::demo {
namespace {

namespace cv1 = ::flywheel::capture::v1;

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

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp out;
  const int64_t micros = absl::ToUnixMicros(t);
  out.set_seconds(micros / 1000000);
  out.set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
  return out;
}

class Demo {
 public:
  explicit Demo(const DemoOptions& options) : options_(options) {
    capture_ = cv1::CaptureService::NewStub(
        grpc::CreateChannel(options.capture_address, grpc::InsecureChannelCredentials()));
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
    window_start_ = scenario_options.end - scenario_options.span - absl::Hours(1);
    window_end_ = scenario_options.end + absl::Hours(1);
    scenario_ = GenerateScenario(scenario_options);
    Say("1/3 simulated product: %d users (%d power, %d casual, %d silent), %d sessions, %d "
        "traces, %d signals (seed %d)",
        options_.users, scenario_.users_by_kind[UserKind::kPower],
        scenario_.users_by_kind[UserKind::kCasual], scenario_.users_by_kind[UserKind::kSilent],
        scenario_.sessions, static_cast<int>(scenario_.truth.size()),
        static_cast<int>(scenario_.items.size() - scenario_.truth.size()),
        static_cast<int>(options_.seed));
    if (!Ingest()) return 1;
    if (!WaitForLabels()) return 1;
    ReportDetection();
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
    context.AddMetadata("authorization", "Bearer " + options_.api_key);
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
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
      *request.mutable_time_range()->mutable_start_time() = ToProto(window_start_);
      *request.mutable_time_range()->mutable_end_time() = ToProto(window_end_);
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
    Say("2/3 labeling: waiting for capture's labeler");
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
    Say("3/3 what the signals found (hidden truth: %d of %d traces are failures)", failures,
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
        "\"composite_recall\":%.4f}",
        static_cast<int>(scenario_.truth.size()),
        static_cast<int>(scenario_.items.size() - scenario_.truth.size()),
        static_cast<int>(ingest_counts_.accepted()), static_cast<int>(ingest_counts_.duplicate()),
        static_cast<int>(ingest_counts_.rejected()), static_cast<int>(labels_.size()),
        explicit_coverage_, implicit_coverage_, thumbs_.Precision(), thumbs_.Recall(),
        composite_.Precision(), composite_.Recall());
    std::ofstream out(options_.json_path);
    out << json << "\n";
    if (!out) {
      std::fprintf(stderr, "demo: cannot write %s\n", options_.json_path.c_str());
      return false;
    }
    return true;
  }

  const DemoOptions& options_;
  std::unique_ptr<cv1::CaptureService::Stub> capture_;
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
  return Demo(options).Run();
}

}  // namespace flywheel::demo
