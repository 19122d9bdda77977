// annotation_bench: load client for the annotation queue's reviewer loop. bench/annotation/run.sh
// drives it and compares its figures with a raw pgbench SKIP LOCKED claim + update loop on a copy
// of the same rows; see docs/benchmarks.md ("Annotation queue").
//
//   --mode=create_queue  CreateQueue (admin key): a MANUAL_ONLY queue --queue_id with one
//                        reviewer per item, 10 min leases, and a 3-field rubric (boolean "ok",
//                        single-select "topic", optional free text "note").
//   --mode=copy_file     Writes --items rows of review.items for that queue as COPY text to
//                        --out: PENDING, MANUAL, priority 0, N = 1, enqueue_time 1 ms apart, and a
//                        ~1.6 KiB serialized TraceSnapshot per item (prompt, output, signals,
//                        label), so claims read realistic rows. (The benchmark measures claiming
//                        and submitting, not enqueueing, which calls capture per trace.)
//   --mode=run           --concurrency reviewers (one thread and one connection each, reviewer id
//                        rev-<i>) loop for --duration: ClaimItem (wait_timeout 0), then
//                        SubmitAnnotation of the claimed lease. Counts claim+submit pairs after
//                        --warmup; latency of each claim and of each pair. A claim that finds the
//                        queue empty, or any failed RPC, ends that reviewer (`empty`, `errors`).
//
// The last line of output is `RESULT key=value ...` for scripts (client_cpu_s: this process's
// CPU time, warm-up included). Exit 1 if any RPC failed.
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "flywheel/annotation/v1/annotation.grpc.pb.h"

namespace {

namespace v1 = flywheel::annotation::v1;

struct Options {
  std::string mode = "run";
  std::string address = "127.0.0.1:50051";
  std::string admin_key;
  std::string review_key;
  std::string project = "bench";
  std::string queue_id = "bench-queue";
  int items = 20000;
  std::string out = "items.tsv";
  int concurrency = 8;
  absl::Duration duration = absl::Seconds(10);
  absl::Duration warmup = absl::Seconds(1);
  std::string reviewer_prefix = "rev";
};

std::unique_ptr<v1::AnnotationService::Stub> Connect(const std::string& address, int channel_id) {
  grpc::ChannelArguments args;
  // A distinct argument per channel gives each reviewer its own connection, as separate review
  // tool sessions would have.
  args.SetInt("flywheel.bench.channel", channel_id);
  return v1::AnnotationService::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
}

int CreateQueue(const Options& o) {
  auto stub = Connect(o.address, 0);
  v1::CreateQueueRequest request;
  v1::Queue& q = *request.mutable_queue();
  q.set_queue_id(o.queue_id);
  q.set_display_name("benchmark queue");
  q.set_reviewers_per_item(1);
  q.mutable_lease_duration()->set_seconds(600);
  q.mutable_source_rule()->set_source(v1::QUEUE_SOURCE_MANUAL_ONLY);
  v1::RubricField* ok = q.mutable_rubric()->add_fields();
  ok->set_key("ok");
  ok->set_label("Is the answer acceptable?");
  ok->set_required(true);
  ok->mutable_boolean();
  v1::RubricField* topic = q.mutable_rubric()->add_fields();
  topic->set_key("topic");
  topic->set_label("Topic");
  topic->set_required(true);
  for (const char* value : {"billing", "account", "technical", "other"}) {
    topic->mutable_categorical()->add_options()->set_value(value);
  }
  v1::RubricField* note = q.mutable_rubric()->add_fields();
  note->set_key("note");
  note->set_label("Note");
  note->mutable_free_text()->set_max_bytes(2000);
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + o.admin_key);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::CreateQueueResponse response;
  grpc::Status status = stub->CreateQueue(&context, request, &response);
  if (!status.ok()) {
    std::fprintf(stderr, "CreateQueue: %d %s\n", status.error_code(),
                 status.error_message().c_str());
    return 1;
  }
  std::printf("queue %s created\n", response.queue().queue_id().c_str());
  return 0;
}

// Deterministic filler text of about `bytes` bytes.
std::string Text(uint64_t seed, size_t bytes) {
  static const char* const kWords[] = {"the",     "refund",  "account", "password", "invoice",
                                       "please",  "support", "cannot",  "reset",    "billing",
                                       "answer",  "because", "order",   "shipping", "delivery",
                                       "problem", "update",  "email",   "help",     "thanks"};
  std::string out;
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  while (out.size() < bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if (!out.empty()) out += ' ';
    out += kWords[x % 20];
  }
  return out;
}

int CopyFile(const Options& o) {
  std::ofstream out(o.out, std::ios::binary);
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", o.out.c_str());
    return 1;
  }
  const absl::Time base = absl::Now() - absl::Hours(1);
  size_t snapshot_bytes = 0;
  for (int i = 0; i < o.items; ++i) {
    const std::string trace_id = absl::StrFormat("t%08d", i);
    v1::TraceSnapshot s;
    s.set_trace_id(trace_id);
    s.mutable_trace_create_time()->set_seconds(absl::ToUnixSeconds(base) - 60);
    s.mutable_input()->set_prompt(Text(2 * i, 500));
    s.set_output(Text(2 * i + 1, 900));
    s.set_model_version("2024-08-06");
    s.set_prompt_version("v12");
    s.set_feature_area(i % 3 == 0 ? "search" : "support");
    s.set_session_id(absl::StrFormat("s%07d", i / 4));
    s.mutable_signals()->set_explicit_count(1);
    s.mutable_signals()->set_implicit_count(1);
    v1::SignalBrief* thumbs = s.mutable_signals()->add_signals();
    thumbs->set_kind("thumbs_down");
    thumbs->set_comment("this did not answer my question");
    v1::SignalBrief* regen = s.mutable_signals()->add_signals();
    regen->set_kind("regenerate");
    regen->set_value("attempt=2");
    s.mutable_label()->set_quality_score(0.21);
    s.mutable_label()->set_flagged(true);
    s.mutable_label()->add_reasons("thumbs_down");
    s.mutable_label()->set_labeler_version("1");
    s.mutable_snapshot_time()->set_seconds(absl::ToUnixSeconds(base));
    std::string bytes;
    s.SerializeToString(&bytes);
    snapshot_bytes += bytes.size();
    const std::string enqueue = absl::FormatTime("%Y-%m-%d %H:%M:%E3S+00",
                                                 base + absl::Milliseconds(i), absl::UTCTimeZone());
    // project_id queue_id trace_id state source priority required_reviews enqueue_time snapshot
    out << o.project << '\t' << o.queue_id << '\t' << trace_id << "\t1\t1\t0\t1\t" << enqueue
        << "\t\\\\x" << absl::BytesToHexString(bytes) << '\n';
  }
  std::printf("wrote %d items to %s (snapshot %.0f bytes on average)\n", o.items, o.out.c_str(),
              o.items > 0 ? static_cast<double>(snapshot_bytes) / o.items : 0.0);
  return 0;
}

double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index =
      std::min(values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size())));
  return values[index];
}

int Run(const Options& o) {
  std::atomic<int64_t> pairs{0}, errors{0}, empties{0};
  std::vector<std::vector<double>> claim_ms(static_cast<size_t>(o.concurrency));
  std::vector<std::vector<double>> pair_ms(static_cast<size_t>(o.concurrency));
  std::vector<std::string> first_error(static_cast<size_t>(o.concurrency));
  const absl::Time start = absl::Now();
  const absl::Time measure_from = start + o.warmup;
  const absl::Time end = measure_from + o.duration;
  std::vector<std::thread> threads;
  for (int t = 0; t < o.concurrency; ++t) {
    threads.emplace_back([&, t] {
      auto stub = Connect(o.address, t + 1);
      const std::string reviewer = absl::StrCat(o.reviewer_prefix, "-", t);
      const size_t slot = static_cast<size_t>(t);
      for (int64_t n = 0;; ++n) {
        const absl::Time t0 = absl::Now();
        if (t0 >= end) break;
        v1::ClaimItemRequest claim;
        claim.set_queue_id(o.queue_id);
        claim.set_reviewer_id(reviewer);
        v1::ClaimItemResponse claimed;
        grpc::ClientContext claim_context;
        claim_context.AddMetadata("authorization", "Bearer " + o.review_key);
        claim_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        grpc::Status status = stub->ClaimItem(&claim_context, claim, &claimed);
        const absl::Time t1 = absl::Now();
        if (!status.ok()) {
          ++errors;
          first_error[slot] =
              absl::StrCat("ClaimItem: ", status.error_code(), " ", status.error_message());
          break;
        }
        if (!claimed.has_lease()) {
          ++empties;
          break;
        }
        v1::SubmitAnnotationRequest submit;
        submit.set_queue_id(o.queue_id);
        submit.set_lease_id(claimed.lease().lease_id());
        submit.set_reviewer_id(reviewer);
        (*submit.mutable_values())["ok"].set_boolean(n % 3 != 0);
        (*submit.mutable_values())["topic"].mutable_categorical()->add_values(
            n % 2 == 0 ? "billing" : "technical");
        v1::SubmitAnnotationResponse submitted;
        grpc::ClientContext submit_context;
        submit_context.AddMetadata("authorization", "Bearer " + o.review_key);
        submit_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        status = stub->SubmitAnnotation(&submit_context, submit, &submitted);
        const absl::Time t2 = absl::Now();
        if (!status.ok()) {
          ++errors;
          first_error[slot] =
              absl::StrCat("SubmitAnnotation: ", status.error_code(), " ", status.error_message());
          break;
        }
        if (t0 >= measure_from && t2 <= end) {
          ++pairs;
          claim_ms[slot].push_back(absl::ToDoubleMilliseconds(t1 - t0));
          pair_ms[slot].push_back(absl::ToDoubleMilliseconds(t2 - t0));
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::vector<double> claims, all_pairs;
  for (size_t i = 0; i < claim_ms.size(); ++i) {
    claims.insert(claims.end(), claim_ms[i].begin(), claim_ms[i].end());
    all_pairs.insert(all_pairs.end(), pair_ms[i].begin(), pair_ms[i].end());
    if (!first_error[i].empty())
      std::fprintf(stderr, "reviewer %zu: %s\n", i, first_error[i].c_str());
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double client_cpu_s =
      static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
      static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  const double seconds = absl::ToDoubleSeconds(o.duration);
  const double rate = static_cast<double>(pairs.load()) / seconds;
  std::printf(
      "RESULT concurrency=%d pairs=%lld seconds=%.2f pairs_per_s=%.1f claim_p50_ms=%.2f "
      "claim_p99_ms=%.2f pair_p50_ms=%.2f pair_p99_ms=%.2f errors=%lld empty=%lld "
      "client_cpu_s=%.2f\n",
      o.concurrency, static_cast<long long>(pairs.load()), seconds, rate, Percentile(claims, 0.50),
      Percentile(claims, 0.99), Percentile(all_pairs, 0.50), Percentile(all_pairs, 0.99),
      static_cast<long long>(errors.load()), static_cast<long long>(empties.load()), client_cpu_s);
  return errors.load() > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  flywheel::FlagSet flags("annotation_bench", "Load client for the annotation queue (see run.sh)");
  flags.String("mode", &o.mode, "create_queue | copy_file | run");
  flags.String("address", &o.address, "flywheel-annotation gRPC address");
  flags.String("admin_key", &o.admin_key, "secret key with admin scope (create_queue)");
  flags.String("review_key", &o.review_key, "secret key with review scope (run)");
  flags.String("project", &o.project, "project id (copy_file)");
  flags.String("queue_id", &o.queue_id, "queue id");
  flags.Int("items", &o.items, "items to write (copy_file)");
  flags.String("out", &o.out, "COPY file to write (copy_file)");
  flags.Int("concurrency", &o.concurrency, "reviewers (run)");
  flags.Duration("duration", &o.duration, "measured time (run)");
  flags.Duration("warmup", &o.warmup, "unmeasured time before (run)");
  flags.String("reviewer_prefix", &o.reviewer_prefix, "reviewer ids are <prefix>-<i> (run)");
  absl::Status parsed = flags.Parse(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n%s", std::string(parsed.message()).c_str(), flags.Usage().c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::printf("%s", flags.Usage().c_str());
    return 0;
  }
  if (o.mode == "create_queue") return CreateQueue(o);
  if (o.mode == "copy_file") return CopyFile(o);
  if (o.mode == "run") return Run(o);
  std::fprintf(stderr, "unknown --mode %s\n", o.mode.c_str());
  return 2;
}
