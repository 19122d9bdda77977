// Loop freshness: how long after a thumbs-down is acknowledged the trace is claimable in a review
// queue fed by its theme, under a steady background load. bench/loop/run.sh drives it against
// the four real services; see docs/benchmarks.md ("Loop freshness").
//
// 1. Warm-up: the simulated product (cli/demo/scenario) is ingested and re-clustered once, so
//    themes exist; the parent group of "hallucinated citation" failures is looked up by text.
// 2. A queue whose source rule is that group (sampling ALL) is created.
// 3. For --seconds, a background thread ingests fresh simulated traffic at --background_rate
//    traces/s, while every --probe_interval a probe sends a new failing research answer (a
//    fabricated citation) and then a thumbs-down with a comment. The clock starts when capture
//    acknowledges the thumbs-down.
// 4. A checker polls GetItem for every outstanding probe; freshness = the item's enqueue_time
//    minus the acknowledgement time (same machine clock). Probes not enqueued within --give_up
//    are reported as missing.
// The raw Postgres floor of any such pipeline, measured in the same run: a committed INSERT +
// NOTIFY seen by a LISTENing connection (libpqxx), p50/p95 over the same number of samples.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/demo/scenario.h"
#include "common/config/flags.h"
#include "common/proto/proto_time.h"
#include "flywheel/annotation/v1/annotation.grpc.pb.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "flywheel/clustering/v1/clustering.grpc.pb.h"

namespace flywheel::bench {
namespace {

namespace cv1 = ::flywheel::capture::v1;
namespace clv1 = ::flywheel::clustering::v1;
namespace av1 = ::flywheel::annotation::v1;

struct Options {
  std::string capture_address;
  std::string clustering_address;
  std::string annotation_address;
  std::string key;
  std::string database_url;
  int warmup_users = 200;
  int background_rate = 100;
  absl::Duration seconds = absl::Seconds(60);
  absl::Duration probe_interval = absl::Milliseconds(500);
  absl::Duration give_up = absl::Seconds(30);
};

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  return values[index];
}

class LoopBench {
 public:
  explicit LoopBench(const Options& options) : options_(options) {
    capture_ = cv1::CaptureService::NewStub(
        grpc::CreateChannel(options.capture_address, grpc::InsecureChannelCredentials()));
    clustering_ = clv1::ClusteringService::NewStub(
        grpc::CreateChannel(options.clustering_address, grpc::InsecureChannelCredentials()));
    annotation_ = av1::AnnotationService::NewStub(
        grpc::CreateChannel(options.annotation_address, grpc::InsecureChannelCredentials()));
  }

  int Run() {
    if (!Warmup()) return 1;
    if (!CreateQueue()) return 1;
    Measure();
    RawFloor();
    Report();
    return 0;
  }

 private:
  void Prepare(grpc::ClientContext& context) const {
    context.AddMetadata("authorization", "Bearer " + options_.key);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  }

  bool Check(const char* what, const grpc::Status& status) {
    if (status.ok()) return true;
    std::fprintf(stderr, "loop_bench: %s: %s (code %d)\n", what, status.error_message().c_str(),
                 static_cast<int>(status.error_code()));
    return false;
  }

  bool Ingest(const std::vector<cv1::IngestItem>& items) {
    for (size_t i = 0; i < items.size(); i += 500) {
      cv1::IngestRequest request;
      for (size_t j = i; j < std::min(items.size(), i + 500); ++j) *request.add_items() = items[j];
      cv1::IngestResponse response;
      grpc::ClientContext context;
      Prepare(context);
      if (!Check("Ingest", capture_->Ingest(&context, request, &response))) return false;
    }
    return true;
  }

  bool Warmup() {
    demo::ScenarioOptions scenario;
    scenario.seed = 11;
    scenario.users = options_.warmup_users;
    scenario.id_prefix = absl::StrCat("warm", absl::ToUnixSeconds(absl::Now()));
    scenario.end = absl::Now() - absl::Hours(1);
    const demo::Scenario warm = demo::GenerateScenario(scenario);
    std::printf("warm-up: %zu traces, then a re-clustering\n", warm.truth.size());
    if (!Ingest(warm.items)) return false;
    // Labels, the feed and the follower settle; a clustering needs enough flagged traces, so
    // retry until one succeeds.
    bool clustered = false;
    for (int attempt = 0; attempt < 20 && !clustered; ++attempt) {
      absl::SleepFor(absl::Seconds(3));
      clv1::TriggerReclusterRequest request;
      request.set_request_id(absl::StrCat(scenario.id_prefix, "-", attempt));
      clv1::TriggerReclusterResponse response;
      {
        grpc::ClientContext context;
        Prepare(context);
        if (!Check("TriggerRecluster",
                   clustering_->TriggerRecluster(&context, request, &response))) {
          return false;
        }
      }
      const int64_t version = response.clustering().version();
      for (int i = 0; i < 300; ++i) {
        clv1::GetClusteringRequest get;
        get.set_version(version);
        clv1::GetClusteringResponse got;
        grpc::ClientContext context;
        Prepare(context);
        if (!Check("GetClustering", clustering_->GetClustering(&context, get, &got))) return false;
        if (got.clustering().state() == clv1::CLUSTERING_STATE_SUCCEEDED) {
          clustered = true;
          break;
        }
        if (got.clustering().state() == clv1::CLUSTERING_STATE_FAILED) {
          std::printf("  clustering v%lld failed (%s); retrying\n", static_cast<long long>(version),
                      got.clustering().error_message().c_str());
          break;
        }
        absl::SleepFor(absl::Milliseconds(500));
      }
    }
    if (!clustered) {
      std::fprintf(stderr, "loop_bench: no clustering succeeded\n");
      return false;
    }
    clv1::NearestClustersRequest nearest;
    nearest.add_queries()->set_text(
        "Summarize recent research findings on urban heat islands. According to Harlow et al. "
        "(2019), published in the Journal of Applied Cognition, urban heat islands improves "
        "outcomes by 40%");
    nearest.set_top_k(1);
    clv1::NearestClustersResponse found;
    grpc::ClientContext context;
    Prepare(context);
    if (!Check("NearestClusters", clustering_->NearestClusters(&context, nearest, &found))) {
      return false;
    }
    if (found.results_size() == 0 || found.results(0).matches_size() == 0) {
      std::fprintf(stderr, "loop_bench: no theme for the probe text\n");
      return false;
    }
    const clv1::ClusterMatch& match = found.results(0).matches(0);
    group_id_ = match.parent_cluster_id().empty() ? match.cluster_id() : match.parent_cluster_id();
    std::printf("probe theme %s (group %s, similarity %.2f)\n", match.cluster_id().c_str(),
                group_id_.c_str(), match.similarity());
    return true;
  }

  bool CreateQueue() {
    av1::CreateQueueRequest request;
    av1::Queue* queue = request.mutable_queue();
    queue->set_queue_id(absl::StrCat("fresh", absl::ToUnixSeconds(absl::Now())));
    queue->set_display_name("loop freshness");
    queue->set_reviewers_per_item(1);
    queue->mutable_source_rule()->add_cluster_ids(group_id_);
    queue->mutable_sampling()->set_strategy(av1::SAMPLING_STRATEGY_ALL);
    queue->mutable_sampling()->set_max_items_per_period(100000);
    av1::RubricField* field = queue->mutable_rubric()->add_fields();
    field->set_key("ok");
    field->set_label("ok");
    field->mutable_boolean();
    av1::CreateQueueResponse response;
    grpc::ClientContext context;
    Prepare(context);
    if (!Check("CreateQueue", annotation_->CreateQueue(&context, request, &response))) {
      return false;
    }
    queue_id_ = response.queue().queue_id();
    return true;
  }

  // One failing research answer and its thumbs-down; returns the acknowledgement time.
  std::optional<absl::Time> Probe(int n) {
    static constexpr const char* kTopics[] = {"urban heat islands", "microplastics in rivers",
                                              "sleep and memory", "battery recycling"};
    const std::string topic = kTopics[n % 4];
    const std::string trace_id = absl::StrCat(queue_id_, "-probe-", n);
    cv1::CreateTraceRequest trace_request;
    cv1::Trace* trace = trace_request.mutable_trace();
    trace->set_trace_id(trace_id);
    trace->set_session_id(absl::StrCat(queue_id_, "-probe-session-", n));
    trace->set_user_id(absl::StrCat("probe-user-", n % 50));
    trace->set_feature_area("research_summaries");
    trace->set_model("acme-llm");
    trace->mutable_input()->set_prompt(
        absl::StrCat("Summarize recent research findings on ", topic, "."));
    trace->set_output(absl::StrCat(
        "According to Harlow et al. (2019), published in the Journal of Applied Cognition, ", topic,
        " improves outcomes by ", 20 + n % 50,
        "% (doi:10.4411/jx.123). A follow-up study by Moreau and colleagues confirmed these "
        "results in a trial of 1200 participants."));
    *trace->mutable_start_time() = ToProtoTime(absl::Now() - absl::Seconds(2));
    cv1::CreateTraceResponse trace_response;
    {
      grpc::ClientContext context;
      Prepare(context);
      if (!Check("CreateTrace", capture_->CreateTrace(&context, trace_request, &trace_response))) {
        return std::nullopt;
      }
    }
    cv1::CreateSignalRequest signal_request;
    cv1::Signal* signal = signal_request.mutable_signal();
    signal->set_event_id(trace_id + "-thumb");
    signal->set_trace_id(trace_id);
    signal->set_user_id(trace->user_id());
    signal->mutable_explicit_feedback()->set_thumb(cv1::THUMB_DOWN);
    signal->mutable_explicit_feedback()->set_comment("this paper does not exist");
    *signal->mutable_occur_time() = ToProtoTime(absl::Now());
    cv1::CreateSignalResponse signal_response;
    grpc::ClientContext context;
    Prepare(context);
    if (!Check("CreateSignal",
               capture_->CreateSignal(&context, signal_request, &signal_response))) {
      return std::nullopt;
    }
    return absl::Now();
  }

  void Measure() {
    std::printf("measuring for %s: background %d traces/s, a probe every %s\n",
                absl::FormatDuration(options_.seconds).c_str(), options_.background_rate,
                absl::FormatDuration(options_.probe_interval).c_str());
    std::atomic<bool> stop{false};
    std::atomic<int64_t> background_sent{0};
    std::thread background([&] {
      demo::ScenarioOptions scenario;
      scenario.seed = 12;
      scenario.users = 2000;
      scenario.id_prefix = absl::StrCat("bg", absl::ToUnixSeconds(absl::Now()));
      scenario.end = absl::Now() - absl::Minutes(45);
      scenario.span = absl::Hours(2);
      const demo::Scenario traffic = demo::GenerateScenario(scenario);
      const absl::Time start = absl::Now();
      size_t next = 0;
      int64_t traces = 0;
      while (!stop && next < traffic.items.size()) {
        std::vector<cv1::IngestItem> batch;
        // 100 ms worth of traffic per batch.
        const int64_t due = static_cast<int64_t>(absl::ToDoubleSeconds(absl::Now() - start) *
                                                 options_.background_rate);
        while (next < traffic.items.size() && traces < due) {
          if (traffic.items[next].has_trace()) ++traces;
          batch.push_back(traffic.items[next++]);
        }
        if (!batch.empty() && Ingest(batch)) background_sent += static_cast<int64_t>(batch.size());
        absl::SleepFor(absl::Milliseconds(100));
      }
    });
    std::mutex mu;
    std::map<std::string, absl::Time> outstanding;  // trace id -> acknowledgement
    std::thread checker([&] {
      while (true) {
        std::map<std::string, absl::Time> snapshot;
        {
          std::lock_guard<std::mutex> lock(mu);
          snapshot = outstanding;
        }
        if (snapshot.empty() && stop) break;
        for (const auto& [trace_id, acked] : snapshot) {
          av1::GetItemRequest request;
          request.set_queue_id(queue_id_);
          request.set_trace_id(trace_id);
          av1::GetItemResponse response;
          grpc::ClientContext context;
          Prepare(context);
          grpc::Status status = annotation_->GetItem(&context, request, &response);
          std::lock_guard<std::mutex> lock(mu);
          if (status.ok()) {
            freshness_.push_back(
                absl::ToDoubleSeconds(FromProtoTime(response.item().enqueue_time()) - acked));
            outstanding.erase(trace_id);
          } else if (absl::Now() - acked > options_.give_up) {
            ++missing_;
            outstanding.erase(trace_id);
          }
        }
        absl::SleepFor(absl::Milliseconds(50));
      }
    });
    const absl::Time end = absl::Now() + options_.seconds;
    for (int n = 0; absl::Now() < end; ++n) {
      std::optional<absl::Time> acked = Probe(n);
      if (acked) {
        std::lock_guard<std::mutex> lock(mu);
        outstanding[absl::StrCat(queue_id_, "-probe-", n)] = *acked;
        ++probes_;
      }
      absl::SleepFor(options_.probe_interval);
    }
    stop = true;
    background.join();
    checker.join();
    background_items_ = background_sent;
  }

  // The floor: commit of an INSERT + NOTIFY until a LISTENing connection sees it.
  void RawFloor() {
    try {
      pqxx::connection listener(options_.database_url);
      pqxx::connection writer(options_.database_url);
      {
        pqxx::work tx(writer);
        tx.exec0("CREATE TEMP TABLE IF NOT EXISTS loop_floor (n int)");
        tx.commit();
      }
      struct Receiver final : pqxx::notification_receiver {
        Receiver(pqxx::connection_base& c) : pqxx::notification_receiver(c, "loop_floor") {}
        void operator()(const std::string&, int) override { received = absl::Now(); }
        absl::Time received;
      } receiver(listener);
      const int samples = std::max<int>(50, static_cast<int>(freshness_.size()));
      for (int i = 0; i < samples; ++i) {
        pqxx::work tx(writer);
        tx.exec0("INSERT INTO loop_floor VALUES (" + std::to_string(i) + ")");
        tx.exec0("NOTIFY loop_floor");
        tx.commit();
        const absl::Time committed = absl::Now();
        listener.await_notification(5, 0);
        floor_.push_back(absl::ToDoubleSeconds(receiver.received - committed));
        absl::SleepFor(absl::Milliseconds(20));
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "loop_bench: raw floor: %s\n", e.what());
    }
  }

  void Report() {
    std::printf("\nresults\n");
    std::printf("  background load          %lld items (%d traces/s target)\n",
                static_cast<long long>(background_items_), options_.background_rate);
    std::printf("  probes                   %d sent, %zu enqueued, %d missing after %s\n", probes_,
                freshness_.size(), missing_, absl::FormatDuration(options_.give_up).c_str());
    std::printf("  freshness (ack -> item)  p50 %.3f s  p95 %.3f s  max %.3f s\n",
                Percentile(freshness_, 0.5), Percentile(freshness_, 0.95),
                Percentile(freshness_, 1.0));
    std::printf("  raw floor (INSERT+NOTIFY -> LISTEN)  p50 %.4f s  p95 %.4f s\n",
                Percentile(floor_, 0.5), Percentile(floor_, 0.95));
    std::printf(
        "RESULT freshness_p50=%.3f freshness_p95=%.3f probes=%d enqueued=%zu missing=%d "
        "floor_p50=%.4f floor_p95=%.4f\n",
        Percentile(freshness_, 0.5), Percentile(freshness_, 0.95), probes_, freshness_.size(),
        missing_, Percentile(floor_, 0.5), Percentile(floor_, 0.95));
  }

  const Options& options_;
  std::unique_ptr<cv1::CaptureService::Stub> capture_;
  std::unique_ptr<clv1::ClusteringService::Stub> clustering_;
  std::unique_ptr<av1::AnnotationService::Stub> annotation_;
  std::string group_id_;
  std::string queue_id_;
  std::vector<double> freshness_;
  std::vector<double> floor_;
  int probes_ = 0;
  int missing_ = 0;
  int64_t background_items_ = 0;
};

}  // namespace
}  // namespace flywheel::bench

int main(int argc, char** argv) {
  flywheel::bench::Options options;
  std::string key_file;
  flywheel::FlagSet flags("loop_bench", "Loop freshness benchmark (see bench/loop/run.sh).");
  flags.String("capture_address", &options.capture_address, "capture host:port");
  flags.String("clustering_address", &options.clustering_address, "clustering host:port");
  flags.String("annotation_address", &options.annotation_address, "annotation host:port");
  flags.String("key", &options.key, "secret key with ingest, read and admin scopes");
  flags.String("database_url", &options.database_url, "for the raw NOTIFY floor");
  flags.Int("warmup_users", &options.warmup_users, "simulated users of the warm-up traffic");
  flags.Int("background_rate", &options.background_rate, "background traces per second");
  flags.Duration("seconds", &options.seconds, "measurement time");
  flags.Duration("probe_interval", &options.probe_interval, "time between probes");
  flags.Duration("give_up", &options.give_up, "a probe not enqueued by then counts as missing");
  absl::Status status = flags.Parse(argc, argv);
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
    return 2;
  }
  return flywheel::bench::LoopBench(options).Run();
}
