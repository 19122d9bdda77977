#include "services/annotation/upstream_grpc.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/auth/client_credentials.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "common/text/text.h"

namespace flywheel::annotation {
namespace {

namespace capture = ::flywheel::capture::v1;
namespace clustering = ::flywheel::clustering::v1;
namespace evalset = ::flywheel::evalset::v1;

// A trace snapshot's input and output are each cut to 256 KiB.
constexpr size_t kMaxSnapshotTextBytes = 256 * 1024;
constexpr int kMaxSignalBriefs = 50;
constexpr size_t kMaxBriefCommentCodePoints = 2000;
// Per-call batch limits of the upstream RPCs.
constexpr size_t kMaxNearestClusterQueries = 100;
constexpr size_t kMaxNearestCaseTexts = 100;
constexpr int kListTracesPageSize = 100;

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* ts) {
  const int64_t micros = absl::ToUnixMicros(t);
  int64_t seconds = micros / 1000000;
  int64_t rest = micros % 1000000;
  if (rest < 0) {
    rest += 1000000;
    --seconds;
  }
  ts->set_seconds(seconds);
  ts->set_nanos(static_cast<int32_t>(rest * 1000));
}

// Authenticates `context` for `scope` and sets the deadline.
absl::Status Prepare(grpc::ClientContext& context, const CallScope& scope,
                     const UpstreamOptions& options) {
  if (!scope.forwarded_authorization.empty()) {
    auth::AttachAuthorization(context, scope.forwarded_authorization);
  } else if (options.service_key.empty()) {
    return absl::UnavailableError(
        "no service key configured (--service_key_file): cannot call other services");
  } else if (scope.project_id.empty()) {
    return absl::InvalidArgumentError("upstream call without a project id");
  } else {
    auth::AttachServiceKey(context, options.service_key, scope.project_id);
  }
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options.deadline));
  return absl::OkStatus();
}

absl::Status FromUpstream(absl::string_view service, const grpc::Status& status) {
  absl::Status converted = FromGrpcStatus(status);
  if (converted.ok()) return converted;
  return absl::Status(converted.code(), absl::StrCat(service, ": ", converted.message()));
}

// Whether a failure will repeat for every further call of the batch (so we stop calling).
bool AffectsWholeBatch(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kUnauthenticated ||
         code == absl::StatusCode::kPermissionDenied ||
         code == absl::StatusCode::kResourceExhausted;
}

std::string FormatValue(double v) { return absl::StrFormat("%.4g", v); }

std::string FormatDuration(const google::protobuf::Duration& d) {
  return FormatValue(static_cast<double>(d.seconds()) + d.nanos() / 1e9) + "s";
}

// Brief of a raw signal: its kind and a human-readable value.
v1::SignalBrief BriefOf(const capture::Signal& signal) {
  v1::SignalBrief brief;
  brief.set_kind(SignalKindName(signal.signal_kind()));
  brief.set_actor(signal.actor());
  *brief.mutable_occur_time() = signal.occur_time();
  std::string value;
  switch (signal.kind_case()) {
    case capture::Signal::kExplicitFeedback: {
      const auto& e = signal.explicit_feedback();
      if (e.value_case() == capture::ExplicitFeedback::kRating) {
        value = absl::StrCat("stars=", e.rating());
      } else if (e.value_case() == capture::ExplicitFeedback::kThumb) {
        value = e.thumb() == capture::THUMB_UP ? "thumb=up" : "thumb=down";
      }
      if (e.reason_categories_size() > 0) {
        absl::StrAppend(&value, value.empty() ? "" : " ",
                        "reasons=", absl::StrJoin(e.reason_categories(), ","));
      }
      // Cut at 2,000 code points.
      absl::string_view comment = e.comment();
      size_t bytes = 0, points = 0;
      while (bytes < comment.size() && points < kMaxBriefCommentCodePoints) {
        ++bytes;
        while (bytes < comment.size() &&
               (static_cast<unsigned char>(comment[bytes]) & 0xC0) == 0x80) {
          ++bytes;
        }
        ++points;
      }
      brief.set_comment(std::string(comment.substr(0, bytes)));
      break;
    }
    case capture::Signal::kImplicitSignal: {
      const auto& i = signal.implicit_signal();
      switch (i.action_case()) {
        case capture::ImplicitSignal::kCopy:
          value = absl::StrCat("copied_chars=", i.copy().copied_chars());
          break;
        case capture::ImplicitSignal::kRegenerate:
          if (i.regenerate().attempt_number() > 0) {
            value = absl::StrCat("attempt=", i.regenerate().attempt_number());
          }
          break;
        case capture::ImplicitSignal::kEdit:
          if (i.edit().edit_case() == capture::EditSignal::kEditRatio) {
            value = absl::StrCat("edit_ratio=", FormatValue(i.edit().edit_ratio()));
          }
          break;
        case capture::ImplicitSignal::kDwell:
          value = absl::StrCat("dwell=", FormatDuration(i.dwell().duration()));
          if (!i.dwell().next_action().empty()) {
            absl::StrAppend(&value, " next=", i.dwell().next_action());
          }
          break;
        default:
          break;
      }
      break;
    }
    case capture::Signal::kOutcome: {
      const auto& o = signal.outcome();
      value = absl::StrCat(o.name(), "=",
                           o.status() == capture::OUTCOME_STATUS_SUCCESS ? "success" : "failure");
      if (o.has_value()) absl::StrAppend(&value, " value=", FormatValue(o.value()));
      break;
    }
    case capture::Signal::kCustom:
      value = signal.custom().name();
      break;
    case capture::Signal::KIND_NOT_SET:
      break;
  }
  brief.set_value(value);
  return brief;
}

v1::SignalBrief BriefOf(const capture::DerivedSignal& signal) {
  v1::SignalBrief brief;
  brief.set_kind(SignalKindName(signal.signal_kind()));
  brief.set_actor(::flywheel::common::v1::ACTOR_FLYWHEEL);
  *brief.mutable_occur_time() = signal.occur_time();
  std::string value;
  switch (signal.details_case()) {
    case capture::DerivedSignal::kRephrase:
      if (signal.rephrase().has_similarity()) {
        value = absl::StrCat("similarity=", FormatValue(signal.rephrase().similarity()));
      }
      break;
    case capture::DerivedSignal::kRegeneratePair:
      if (signal.regenerate_pair().attempt_number() > 0) {
        value = absl::StrCat("attempt=", signal.regenerate_pair().attempt_number());
      }
      break;
    case capture::DerivedSignal::kEditDistance:
      value = absl::StrCat("edit_distance=", FormatValue(signal.edit_distance().edit_ratio()));
      break;
    case capture::DerivedSignal::kAbandonment:
      value = absl::StrCat("session_turns=", signal.abandonment().session_turns());
      break;
    case capture::DerivedSignal::kTimeToNextAction:
      value = absl::StrCat("next_action_after=",
                           FormatDuration(signal.time_to_next_action().duration()));
      break;
    case capture::DerivedSignal::DETAILS_NOT_SET:
      break;
  }
  brief.set_value(value);
  return brief;
}

// Cuts the input to 256 KiB of text in total (prompt, or message contents in order).
bool TruncateInput(::flywheel::common::v1::LlmInput& input) {
  if (input.has_messages()) {
    size_t budget = kMaxSnapshotTextBytes;
    bool cut = false;
    for (auto& message : *input.mutable_messages()->mutable_messages()) {
      if (message.content().size() > budget) {
        message.set_content(std::string(text::TruncateUtf8(message.content(), budget)));
        cut = true;
      }
      budget -= message.content().size();
    }
    return cut;
  }
  if (input.prompt().size() > kMaxSnapshotTextBytes) {
    input.set_prompt(std::string(text::TruncateUtf8(input.prompt(), kMaxSnapshotTextBytes)));
    return true;
  }
  return false;
}

}  // namespace

std::string SignalKindName(capture::SignalKind kind) {
  std::string name = capture::SignalKind_Name(kind);
  constexpr absl::string_view kPrefix = "SIGNAL_KIND_";
  if (absl::StartsWith(name, kPrefix)) name = name.substr(kPrefix.size());
  return absl::AsciiStrToLower(name);
}

FetchedTrace FetchedTraceFromCapture(const capture::GetTraceResponse& response, absl::Time now) {
  const capture::Trace& trace = response.trace();
  FetchedTrace out;
  out.trace_id = trace.trace_id();
  out.status = absl::OkStatus();
  v1::TraceSnapshot& s = out.snapshot;
  s.set_trace_id(trace.trace_id());
  *s.mutable_trace_create_time() = trace.start_time();
  *s.mutable_input() = trace.input();
  bool truncated = TruncateInput(*s.mutable_input());
  if (trace.output().size() > kMaxSnapshotTextBytes) {
    s.set_output(std::string(text::TruncateUtf8(trace.output(), kMaxSnapshotTextBytes)));
    truncated = true;
  } else {
    s.set_output(trace.output());
  }
  s.set_truncated(truncated);
  s.set_model_version(trace.model_version());
  s.set_prompt_version(trace.prompt_version());
  s.set_feature_area(trace.feature_area());
  s.set_session_id(trace.session_id());
  *s.mutable_metadata() = trace.metadata();

  // Counts of raw signals by family (custom signals count with outcomes: both come from the
  // customer's systems); briefs of raw and derived signals, most recent first.
  std::set<std::string> kinds;
  std::vector<v1::SignalBrief> briefs;
  v1::SignalsSummary& summary = *s.mutable_signals();
  for (const capture::Signal& signal : response.signals()) {
    switch (signal.kind_case()) {
      case capture::Signal::kExplicitFeedback:
        summary.set_explicit_count(summary.explicit_count() + 1);
        break;
      case capture::Signal::kImplicitSignal:
        summary.set_implicit_count(summary.implicit_count() + 1);
        break;
      case capture::Signal::kOutcome:
      case capture::Signal::kCustom:
        summary.set_outcome_count(summary.outcome_count() + 1);
        break;
      case capture::Signal::KIND_NOT_SET:
        break;
    }
    if (signal.signal_kind() != capture::SIGNAL_KIND_UNSPECIFIED) {
      kinds.insert(SignalKindName(signal.signal_kind()));
    }
    briefs.push_back(BriefOf(signal));
  }
  for (const capture::DerivedSignal& derived : response.derived_signals()) {
    if (derived.signal_kind() != capture::SIGNAL_KIND_UNSPECIFIED) {
      kinds.insert(SignalKindName(derived.signal_kind()));
    }
    briefs.push_back(BriefOf(derived));
  }
  std::stable_sort(briefs.begin(), briefs.end(),
                   [](const v1::SignalBrief& a, const v1::SignalBrief& b) {
                     return ToTime(a.occur_time()) > ToTime(b.occur_time());
                   });
  for (size_t i = 0; i < briefs.size() && static_cast<int>(i) < kMaxSignalBriefs; ++i) {
    *summary.add_signals() = std::move(briefs[i]);
  }
  out.signal_kinds.assign(kinds.begin(), kinds.end());

  if (trace.has_label()) {
    const capture::TraceLabel& label = trace.label();
    v1::TraceLabelSnapshot& l = *s.mutable_label();
    l.set_quality_score(label.quality_score());
    l.set_flagged(label.flagged());
    std::set<std::string> seen;
    for (const capture::LabelReason& reason : label.reasons()) {
      // Reasons that voted against the trace, by rule id, once each.
      if (reason.contribution() < 0 && seen.insert(reason.rule_id()).second) {
        l.add_reasons(reason.rule_id());
      }
    }
    l.set_labeler_version(absl::StrCat(label.rule_set_version()));
  }
  SetTimestamp(now, s.mutable_snapshot_time());
  return out;
}

std::shared_ptr<grpc::Channel> MakeUpstreamChannel(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

// ---------------------------------------------------------------------------------------------
// Capture

GrpcCaptureUpstream::GrpcCaptureUpstream(std::shared_ptr<grpc::Channel> channel,
                                         UpstreamOptions options)
    : stub_(capture::CaptureService::NewStub(std::move(channel))), options_(std::move(options)) {}

absl::StatusOr<FlaggedFeedPage> GrpcCaptureUpstream::ReadFlaggedFeed(const CallScope& scope,
                                                                     int64_t after_sequence,
                                                                     int limit) {
  grpc::ClientContext context;
  if (absl::Status s = Prepare(context, scope, options_); !s.ok()) return s;
  capture::ReadFlaggedFeedRequest request;
  request.set_after_sequence(std::max<int64_t>(0, after_sequence));
  request.set_max_items(std::clamp(limit, 1, 1000));
  capture::ReadFlaggedFeedResponse response;
  grpc::Status status = stub_->ReadFlaggedFeed(&context, request, &response);
  if (!status.ok()) return FromUpstream("capture", status);
  FlaggedFeedPage page;
  page.entries.assign(std::make_move_iterator(response.mutable_entries()->begin()),
                      std::make_move_iterator(response.mutable_entries()->end()));
  page.next_after_sequence = response.next_after_sequence();
  page.high_water_mark = response.high_water_mark();
  page.oldest_sequence = response.oldest_sequence();
  return page;
}

absl::StatusOr<std::vector<FetchedTrace>> GrpcCaptureUpstream::GetTraces(
    const CallScope& scope, const std::vector<std::string>& trace_ids) {
  {
    grpc::ClientContext probe;  // fails early (no credentials) before any call
    RETURN_IF_ERROR(Prepare(probe, scope, options_));
  }
  struct Call {
    grpc::ClientContext context;
    capture::GetTraceRequest request;
    capture::GetTraceResponse response;
  };
  std::vector<FetchedTrace> out(trace_ids.size());
  std::vector<std::unique_ptr<Call>> calls(trace_ids.size());
  std::mutex mu;
  std::condition_variable changed;
  int in_flight = 0;
  absl::Status sticky;  // a failure that every further call would repeat: stop calling
  const int window = std::max(1, options_.max_concurrent_calls);
  std::unique_lock<std::mutex> lock(mu);
  for (size_t i = 0; i < trace_ids.size(); ++i) {
    changed.wait(lock, [&] { return in_flight < window; });
    out[i].trace_id = trace_ids[i];
    if (!sticky.ok()) {
      out[i].status = sticky;
      continue;
    }
    calls[i] = std::make_unique<Call>();
    Call& call = *calls[i];
    if (absl::Status prepared = Prepare(call.context, scope, options_); !prepared.ok()) {
      out[i].status = prepared;  // cannot happen after the probe; never return with calls out
      continue;
    }
    call.request.set_trace_id(trace_ids[i]);
    ++in_flight;
    lock.unlock();
    stub_->async()->GetTrace(
        &call.context, &call.request, &call.response, [&, i](grpc::Status status) {
          FetchedTrace fetched;
          if (status.ok()) {
            fetched = FetchedTraceFromCapture(calls[i]->response, absl::Now());
          } else {
            fetched.trace_id = trace_ids[i];
            fetched.status = FromUpstream("capture", status);
          }
          std::lock_guard<std::mutex> guard(mu);
          if (!fetched.status.ok() && AffectsWholeBatch(fetched.status.code()) && sticky.ok()) {
            sticky = fetched.status;
          }
          out[i] = std::move(fetched);
          --in_flight;
          changed.notify_all();
        });
    lock.lock();
  }
  changed.wait(lock, [&] { return in_flight == 0; });
  return out;
}

absl::StatusOr<std::vector<SampledTrace>> GrpcCaptureUpstream::SampleTraces(
    const CallScope& scope, const TimeWindow& window, int n, uint64_t seed) {
  std::vector<SampledTrace> out;
  if (n <= 0) return out;
  const absl::Time end = window.end.value_or(absl::Now());
  const absl::Time start = window.start.value_or(end - absl::Hours(24));
  if (end <= start) return out;
  std::mt19937_64 rng(seed);

  // One page of the newest traces in [start, t]; the whole window when t = end.
  auto list = [&](absl::Time upper, int page_size) -> absl::StatusOr<capture::ListTracesResponse> {
    grpc::ClientContext context;
    RETURN_IF_ERROR(Prepare(context, scope, options_));
    capture::ListTracesRequest request;
    request.set_page_size(page_size);
    SetTimestamp(start, request.mutable_time_range()->mutable_start_time());
    SetTimestamp(upper, request.mutable_time_range()->mutable_end_time());
    for (const char* path : {"trace_id", "feature_area", "start_time"}) {
      request.mutable_read_mask()->add_paths(path);
    }
    capture::ListTracesResponse response;
    grpc::Status status = stub_->ListTraces(&context, request, &response);
    if (!status.ok()) return FromUpstream("capture", status);
    return response;
  };
  auto to_sampled = [](const capture::Trace& t) {
    return SampledTrace{t.trace_id(), t.feature_area(), ToTime(t.start_time())};
  };

  ASSIGN_OR_RETURN(capture::ListTracesResponse first, list(end, kListTracesPageSize));
  if (first.next_page_token().empty()) {
    // The whole window fits one page: draw uniformly from it.
    std::vector<SampledTrace> all;
    for (const capture::Trace& t : first.traces()) all.push_back(to_sampled(t));
    for (size_t i = all.size(); i > 1; --i) std::swap(all[i - 1], all[rng() % i]);
    if (all.size() > static_cast<size_t>(n)) all.resize(static_cast<size_t>(n));
    return all;
  }
  // Probes at uniformly random instants: the newest trace at or before each.
  absl::flat_hash_set<std::string> seen;
  const int64_t span_micros = absl::ToInt64Microseconds(end - start);
  const int max_probes = n * std::max(1, options_.sample_probe_factor);
  for (int probe = 0; probe < max_probes && static_cast<int>(out.size()) < n; ++probe) {
    const absl::Time t =
        start +
        absl::Microseconds(1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(std::max<int64_t>(
                                                                1, span_micros))));
    ASSIGN_OR_RETURN(capture::ListTracesResponse page, list(t, 1));
    if (page.traces_size() == 0) continue;
    if (seen.insert(page.traces(0).trace_id()).second) out.push_back(to_sampled(page.traces(0)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Clustering

GrpcClusteringUpstream::GrpcClusteringUpstream(std::shared_ptr<grpc::Channel> channel,
                                               UpstreamOptions options)
    : stub_(clustering::ClusteringService::NewStub(std::move(channel))),
      options_(std::move(options)) {}

absl::StatusOr<clustering::GetTraceAssignmentResponse> GrpcClusteringUpstream::GetTraceAssignment(
    const CallScope& scope, const std::string& trace_id) {
  grpc::ClientContext context;
  if (absl::Status s = Prepare(context, scope, options_); !s.ok()) return s;
  clustering::GetTraceAssignmentRequest request;
  request.set_trace_id(trace_id);
  clustering::GetTraceAssignmentResponse response;
  grpc::Status status = stub_->GetTraceAssignment(&context, request, &response);
  if (!status.ok()) return FromUpstream("clustering", status);
  return response;
}

absl::StatusOr<ClusterMembersPage> GrpcClusteringUpstream::ListClusterMembers(
    const CallScope& scope, const std::string& cluster_id, const std::string& page_token,
    int page_size) {
  grpc::ClientContext context;
  if (absl::Status s = Prepare(context, scope, options_); !s.ok()) return s;
  clustering::ListClusterMembersRequest request;
  request.set_cluster_id(cluster_id);
  request.set_page_token(page_token);
  request.set_page_size(std::clamp(page_size, 1, 1000));
  clustering::ListClusterMembersResponse response;
  grpc::Status status = stub_->ListClusterMembers(&context, request, &response);
  if (!status.ok()) return FromUpstream("clustering", status);
  ClusterMembersPage page;
  page.members.assign(std::make_move_iterator(response.mutable_members()->begin()),
                      std::make_move_iterator(response.mutable_members()->end()));
  page.next_page_token = response.next_page_token();
  page.clustering_version = response.clustering_version();
  return page;
}

absl::StatusOr<std::vector<clustering::NearestClustersResult>>
GrpcClusteringUpstream::NearestClusters(const CallScope& scope,
                                        const std::vector<std::string>& texts, int top_k) {
  std::vector<clustering::NearestClustersResult> out;
  for (size_t begin = 0; begin < texts.size(); begin += kMaxNearestClusterQueries) {
    const size_t end = std::min(texts.size(), begin + kMaxNearestClusterQueries);
    grpc::ClientContext context;
    if (absl::Status s = Prepare(context, scope, options_); !s.ok()) return s;
    clustering::NearestClustersRequest request;
    for (size_t i = begin; i < end; ++i) request.add_queries()->set_text(texts[i]);
    request.set_top_k(std::clamp(top_k, 1, 20));
    clustering::NearestClustersResponse response;
    grpc::Status status = stub_->NearestClusters(&context, request, &response);
    if (!status.ok()) return FromUpstream("clustering", status);
    for (auto& result : *response.mutable_results()) {
      result.set_index(result.index() + static_cast<int32_t>(begin));
      out.push_back(std::move(result));
    }
  }
  return out;
}

absl::StatusOr<clustering::Cluster> GrpcClusteringUpstream::GetCluster(
    const CallScope& scope, const std::string& cluster_id) {
  grpc::ClientContext context;
  if (absl::Status s = Prepare(context, scope, options_); !s.ok()) return s;
  clustering::GetClusterRequest request;
  request.set_cluster_id(cluster_id);
  clustering::GetClusterResponse response;
  grpc::Status status = stub_->GetCluster(&context, request, &response);
  if (!status.ok()) return FromUpstream("clustering", status);
  return std::move(*response.mutable_cluster());
}

// ---------------------------------------------------------------------------------------------
// Eval-set

GrpcEvalSetUpstream::GrpcEvalSetUpstream(std::shared_ptr<grpc::Channel> channel,
                                         UpstreamOptions options)
    : stub_(evalset::EvalSetService::NewStub(std::move(channel))), options_(std::move(options)) {}

absl::StatusOr<evalset::AddCasesResponse> GrpcEvalSetUpstream::AddCases(
    const CallScope& scope, const std::string& eval_set_id, const std::vector<evalset::Case>& cases,
    const std::string& change_note) {
  grpc::ClientContext context;
  if (absl::Status s = Prepare(context, scope, options_); !s.ok()) return s;
  evalset::AddCasesRequest request;
  request.set_eval_set_id(eval_set_id);
  for (const evalset::Case& c : cases) *request.add_cases() = c;
  request.set_change_note(change_note);
  evalset::AddCasesResponse response;
  grpc::Status status = stub_->AddCases(&context, request, &response);
  if (!status.ok()) return FromUpstream("evalset", status);
  return response;
}

absl::StatusOr<evalset::UpdateCaseResponse> GrpcEvalSetUpstream::UpdateCase(
    const CallScope& scope, const std::string& eval_set_id, const evalset::Case& eval_case,
    const std::vector<std::string>& paths, const std::string& change_note) {
  grpc::ClientContext context;
  if (absl::Status s = Prepare(context, scope, options_); !s.ok()) return s;
  evalset::UpdateCaseRequest request;
  request.set_eval_set_id(eval_set_id);
  *request.mutable_eval_case() = eval_case;
  for (const std::string& path : paths) request.mutable_update_mask()->add_paths(path);
  request.set_change_note(change_note);
  evalset::UpdateCaseResponse response;
  grpc::Status status = stub_->UpdateCase(&context, request, &response);
  if (!status.ok()) return FromUpstream("evalset", status);
  return response;
}

absl::StatusOr<std::vector<evalset::NearestCases>> GrpcEvalSetUpstream::FindNearestCases(
    const CallScope& scope, const std::vector<std::string>& texts,
    const std::vector<std::string>& eval_set_ids, int k) {
  std::vector<evalset::NearestCases> out;
  for (size_t begin = 0; begin < texts.size(); begin += kMaxNearestCaseTexts) {
    const size_t end = std::min(texts.size(), begin + kMaxNearestCaseTexts);
    grpc::ClientContext context;
    if (absl::Status s = Prepare(context, scope, options_); !s.ok()) return s;
    evalset::FindNearestCasesRequest request;
    for (size_t i = begin; i < end; ++i) request.add_texts(texts[i]);
    for (const std::string& id : eval_set_ids) request.add_eval_set_ids(id);
    request.set_k(std::clamp(k, 1, 50));
    evalset::FindNearestCasesResponse response;
    grpc::Status status = stub_->FindNearestCases(&context, request, &response);
    if (!status.ok()) return FromUpstream("evalset", status);
    for (auto& result : *response.mutable_results()) {
      result.set_index(result.index() + static_cast<int32_t>(begin));
      out.push_back(std::move(result));
    }
  }
  return out;
}

}  // namespace flywheel::annotation
