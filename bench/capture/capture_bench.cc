// capture_bench: load client for the capture ingestion RPCs. bench/capture/run.sh drives it and
// compares its figures with raw COPY and pgbench on the same rows; see docs/benchmarks.md.
//
// Every mode uses the same deterministic workload: trace i is ~1 KiB (prompt ~400 B, output
// ~600 B, session of --session_length consecutive traces, user id, model fields, tokens, cost,
// small metadata) and every even trace has one USER signal about it (thumbs up/down, some with a
// short comment, copy or dwell), so there is about one signal per two traces.
//
//   --mode=batch       Ingest RPCs of --batch traces plus their signals (mixed items).
//   --mode=stream      StreamIngest: messages of --batch traces plus signals, up to 10,000 items
//                      per stream, then a new stream.
//   --mode=unary       CreateTrace / CreateSignal, one item per RPC (trace i, then its signal;
//                      64 sessions interleaved, a session's calls in order, one at a time).
//                      Closed loop with --concurrency workers, or open loop at --rate RPC/s
//                      (latency then counts from the scheduled send time).
//   --mode=copy_files  Writes the rows capture stores for the same workload as COPY text files
//                      (traces, signals, label_queue, session_activity; --copy_parts parts) and
//                      pgbench scripts inserting one equivalent trace / signal row.
//
// Requests are built before the clock starts. Batch and stream stop after --traces traces; unary
// stops after --traces traces or --duration, whichever comes first. The last line of output is
// `RESULT key=value ...` for scripts. Exit 1 if any RPC failed or any item was rejected.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <grpcpp/grpcpp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "services/capture/capture_logic.h"

namespace {

namespace v1 = flywheel::capture::v1;
namespace common = flywheel::common::v1;

struct Options {
  std::string address = "127.0.0.1:50051";
  std::string api_key;
  std::string mode = "batch";
  int traces = 50000;
  int batch = 500;
  int concurrency = 4;
  absl::Duration duration = absl::Seconds(10);
  double rate = 0;
  std::string prefix = "b";
  int64_t base_time_ms = 0;
  int session_length = 4;
  std::string project = "bench";
  std::string out_dir = ".";
  int copy_parts = 1;
};

// ------------------------------------------------------------------------------------------------
// Deterministic workload

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(SplitMix(seed)) {}
  uint64_t Next() { return state_ = SplitMix(state_); }
  int Below(int n) { return static_cast<int>(Next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

// Plain words only: no digits runs, addresses or long tokens, so PII redaction scans every byte
// but replaces nothing (the stored rows then equal the rows sent, as in the COPY files).
constexpr const char* kWords[] = {
    "the",       "customer", "asked",    "about",       "refund",   "policy",     "for",
    "order",     "shipping", "delayed",  "please",      "explain",  "why",        "account",
    "settings",  "page",     "shows",    "error",       "when",     "saving",     "profile",
    "changes",   "billing",  "cycle",    "invoice",     "missing",  "line",       "items",
    "support",   "agent",    "should",   "reply",       "with",     "clear",      "steps",
    "and",       "link",     "help",     "center",      "article",  "describing", "how",
    "reset",     "password", "update",   "payment",     "method",   "cancel",     "subscription",
    "before",    "renewal",  "date",     "summarize",   "previous", "messages",   "tone",
    "friendly",  "concise",  "answer",   "question",    "product",  "warranty",   "covers",
    "battery",   "screen",   "damage",   "replacement", "within",   "days",       "of",
    "purchase",  "receipt",  "required", "store",       "credit",   "option",     "is",
    "available", "if",       "you",      "prefer",      "we",       "can",        "also",
    "escalate",  "this",     "case",     "to",          "a",        "specialist", "team"};
constexpr int kWordCount = sizeof(kWords) / sizeof(kWords[0]);

std::string Text(Rng& rng, size_t target) {
  std::string out;
  out.reserve(target + 16);
  bool sentence_start = true;
  while (out.size() < target) {
    std::string word = kWords[rng.Below(kWordCount)];
    if (sentence_start) word[0] = static_cast<char>(word[0] - 'a' + 'A');
    if (!out.empty()) out += ' ';
    out += word;
    sentence_start = rng.Below(12) == 0;
    if (sentence_start) out += '.';
  }
  return out;
}

google::protobuf::Timestamp Ts(int64_t unix_ms) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(unix_ms / 1000);
  ts.set_nanos(static_cast<int32_t>((unix_ms % 1000) * 1000000));
  return ts;
}

constexpr const char* kAreas[] = {"support", "search", "email-draft", "summarize"};

class Workload {
 public:
  explicit Workload(const Options& options) : options_(options) {}

  std::string TraceId(int64_t i) const { return absl::StrFormat("%s-t%08d", options_.prefix, i); }
  std::string SessionId(int64_t i) const {
    return absl::StrFormat("%s-s%07d", options_.prefix, i / options_.session_length);
  }
  std::string UserId(int64_t i) const {
    return absl::StrFormat("user-%04d", (i / options_.session_length) % 2000);
  }
  int64_t StartMs(int64_t i) const { return options_.base_time_ms + i; }  // 1000 traces/s
  int64_t LatencyMs(int64_t i) const { return 400 + static_cast<int64_t>(SplitMix(i) % 1200); }
  bool HasSignal(int64_t i) const { return i % 2 == 0; }

  v1::Trace MakeTrace(int64_t i) const {
    Rng rng(static_cast<uint64_t>(i) * 2 + 1);
    v1::Trace trace;
    trace.set_trace_id(TraceId(i));
    trace.set_session_id(SessionId(i));
    trace.set_user_id(UserId(i));
    trace.set_feature_area(kAreas[i % 4]);
    trace.set_prompt_template_id(absl::StrCat("tmpl-", i % 20));
    trace.set_model("gpt-4o");
    trace.set_model_version("2024-08-06");
    trace.set_prompt_version("v3");
    trace.mutable_input()->set_prompt(Text(rng, 360 + rng.Below(80)));
    trace.set_output(Text(rng, 540 + rng.Below(120)));
    const int64_t latency = LatencyMs(i);
    trace.mutable_latency()->set_seconds(latency / 1000);
    trace.mutable_latency()->set_nanos(static_cast<int32_t>((latency % 1000) * 1000000));
    trace.set_input_tokens(90 + rng.Below(40));
    trace.set_output_tokens(120 + rng.Below(60));
    trace.set_cost_micros(900 + rng.Below(400));
    auto& fields = *trace.mutable_metadata()->mutable_fields();
    fields["region"].set_string_value(i % 3 == 0 ? "eu" : "us");
    fields["experiment"].set_string_value(i % 2 == 0 ? "a" : "b");
    *trace.mutable_start_time() = Ts(StartMs(i));
    *trace.mutable_end_time() = Ts(StartMs(i) + latency);
    return trace;
  }

  v1::Signal MakeSignal(int64_t i) const {
    Rng rng(static_cast<uint64_t>(i) * 2 + 2);
    v1::Signal signal;
    signal.set_event_id(absl::StrFormat("%s-e%08d", options_.prefix, i));
    signal.set_trace_id(TraceId(i));
    signal.set_user_id(UserId(i));
    *signal.mutable_occur_time() = Ts(StartMs(i) + LatencyMs(i) + 2000);
    switch ((i / 2) % 4) {
      case 0:
        signal.mutable_explicit_feedback()->set_thumb(v1::THUMB_UP);
        break;
      case 1:
        signal.mutable_explicit_feedback()->set_thumb(v1::THUMB_DOWN);
        signal.mutable_explicit_feedback()->set_comment(Text(rng, 40 + rng.Below(40)));
        break;
      case 2:
        signal.mutable_implicit_signal()->mutable_copy()->set_copied_chars(50 + rng.Below(200));
        break;
      default:
        signal.mutable_implicit_signal()->mutable_dwell()->mutable_duration()->set_seconds(
            3 + rng.Below(60));
        signal.mutable_implicit_signal()->mutable_dwell()->set_next_action("new_query");
        break;
    }
    return signal;
  }

  // The kind the server derives from the oneof (stored in the signal payload and column).
  static v1::SignalKind KindOf(const v1::Signal& signal) {
    if (signal.has_explicit_feedback()) {
      return signal.explicit_feedback().thumb() == v1::THUMB_UP ? v1::SIGNAL_KIND_THUMBS_UP
                                                                : v1::SIGNAL_KIND_THUMBS_DOWN;
    }
    return signal.implicit_signal().has_copy() ? v1::SIGNAL_KIND_COPY : v1::SIGNAL_KIND_DWELL;
  }

 private:
  const Options& options_;
};

// ------------------------------------------------------------------------------------------------
// Measurement

struct Tally {
  int64_t rpcs = 0, failed = 0, accepted = 0, duplicate = 0, rejected = 0, redactions = 0;
  std::vector<double> latency_ms;
  std::vector<double> trace_ms, signal_ms;  // unary only
  std::string first_error;

  void Merge(const Tally& other) {
    rpcs += other.rpcs;
    failed += other.failed;
    accepted += other.accepted;
    duplicate += other.duplicate;
    rejected += other.rejected;
    redactions += other.redactions;
    latency_ms.insert(latency_ms.end(), other.latency_ms.begin(), other.latency_ms.end());
    trace_ms.insert(trace_ms.end(), other.trace_ms.begin(), other.trace_ms.end());
    signal_ms.insert(signal_ms.end(), other.signal_ms.begin(), other.signal_ms.end());
    if (first_error.empty()) first_error = other.first_error;
  }
  void Fail(const grpc::Status& status) {
    ++failed;
    if (first_error.empty()) {
      first_error = absl::StrCat("code ", status.error_code(), ": ", status.error_message());
    }
  }
  void Count(const v1::IngestCounts& counts) {
    accepted += counts.accepted();
    duplicate += counts.duplicate();
    rejected += counts.rejected();
    redactions += counts.redactions();
  }
  template <typename Results>
  void NoteRejection(const Results& results) {
    if (!first_error.empty()) return;
    for (const auto& result : results) {
      if (result.result().outcome() == common::ITEM_OUTCOME_REJECTED) {
        first_error = absl::StrCat("rejected ", result.result().id(), " field ",
                                   result.result().field(), ": ", result.result().reason());
        return;
      }
    }
  }
};

double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(
      values.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(values.size())));
  return values[index];
}

std::string LatencyLine(const char* what, std::vector<double>& values) {
  return absl::StrFormat(
      "latency %-14s n=%-7d p50=%7.2f ms  p90=%7.2f ms  p99=%7.2f ms  max=%7.2f ms", what,
      values.size(), Percentile(values, 50), Percentile(values, 90), Percentile(values, 99),
      Percentile(values, 100));
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// ------------------------------------------------------------------------------------------------
// Client

class Client {
 public:
  explicit Client(const Options& options) : options_(options) {}

  // One channel (own TCP connection) per worker.
  std::unique_ptr<v1::CaptureService::Stub> Stub() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxSendMessageSize(8 * 1024 * 1024);
    args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
    auto channel =
        grpc::CreateCustomChannel(options_.address, grpc::InsecureChannelCredentials(), args);
    channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return v1::CaptureService::NewStub(channel);
  }

  void Prepare(grpc::ClientContext& context) const {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.api_key));
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
  }

 private:
  const Options& options_;
};

// Runs `work(worker, stub, tally)` on --concurrency threads and merges the tallies.
template <typename Work>
Tally RunWorkers(const Options& options, Client& client, absl::Duration* elapsed, Work work) {
  std::vector<std::unique_ptr<v1::CaptureService::Stub>> stubs;
  for (int w = 0; w < options.concurrency; ++w) stubs.push_back(client.Stub());
  std::vector<Tally> tallies(options.concurrency);
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int w = 0; w < options.concurrency; ++w) {
    threads.emplace_back([&, w] { work(w, start, *stubs[w], tallies[w]); });
  }
  for (auto& thread : threads) thread.join();
  *elapsed = absl::Now() - start;
  Tally total;
  for (const Tally& tally : tallies) total.Merge(tally);
  return total;
}

std::vector<v1::IngestItem> Items(const Workload& workload, int64_t first, int64_t end) {
  std::vector<v1::IngestItem> items;
  for (int64_t i = first; i < end; ++i) {
    *items.emplace_back().mutable_trace() = workload.MakeTrace(i);
    if (workload.HasSignal(i)) *items.emplace_back().mutable_signal() = workload.MakeSignal(i);
  }
  return items;
}

int Report(const Options& options, const char* rpc, Tally& tally, int64_t traces, int64_t signals,
           absl::Duration elapsed) {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const int64_t items = traces + signals;
  std::printf("mode=%s rpc=%s concurrency=%d traces=%lld signals=%lld rpcs=%lld in %.3f s\n",
              options.mode.c_str(), rpc, options.concurrency, static_cast<long long>(traces),
              static_cast<long long>(signals), static_cast<long long>(tally.rpcs), seconds);
  std::printf("throughput: %.0f traces/s, %.0f items/s, %.1f rpcs/s\n", traces / seconds,
              items / seconds, tally.rpcs / seconds);
  std::printf(
      "items: accepted=%lld duplicate=%lld rejected=%lld redactions=%lld; failed rpcs=%lld\n",
      static_cast<long long>(tally.accepted), static_cast<long long>(tally.duplicate),
      static_cast<long long>(tally.rejected), static_cast<long long>(tally.redactions),
      static_cast<long long>(tally.failed));
  std::printf("%s\n", LatencyLine(rpc, tally.latency_ms).c_str());
  if (!tally.trace_ms.empty())
    std::printf("%s\n", LatencyLine("CreateTrace", tally.trace_ms).c_str());
  if (!tally.signal_ms.empty()) {
    std::printf("%s\n", LatencyLine("CreateSignal", tally.signal_ms).c_str());
  }
  if (!tally.first_error.empty()) std::printf("first problem: %s\n", tally.first_error.c_str());
  std::printf(
      "RESULT mode=%s concurrency=%d rate=%.0f traces=%lld items=%lld rpcs=%lld seconds=%.3f "
      "traces_per_s=%.0f items_per_s=%.0f rpcs_per_s=%.1f p50_ms=%.2f p99_ms=%.2f "
      "accepted=%lld duplicate=%lld rejected=%lld failed=%lld redactions=%lld\n",
      options.mode.c_str(), options.concurrency, options.rate, static_cast<long long>(traces),
      static_cast<long long>(items), static_cast<long long>(tally.rpcs), seconds, traces / seconds,
      items / seconds, tally.rpcs / seconds, Percentile(tally.latency_ms, 50),
      Percentile(tally.latency_ms, 99), static_cast<long long>(tally.accepted),
      static_cast<long long>(tally.duplicate), static_cast<long long>(tally.rejected),
      static_cast<long long>(tally.failed), static_cast<long long>(tally.redactions));
  return tally.failed > 0 || tally.rejected > 0 ? 1 : 0;
}

int64_t SignalCount(const Workload& workload, int64_t traces) {
  int64_t n = 0;
  for (int64_t i = 0; i < traces; ++i) n += workload.HasSignal(i) ? 1 : 0;
  return n;
}

int RunBatch(const Options& options, const Workload& workload) {
  std::vector<v1::IngestRequest> requests;
  for (int64_t first = 0; first < options.traces; first += options.batch) {
    v1::IngestRequest& request = requests.emplace_back();
    for (auto& item :
         Items(workload, first, std::min<int64_t>(first + options.batch, options.traces))) {
      *request.add_items() = std::move(item);
    }
  }
  Client client(options);
  std::atomic<size_t> next{0};
  absl::Duration elapsed;
  Tally tally = RunWorkers(options, client, &elapsed,
                           [&](int, absl::Time, v1::CaptureService::Stub& stub, Tally& mine) {
                             for (size_t k; (k = next.fetch_add(1)) < requests.size();) {
                               grpc::ClientContext context;
                               client.Prepare(context);
                               v1::IngestResponse response;
                               const absl::Time sent = absl::Now();
                               grpc::Status status = stub.Ingest(&context, requests[k], &response);
                               mine.latency_ms.push_back(Ms(absl::Now() - sent));
                               ++mine.rpcs;
                               if (!status.ok()) {
                                 mine.Fail(status);
                                 continue;
                               }
                               mine.Count(response.counts());
                               mine.NoteRejection(response.results());
                             }
                           });
  return Report(options, "Ingest", tally, options.traces, SignalCount(workload, options.traces),
                elapsed);
}

int RunStream(const Options& options, const Workload& workload) {
  // Messages of --batch traces (plus signals); as many per stream as fit in 10,000 items.
  std::vector<v1::StreamIngestRequest> messages;
  for (int64_t first = 0; first < options.traces; first += options.batch) {
    v1::StreamIngestRequest& message = messages.emplace_back();
    for (auto& item :
         Items(workload, first, std::min<int64_t>(first + options.batch, options.traces))) {
      *message.add_items() = std::move(item);
    }
  }
  std::vector<std::vector<size_t>> streams(1);
  int stream_items = 0;
  for (size_t m = 0; m < messages.size(); ++m) {
    if (stream_items + messages[m].items_size() > 10000) {
      streams.emplace_back();
      stream_items = 0;
    }
    streams.back().push_back(m);
    stream_items += messages[m].items_size();
  }
  Client client(options);
  std::atomic<size_t> next{0};
  absl::Duration elapsed;
  std::atomic<int64_t> commits{0};
  Tally tally = RunWorkers(options, client, &elapsed,
                           [&](int, absl::Time, v1::CaptureService::Stub& stub, Tally& mine) {
                             for (size_t k; (k = next.fetch_add(1)) < streams.size();) {
                               grpc::ClientContext context;
                               client.Prepare(context);
                               v1::StreamIngestResponse response;
                               const absl::Time sent = absl::Now();
                               auto writer = stub.StreamIngest(&context, &response);
                               for (size_t m : streams[k]) {
                                 if (!writer->Write(messages[m])) break;
                               }
                               writer->WritesDone();
                               grpc::Status status = writer->Finish();
                               mine.latency_ms.push_back(Ms(absl::Now() - sent));
                               ++mine.rpcs;
                               if (!status.ok()) {
                                 mine.Fail(status);
                                 continue;
                               }
                               commits += response.commits();
                               mine.Count(response.counts());
                               mine.NoteRejection(response.results());
                             }
                           });
  std::printf("streams=%zu messages=%zu commits=%lld\n", streams.size(), messages.size(),
              static_cast<long long>(commits.load()));
  return Report(options, "StreamIngest", tally, options.traces,
                SignalCount(workload, options.traces), elapsed);
}

int RunUnary(const Options& options, const Workload& workload) {
  // One operation per RPC: trace i, then (for even i) its signal. A session's operations keep
  // their order, but the sequence interleaves 64 sessions at a time, so two operations of one
  // session are never in flight together (a conversation is sequential; concurrent writes to
  // one session would only measure row-lock waits on its session_activity row).
  struct Op {
    bool is_trace;
    v1::CreateTraceRequest trace;
    v1::CreateSignalRequest signal;
  };
  constexpr int64_t kInterleave = 64;
  std::vector<Op> ops;
  const int64_t sessions = (options.traces + options.session_length - 1) / options.session_length;
  for (int64_t block = 0; block < sessions; block += kInterleave) {
    const int64_t block_end = std::min(sessions, block + kInterleave);
    for (int64_t j = 0; j < options.session_length; ++j) {
      for (int64_t session = block; session < block_end; ++session) {
        const int64_t i = session * options.session_length + j;
        if (i >= options.traces) continue;
        Op& op = ops.emplace_back();
        op.is_trace = true;
        *op.trace.mutable_trace() = workload.MakeTrace(i);
      }
      for (int64_t session = block; session < block_end; ++session) {
        const int64_t i = session * options.session_length + j;
        if (i >= options.traces || !workload.HasSignal(i)) continue;
        Op& op = ops.emplace_back();
        op.is_trace = false;
        *op.signal.mutable_signal() = workload.MakeSignal(i);
      }
    }
  }
  Client client(options);
  std::atomic<size_t> next{0};
  std::atomic<int64_t> traces{0}, signals{0};
  const bool open_loop = options.rate > 0;
  absl::Duration elapsed;
  Tally tally =
      RunWorkers(options, client, &elapsed,
                 [&](int w, absl::Time start, v1::CaptureService::Stub& stub, Tally& mine) {
                   const absl::Time stop = start + options.duration;
                   for (int64_t round = 0;; ++round) {
                     size_t k;
                     absl::Time due = absl::Now();
                     if (open_loop) {
                       // Fixed schedule: op k is due at start + k / rate; latency counts from then.
                       k = static_cast<size_t>(round * options.concurrency + w);
                       due = start + absl::Seconds(static_cast<double>(k) / options.rate);
                       if (due >= stop || k >= ops.size()) break;
                       const absl::Time now = absl::Now();
                       if (due > now) absl::SleepFor(due - now);
                     } else {
                       k = next.fetch_add(1);
                       if (k >= ops.size() || absl::Now() >= stop) break;
                     }
                     grpc::ClientContext context;
                     client.Prepare(context);
                     grpc::Status status;
                     v1::IngestCounts counts;
                     if (ops[k].is_trace) {
                       v1::CreateTraceResponse response;
                       status = stub.CreateTrace(&context, ops[k].trace, &response);
                       if (status.ok()) counts.set_duplicate(response.duplicate() ? 1 : 0);
                       ++traces;
                     } else {
                       v1::CreateSignalResponse response;
                       status = stub.CreateSignal(&context, ops[k].signal, &response);
                       if (status.ok()) counts.set_duplicate(response.duplicate() ? 1 : 0);
                       ++signals;
                     }
                     const double ms = Ms(absl::Now() - due);
                     mine.latency_ms.push_back(ms);
                     (ops[k].is_trace ? mine.trace_ms : mine.signal_ms).push_back(ms);
                     ++mine.rpcs;
                     if (!status.ok()) {
                       mine.Fail(status);
                       continue;
                     }
                     counts.set_accepted(1 - counts.duplicate());
                     mine.Count(counts);
                   }
                 });
  if (static_cast<size_t>(traces + signals) >= ops.size()) {
    std::printf("note: all %zu prepared operations were sent before --duration ended\n",
                ops.size());
  }
  return Report(options, open_loop ? "unary@rate" : "unary", tally, traces, signals, elapsed);
}

// ------------------------------------------------------------------------------------------------
// COPY files and pgbench scripts: the rows capture stores for this workload.

// The same idempotency hash capture stores, so the baseline rows match capture's byte for byte.
using flywheel::capture::ContentHash;

std::string Hex(const std::string& bytes) { return absl::BytesToHexString(bytes); }

std::string Time(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%E3S+00", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

int WriteCopyFiles(const Options& options, const Workload& workload) {
  int64_t trace_bytes = 0, signal_bytes = 0, signals = 0, sessions = 0;
  const int parts = std::max(1, options.copy_parts);
  // Parts split the traces at session boundaries, so each part has its own sessions.
  const int64_t sessions_total =
      (options.traces + options.session_length - 1) / options.session_length;
  for (int part = 0; part < parts; ++part) {
    const int64_t first = sessions_total * part / parts * options.session_length;
    const int64_t end = std::min<int64_t>(
        options.traces, sessions_total * (part + 1) / parts * options.session_length);
    std::ofstream traces_out(absl::StrCat(options.out_dir, "/traces.", part, ".tsv"));
    std::ofstream signals_out(absl::StrCat(options.out_dir, "/signals.", part, ".tsv"));
    std::ofstream queue_out(absl::StrCat(options.out_dir, "/label_queue.", part, ".tsv"));
    std::ofstream sessions_out(absl::StrCat(options.out_dir, "/session_activity.", part, ".tsv"));
    for (int64_t i = first; i < end; ++i) {
      const v1::Trace trace = workload.MakeTrace(i);
      const std::string payload = trace.SerializeAsString();
      trace_bytes += static_cast<int64_t>(payload.size());
      traces_out << options.project << '\t' << trace.trace_id() << '\t' << trace.session_id()
                 << '\t' << trace.user_id() << '\t' << trace.feature_area() << '\t' << trace.model()
                 << '\t' << trace.model_version() << '\t' << trace.prompt_template_id() << '\t'
                 << trace.prompt_version() << '\t' << Time(workload.StartMs(i)) << '\t'
                 << Time(workload.StartMs(i) + workload.LatencyMs(i)) << "\t\\\\x"
                 << Hex(ContentHash(trace)) << "\t0\t\\\\x" << Hex(payload) << '\n';
      queue_out << options.project << '\t' << trace.trace_id() << '\n';
      // The session's last trace, as capture.session_activity holds it after the upserts.
      if ((i + 1) % options.session_length == 0 || i + 1 == end) {
        sessions_out << options.project << '\t' << trace.session_id() << '\t' << trace.trace_id()
                     << '\t' << Time(workload.StartMs(i) + workload.LatencyMs(i)) << '\n';
        ++sessions;
      }
      if (!workload.HasSignal(i)) continue;
      v1::Signal signal = workload.MakeSignal(i);
      const std::string sha = ContentHash(signal);
      const v1::SignalKind kind = Workload::KindOf(signal);
      signal.set_signal_kind(kind);
      const std::string signal_payload = signal.SerializeAsString();
      signal_bytes += static_cast<int64_t>(signal_payload.size());
      ++signals;
      const char* value_key = kind == v1::SIGNAL_KIND_THUMBS_UP     ? "10"
                              : kind == v1::SIGNAL_KIND_THUMBS_DOWN ? "11"
                                                                    : "\\N";
      signals_out << options.project << '\t' << signal.event_id() << '\t' << signal.trace_id()
                  << "\t\t" << signal.user_id() << '\t' << static_cast<int>(kind) << '\t'
                  << static_cast<int>(common::ACTOR_USER) << '\t'
                  << Time(workload.StartMs(i) + workload.LatencyMs(i) + 2000) << '\t' << value_key
                  << "\t\\\\x" << Hex(sha) << "\t0\t\\\\x" << Hex(signal_payload) << '\n';
    }
  }

  // pgbench: one equivalent row per transaction (trace 0 / signal 0 as literals; ids vary).
  const v1::Trace trace = workload.MakeTrace(0);
  v1::Signal signal = workload.MakeSignal(2);  // a thumbs-down with a comment: the larger kind
  const std::string signal_sha = Hex(ContentHash(signal));
  signal.set_signal_kind(Workload::KindOf(signal));
  const std::string trace_id = "'pgb-' || :client_id || '-' || :r";
  const std::string session_id = "'pgb-s' || :client_id || '-' || (:r / 4)";
  const std::string trace_insert = absl::StrCat(
      "INSERT INTO capture.traces (project_id, trace_id, session_id, user_id, feature_area, "
      "model, model_version, prompt_template_id, prompt_version, start_time, end_time, "
      "content_sha256, redactions, payload) VALUES ('",
      options.project, "', ", trace_id, ", ", session_id,
      ", 'user-' || (:r % 2000), 'support', 'gpt-4o', '2024-08-06', 'tmpl-7', 'v3', "
      "now(), now() + interval '800 ms', '\\x",
      Hex(ContentHash(trace)), "', 0, '\\x", Hex(trace.SerializeAsString()),
      "') ON CONFLICT DO NOTHING;\n");
  const std::string signal_insert = absl::StrCat(
      "INSERT INTO capture.signals (project_id, event_id, trace_id, session_id, user_id, "
      "signal_kind, actor, occur_time, value_key, content_sha256, redactions, payload) VALUES ('",
      options.project, "', 'pgb-e' || :client_id || '-' || :r, ", trace_id,
      ", '', 'user-' || (:r % 2000), 2, 1, now(), 11, '\\x", signal_sha, "', 0, '\\x",
      Hex(signal.SerializeAsString()), "') ON CONFLICT DO NOTHING;\n");
  // int4 range: the prepared statement types :r as integer. Ids are 'pgb-<client>-<r>', so a
  // repeat is rare and ON CONFLICT DO NOTHING keeps it harmless.
  const std::string set_r = "\\set r random(1, 2000000000)\n";
  std::ofstream(absl::StrCat(options.out_dir, "/pgbench_trace.sql")) << set_r << trace_insert;
  std::ofstream(absl::StrCat(options.out_dir, "/pgbench_signal.sql")) << set_r << signal_insert;
  // The same rows plus what capture writes with them in one transaction: a label_queue row and,
  // for traces, the session_activity upsert.
  const std::string queue_insert =
      absl::StrCat("INSERT INTO capture.label_queue (project_id, trace_id) VALUES ('",
                   options.project, "', ", trace_id, ");\n");
  std::ofstream(absl::StrCat(options.out_dir, "/pgbench_trace_tx.sql"))
      << set_r << "BEGIN;\n"
      << trace_insert << queue_insert
      << absl::StrCat(
             "INSERT INTO capture.session_activity AS a (project_id, session_id, "
             "last_trace_id, last_activity) VALUES ('",
             options.project, "', ", session_id, ", ", trace_id,
             ", now()) ON CONFLICT (project_id, session_id) DO UPDATE SET "
             "last_trace_id = excluded.last_trace_id, last_activity = "
             "excluded.last_activity WHERE excluded.last_activity >= a.last_activity;\n")
      << "END;\n";
  std::ofstream(absl::StrCat(options.out_dir, "/pgbench_signal_tx.sql"))
      << set_r << "BEGIN;\n"
      << signal_insert << queue_insert << "END;\n";

  std::printf(
      "wrote %d part(s) to %s: %lld traces (payload avg %.0f B), %lld signals (payload "
      "avg %.0f B), %lld sessions; pgbench scripts\n",
      parts, options.out_dir.c_str(), static_cast<long long>(options.traces),
      static_cast<double>(trace_bytes) / std::max(1, options.traces),
      static_cast<long long>(signals),
      static_cast<double>(signal_bytes) / static_cast<double>(std::max<int64_t>(1, signals)),
      static_cast<long long>(sessions));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  flywheel::FlagSet flags("capture_bench",
                          "Load client for the capture ingestion RPCs (bench/capture/run.sh).");
  flags.String("address", &options.address, "capture gRPC address host:port");
  flags.String("api_key", &options.api_key, "secret key with the ingest scope");
  flags.String("mode", &options.mode, "batch | stream | unary | copy_files");
  flags.Int("traces", &options.traces, "traces to send (about half as many signals go along)");
  flags.Int("batch", &options.batch, "batch/stream: traces per request or stream message");
  flags.Int("concurrency", &options.concurrency, "parallel workers (one channel each)");
  flags.Duration("duration", &options.duration, "unary: stop after this long");
  flags.Double("rate", &options.rate, "unary: fixed RPC rate (open loop); 0 = closed loop");
  flags.String("prefix", &options.prefix,
               "id prefix: use a new one per run (ids are idempotency keys)");
  flags.Int64("base_time_ms", &options.base_time_ms,
              "unix ms of trace 0's start (trace i starts i ms later); 0 = now - traces ms - 60 s");
  flags.Int("session_length", &options.session_length, "consecutive traces per session");
  flags.String("project", &options.project, "copy_files: project_id written in the rows");
  flags.String("out_dir", &options.out_dir, "copy_files: output directory");
  flags.Int("copy_parts", &options.copy_parts, "copy_files: split the rows into this many parts");
  absl::Status parsed = flags.Parse(argc, argv);
  if (flags.help_requested()) {
    std::printf("%s", flags.Usage().c_str());
    return 0;
  }
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n", parsed.ToString().c_str());
    return 2;
  }
  if (options.traces < 1 || options.batch < 1 || options.batch > 666 || options.concurrency < 1 ||
      options.session_length < 1) {
    std::fprintf(stderr,
                 "need --traces >= 1, 1 <= --batch <= 666 (items <= 1000 per request), "
                 "--concurrency >= 1, --session_length >= 1\n");
    return 2;
  }
  if (options.base_time_ms == 0) {
    options.base_time_ms = absl::ToUnixMillis(absl::Now()) - options.traces - 60000;
  }
  Workload workload(options);
  if (options.mode == "copy_files") return WriteCopyFiles(options, workload);
  if (options.api_key.empty()) {
    std::fprintf(stderr, "--api_key is required\n");
    return 2;
  }
  if (options.mode == "batch") return RunBatch(options, workload);
  if (options.mode == "stream") return RunStream(options, workload);
  if (options.mode == "unary") return RunUnary(options, workload);
  std::fprintf(stderr, "--mode: batch, stream, unary or copy_files\n");
  return 2;
}
