#include "services/capture/capture_service.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/grpc_auth.h"
#include "common/status/grpc_status.h"
#include "services/capture/labeling.h"
#include "services/capture/validation.h"

namespace flywheel::capture {
namespace {

using auth::Requirement;
using auth::Scope;

// The status of a single-item write whose item was rejected.
absl::Status ItemStatus(const v1::IngestResult& result, const std::string& prefix) {
  const auto& item = result.result();
  const std::string field = item.field().empty() ? prefix : absl::StrCat(prefix, ".", item.field());
  return absl::Status(static_cast<absl::StatusCode>(item.code()),
                      absl::StrCat(field, ": ", item.reason()));
}

bool StoredSomething(const v1::IngestCounts& counts) { return counts.accepted() > 0; }

}  // namespace

CaptureServiceHandler::CaptureServiceHandler(auth::Authenticator* authenticator,
                                             CaptureLogic* logic, Logger* logger,
                                             std::function<void()> on_ingested,
                                             CaptureHandlerOptions options)
    : authenticator_(authenticator),
      logic_(logic),
      logger_(logger),
      on_ingested_(std::move(on_ingested)),
      options_(options),
      executor_(options.worker_threads, options.max_queued) {}

CaptureServiceHandler::~CaptureServiceHandler() = default;

absl::StatusOr<auth::Principal> CaptureServiceHandler::Authenticate(
    grpc::CallbackServerContext* context, const Requirement& requirement) {
  return auth::AuthenticateCall(*context, *authenticator_, requirement);
}

grpc::Status CaptureServiceHandler::Finish(const absl::Status& status, const char* method) {
  if (status.code() == absl::StatusCode::kInternal || status.code() == absl::StatusCode::kUnknown) {
    logger_->Error("request failed", {{"method", method}, {"status", status.ToString()}});
  }
  return ToGrpcStatus(status);
}

grpc::ServerUnaryReactor* CaptureServiceHandler::Run(
    grpc::CallbackServerContext* context, const Requirement& requirement,
    std::function<absl::Status(const auth::Principal&)> body) {
  return RunUnary(context, executor_, [this, context, requirement, body = std::move(body)] {
    absl::StatusOr<auth::Principal> principal = Authenticate(context, requirement);
    if (!principal.ok()) return ToGrpcStatus(principal.status());
    return Finish(body(*principal), "capture");
  });
}

// ---------------------------------------------------------------------------------------------
// Unary ingestion

namespace {

std::vector<ItemRef> Refs(const google::protobuf::RepeatedPtrField<v1::IngestItem>& items) {
  std::vector<ItemRef> refs;
  refs.reserve(items.size());
  for (const v1::IngestItem& item : items) {
    refs.push_back(ItemRef{item.has_trace() ? &item.trace() : nullptr,
                           item.has_signal() ? &item.signal() : nullptr});
  }
  return refs;
}

template <typename Message>
bool ParseRaw(const grpc::ByteBuffer& raw, Message* message) {
  grpc::ByteBuffer copy(raw);  // Deserialize consumes its buffer; copies share the slices
  return grpc::SerializationTraits<Message>::Deserialize(&copy, message).ok();
}

const grpc::Status kUnparsable(grpc::StatusCode::INVALID_ARGUMENT,
                               "request: not a valid message (malformed UTF-8 in a string field?)");

}  // namespace

template <typename Request, typename Response>
grpc::ServerUnaryReactor* CaptureServiceHandler::RunRaw(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response,
                                                        const Requirement& requirement,
                                                        TypedBody<Request, Response> body) {
  auto parsed = std::make_shared<Request>();
  if (!ParseRaw(*request, parsed.get())) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(kUnparsable);
    return reactor;
  }
  return Run(context, requirement,
             [this, parsed, response, body](const auth::Principal& principal) -> absl::Status {
               Response typed;
               absl::Status status = (this->*body)(principal, *parsed, &typed);
               if (!status.ok()) return status;
               bool own = false;
               if (!grpc::SerializationTraits<Response>::Serialize(typed, response, &own).ok()) {
                 return absl::InternalError("cannot serialize the response");
               }
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::CreateTrace(grpc::CallbackServerContext* context,
                                                             const grpc::ByteBuffer* request,
                                                             grpc::ByteBuffer* response) {
  return RunRaw(context, request, response, Requirement::Of(Scope::kIngest),
                &CaptureServiceHandler::DoCreateTrace);
}

grpc::ServerUnaryReactor* CaptureServiceHandler::CreateSignal(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* request,
                                                              grpc::ByteBuffer* response) {
  return RunRaw(context, request, response, Requirement::SignalWrite(),
                &CaptureServiceHandler::DoCreateSignal);
}

grpc::ServerUnaryReactor* CaptureServiceHandler::BatchCreateTraces(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return RunRaw(context, request, response, Requirement::Of(Scope::kIngest),
                &CaptureServiceHandler::DoBatchCreateTraces);
}

grpc::ServerUnaryReactor* CaptureServiceHandler::BatchCreateSignals(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return RunRaw(context, request, response, Requirement::SignalWrite(),
                &CaptureServiceHandler::DoBatchCreateSignals);
}

grpc::ServerUnaryReactor* CaptureServiceHandler::Ingest(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  return RunRaw(context, request, response, Requirement::Of(Scope::kIngest),
                &CaptureServiceHandler::DoIngest);
}

absl::Status CaptureServiceHandler::DoCreateTrace(const auth::Principal& principal,
                                                  const v1::CreateTraceRequest& request,
                                                  v1::CreateTraceResponse* response) {
  if (!request.has_trace()) return absl::InvalidArgumentError("trace: required");
  absl::StatusOr<CaptureLogic::IngestOutcome> outcome =
      logic_->Ingest(Writer{principal.project_id, false}, {ItemRef{&request.trace(), nullptr}});
  if (!outcome.ok()) return outcome.status();
  const v1::IngestResult& result = outcome->results[0];
  if (result.result().outcome() == common::v1::ITEM_OUTCOME_REJECTED) {
    return ItemStatus(result, "trace");
  }
  response->set_trace_id(request.trace().trace_id());
  response->set_duplicate(result.result().outcome() == common::v1::ITEM_OUTCOME_DUPLICATE);
  *response->mutable_redactions() = result.redactions();
  *response->mutable_receive_time() = ToProto(outcome->receive_times[0]);
  if (StoredSomething(outcome->counts)) on_ingested_();
  return absl::OkStatus();
}

absl::Status CaptureServiceHandler::DoCreateSignal(const auth::Principal& principal,
                                                   const v1::CreateSignalRequest& request,
                                                   v1::CreateSignalResponse* response) {
  if (!request.has_signal()) return absl::InvalidArgumentError("signal: required");
  absl::StatusOr<CaptureLogic::IngestOutcome> outcome =
      logic_->Ingest(Writer{principal.project_id, principal.kind == auth::KeyKind::kPublic},
                     {ItemRef{nullptr, &request.signal()}});
  if (!outcome.ok()) return outcome.status();
  const v1::IngestResult& result = outcome->results[0];
  if (result.result().outcome() == common::v1::ITEM_OUTCOME_REJECTED) {
    return ItemStatus(result, "signal");
  }
  response->set_event_id(request.signal().event_id());
  response->set_duplicate(result.result().outcome() == common::v1::ITEM_OUTCOME_DUPLICATE);
  *response->mutable_redactions() = result.redactions();
  *response->mutable_receive_time() = ToProto(outcome->receive_times[0]);
  response->set_trace_received(outcome->trace_received[0]);
  if (StoredSomething(outcome->counts)) on_ingested_();
  return absl::OkStatus();
}

namespace {

template <typename Response>
absl::Status Respond(absl::StatusOr<CaptureLogic::IngestOutcome> outcome, Response* response,
                     const std::function<void()>& on_ingested) {
  if (!outcome.ok()) return outcome.status();
  for (v1::IngestResult& result : outcome->results) *response->add_results() = std::move(result);
  *response->mutable_counts() = outcome->counts;
  if (StoredSomething(outcome->counts)) on_ingested();
  return absl::OkStatus();
}

}  // namespace

absl::Status CaptureServiceHandler::DoBatchCreateTraces(const auth::Principal& principal,
                                                        const v1::BatchCreateTracesRequest& request,
                                                        v1::BatchCreateTracesResponse* response) {
  std::vector<ItemRef> items;
  items.reserve(request.traces_size());
  for (const v1::Trace& trace : request.traces()) items.push_back(ItemRef{&trace, nullptr});
  return Respond(logic_->Ingest(Writer{principal.project_id, false}, items), response,
                 on_ingested_);
}

absl::Status CaptureServiceHandler::DoBatchCreateSignals(
    const auth::Principal& principal, const v1::BatchCreateSignalsRequest& request,
    v1::BatchCreateSignalsResponse* response) {
  std::vector<ItemRef> items;
  items.reserve(request.signals_size());
  for (const v1::Signal& signal : request.signals()) items.push_back(ItemRef{nullptr, &signal});
  return Respond(
      logic_->Ingest(Writer{principal.project_id, principal.kind == auth::KeyKind::kPublic}, items),
      response, on_ingested_);
}

absl::Status CaptureServiceHandler::DoIngest(const auth::Principal& principal,
                                             const v1::IngestRequest& request,
                                             v1::IngestResponse* response) {
  return Respond(logic_->Ingest(Writer{principal.project_id, false}, Refs(request.items())),
                 response, on_ingested_);
}

// ---------------------------------------------------------------------------------------------
// Streaming ingestion: items are committed in windows (1000 items or 1 s of age), each on the
// executor while reading pauses; the single response goes out after the last commit.

class StreamIngestReactor : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  StreamIngestReactor(CaptureServiceHandler* handler, grpc::CallbackServerContext* context,
                      grpc::ByteBuffer* response)
      : handler_(handler), context_(context), raw_response_(response), started_(absl::Now()) {
    if (!handler_->executor_.TrySubmit([this] { Authenticate(); })) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "server busy; retry"));
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // half-close (or a broken stream: then OnCancel has fired too)
      Commit(/*last=*/true);
      return;
    }
    request_.Clear();
    if (!ParseRaw(raw_request_, &request_)) {
      Finish(kUnparsable);
      return;
    }
    for (v1::IngestItem& item : *request_.mutable_items()) window_.push_back(std::move(item));
    received_ += request_.items_size();
    if (request_.items_size() > kMaxBatchItems) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "items: at most 1000 per message"));
      return;
    }
    if (received_ > handler_->options_.stream_max_items ||
        absl::Now() - started_ > handler_->options_.stream_max_duration) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "stream limit reached (10,000 items or 10 minutes): open a new stream"));
      return;
    }
    if (window_.empty()) window_started_ = absl::Now();
    if (static_cast<int>(window_.size()) >= handler_->options_.stream_window_items ||
        absl::Now() - window_started_ >= handler_->options_.stream_window_age) {
      Commit(/*last=*/false);
    } else {
      StartRead(&raw_request_);
    }
  }

  void OnDone() override { delete this; }

 private:
  void Authenticate() {
    absl::StatusOr<auth::Principal> principal =
        handler_->Authenticate(context_, Requirement::Of(Scope::kIngest));
    if (!principal.ok()) {
      Finish(ToGrpcStatus(principal.status()));
      return;
    }
    project_id_ = principal->project_id;
    window_started_ = absl::Now();
    StartRead(&raw_request_);
  }

  void Succeed() {
    bool own = false;
    if (!grpc::SerializationTraits<v1::StreamIngestResponse>::Serialize(response_, raw_response_,
                                                                        &own)
             .ok()) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL, "internal error"));
      return;
    }
    Finish(grpc::Status::OK);
  }

  void Commit(bool last) {
    if (window_.empty()) {
      if (last) Succeed();
      return;
    }
    std::vector<v1::IngestItem> batch;
    // Commit at most one full window per transaction.
    const size_t take = std::min(window_.size(), static_cast<size_t>(kMaxBatchItems));
    batch.assign(std::make_move_iterator(window_.begin()),
                 std::make_move_iterator(window_.begin() + static_cast<long>(take)));
    window_.erase(window_.begin(), window_.begin() + static_cast<long>(take));
    auto work = [this, batch = std::move(batch), last]() mutable {
      std::vector<ItemRef> refs;
      refs.reserve(batch.size());
      for (const v1::IngestItem& item : batch) {
        refs.push_back(ItemRef{item.has_trace() ? &item.trace() : nullptr,
                               item.has_signal() ? &item.signal() : nullptr});
      }
      absl::StatusOr<CaptureLogic::IngestOutcome> outcome =
          handler_->logic_->Ingest(Writer{project_id_, false}, refs);
      if (!outcome.ok()) {
        Finish(handler_->Finish(outcome.status(), "StreamIngest"));
        return;
      }
      for (v1::IngestResult& result : outcome->results) {
        result.mutable_result()->set_index(result.result().index() + committed_);
        *response_.add_results() = std::move(result);
      }
      committed_ += static_cast<int>(refs.size());
      auto* counts = response_.mutable_counts();
      counts->set_accepted(counts->accepted() + outcome->counts.accepted());
      counts->set_duplicate(counts->duplicate() + outcome->counts.duplicate());
      counts->set_rejected(counts->rejected() + outcome->counts.rejected());
      counts->set_redactions(counts->redactions() + outcome->counts.redactions());
      response_.set_commits(response_.commits() + 1);
      if (StoredSomething(outcome->counts)) handler_->on_ingested_();
      window_started_ = absl::Now();
      if (!window_.empty()) {
        Commit(last);  // still on the executor thread: the rest of an oversized window
      } else if (last) {
        Succeed();
      } else {
        StartRead(&raw_request_);
      }
    };
    if (!handler_->executor_.TrySubmit(std::move(work))) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "server busy; retry"));
    }
  }

  CaptureServiceHandler* const handler_;
  grpc::CallbackServerContext* const context_;
  grpc::ByteBuffer* const raw_response_;
  const absl::Time started_;
  std::string project_id_;
  grpc::ByteBuffer raw_request_;
  v1::StreamIngestRequest request_;
  v1::StreamIngestResponse response_;
  std::vector<v1::IngestItem> window_;
  absl::Time window_started_;
  int received_ = 0;
  int committed_ = 0;
};

grpc::ServerReadReactor<grpc::ByteBuffer>* CaptureServiceHandler::StreamIngest(
    grpc::CallbackServerContext* context, grpc::ByteBuffer* response) {
  return new StreamIngestReactor(this, context, response);
}

// ---------------------------------------------------------------------------------------------
// Reads

grpc::ServerUnaryReactor* CaptureServiceHandler::GetTrace(grpc::CallbackServerContext* context,
                                                          const v1::GetTraceRequest* request,
                                                          v1::GetTraceResponse* response) {
  return Run(context, Requirement::Of(Scope::kRead), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::GetTraceResponse> result = logic_->GetTrace(principal.project_id, *request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::ListTraces(grpc::CallbackServerContext* context,
                                                            const v1::ListTracesRequest* request,
                                                            v1::ListTracesResponse* response) {
  return Run(context, Requirement::Of(Scope::kRead), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::ListTracesResponse> result =
        logic_->ListTraces(principal.project_id, *request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::ListSignals(grpc::CallbackServerContext* context,
                                                             const v1::ListSignalsRequest* request,
                                                             v1::ListSignalsResponse* response) {
  return Run(context, Requirement::Of(Scope::kRead), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::ListSignalsResponse> result =
        logic_->ListSignals(principal.project_id, *request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::GetLabelRuleSet(
    grpc::CallbackServerContext* context, const v1::GetLabelRuleSetRequest* request,
    v1::GetLabelRuleSetResponse* response) {
  return Run(context, Requirement::Of(Scope::kRead), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::LabelRuleSet> rules =
        logic_->GetLabelRuleSet(principal.project_id, request->version());
    if (!rules.ok()) return rules.status();
    *response->mutable_rule_set() = std::move(*rules);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::GetRedactionConfig(
    grpc::CallbackServerContext* context, const v1::GetRedactionConfigRequest* request,
    v1::GetRedactionConfigResponse* response) {
  return Run(context, Requirement::Of(Scope::kRead), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::RedactionConfig> config = logic_->GetRedactionConfig(principal.project_id);
    if (!config.ok()) return config.status();
    *response->mutable_config() = std::move(*config);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::ListPreferencePairs(
    grpc::CallbackServerContext* context, const v1::ListPreferencePairsRequest* request,
    v1::ListPreferencePairsResponse* response) {
  return Run(context, Requirement::AnyOf(Scope::kRead, Scope::kEval),
             [=, this](const auth::Principal& principal) {
               absl::StatusOr<v1::ListPreferencePairsResponse> result =
                   logic_->ListPreferencePairs(principal.project_id, *request);
               if (!result.ok()) return result.status();
               *response = std::move(*result);
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::ListLabelRuleSetVersions(
    grpc::CallbackServerContext* context, const v1::ListLabelRuleSetVersionsRequest* request,
    v1::ListLabelRuleSetVersionsResponse* response) {
  return Run(context, Requirement::Of(Scope::kRead), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::ListLabelRuleSetVersionsResponse> result =
        logic_->ListLabelRuleSetVersions(principal.project_id, *request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::UpdateLabelRuleSet(
    grpc::CallbackServerContext* context, const v1::UpdateLabelRuleSetRequest* request,
    v1::UpdateLabelRuleSetResponse* response) {
  return Run(context, Requirement::Of(Scope::kAdmin), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::LabelRuleSet> rules =
        logic_->UpdateLabelRuleSet(principal.project_id, *request);
    if (!rules.ok()) return rules.status();
    *response->mutable_rule_set() = std::move(*rules);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::Relabel(grpc::CallbackServerContext* context,
                                                         const v1::RelabelRequest* request,
                                                         v1::RelabelResponse* response) {
  return Run(context, Requirement::Of(Scope::kAdmin), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::RelabelJob> job = logic_->Relabel(principal.project_id, *request);
    if (!job.ok()) return job.status();
    *response->mutable_job() = std::move(*job);
    on_ingested_();  // wakes the worker that runs jobs
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::GetRelabelJob(
    grpc::CallbackServerContext* context, const v1::GetRelabelJobRequest* request,
    v1::GetRelabelJobResponse* response) {
  return Run(context, Requirement::Of(Scope::kRead), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::RelabelJob> job =
        logic_->GetRelabelJob(principal.project_id, request->job_id());
    if (!job.ok()) return job.status();
    *response->mutable_job() = std::move(*job);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::GetSurvivorshipAudit(
    grpc::CallbackServerContext* context, const v1::GetSurvivorshipAuditRequest* request,
    v1::GetSurvivorshipAuditResponse* response) {
  return Run(context, Requirement::Of(Scope::kRead), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::SurvivorshipAudit> audit =
        logic_->GetSurvivorshipAudit(principal.project_id, *request);
    if (!audit.ok()) return audit.status();
    *response->mutable_audit() = std::move(*audit);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::UpdateRedactionConfig(
    grpc::CallbackServerContext* context, const v1::UpdateRedactionConfigRequest* request,
    v1::UpdateRedactionConfigResponse* response) {
  return Run(context, Requirement::Of(Scope::kAdmin), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::RedactionConfig> config =
        logic_->UpdateRedactionConfig(principal.project_id, *request);
    if (!config.ok()) return config.status();
    *response->mutable_config() = std::move(*config);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CaptureServiceHandler::ReadFlaggedFeed(
    grpc::CallbackServerContext* context, const v1::ReadFlaggedFeedRequest* request,
    v1::ReadFlaggedFeedResponse* response) {
  return Run(context, Requirement::Of(Scope::kRead), [=, this](const auth::Principal& principal) {
    absl::StatusOr<v1::ReadFlaggedFeedResponse> page =
        logic_->ReadFlaggedFeed(principal.project_id, *request);
    if (!page.ok()) return page.status();
    *response = std::move(*page);
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// Feed watch: one chain of steps (read on the executor, write entries one at a time, wait on
// the scheduler when caught up). Exactly one step is outstanding at any time, so the chain
// always ends in exactly one Finish, after which gRPC calls OnDone.

class FeedWatchReactor : public grpc::ServerWriteReactor<v1::WatchFlaggedFeedResponse> {
 public:
  FeedWatchReactor(CaptureServiceHandler* handler, grpc::CallbackServerContext* context,
                   const v1::WatchFlaggedFeedRequest* request)
      : handler_(handler), context_(context), started_(absl::Now()) {
    after_ = request->after_sequence();
    heartbeat_interval_ = absl::Seconds(10);
    if (request->has_heartbeat_interval()) {
      heartbeat_interval_ = ToDuration(request->heartbeat_interval());
    }
    if (after_ < 0) {
      Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "after_sequence: must not be negative"));
      return;
    }
    if (heartbeat_interval_ < absl::Seconds(1) || heartbeat_interval_ > absl::Seconds(60)) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "heartbeat_interval: 1 s..60 s"));
      return;
    }
    Submit([this] { Begin(); });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      End(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
      return;
    }
    WriteNext();
  }

  void OnCancel() override { cancelled_ = true; }

  void OnDone() override {
    if (registered_) handler_->ReleaseWatch(project_id_);
    delete this;
  }

 private:
  void Submit(std::function<void()> step) {
    if (!handler_->executor_.TrySubmit(std::move(step))) {
      End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server busy; reconnect"));
    }
  }

  void End(const grpc::Status& status) { Finish(status); }

  void Begin() {
    absl::StatusOr<auth::Principal> principal =
        handler_->Authenticate(context_, Requirement::Of(Scope::kRead));
    if (!principal.ok()) {
      End(ToGrpcStatus(principal.status()));
      return;
    }
    project_id_ = principal->project_id;
    if (!handler_->AcquireWatch(project_id_)) {
      End(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                       "too many concurrent watches for this project"));
      return;
    }
    registered_ = true;
    Poll();
  }

  // Executor: read the next page and start writing it (heartbeat first when due).
  void Poll() {
    if (cancelled_) {
      End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
      return;
    }
    if (absl::Now() - started_ > handler_->options_.watch_max_duration) {
      End(grpc::Status::OK);  // documented: reconnect with the last sequence processed
      return;
    }
    v1::ReadFlaggedFeedRequest read;
    read.set_after_sequence(after_);
    read.set_max_items(100);
    absl::StatusOr<v1::ReadFlaggedFeedResponse> page =
        handler_->logic_->ReadFlaggedFeed(project_id_, read);
    if (!page.ok()) {
      End(handler_->Finish(page.status(), "WatchFlaggedFeed"));
      return;
    }
    const absl::Time now = absl::Now();
    if (now >= next_heartbeat_) {
      v1::WatchFlaggedFeedResponse heartbeat;
      heartbeat.mutable_heartbeat()->set_high_water_mark(page->high_water_mark());
      heartbeat.mutable_heartbeat()->set_oldest_sequence(page->oldest_sequence());
      *heartbeat.mutable_heartbeat()->mutable_server_time() = ToProto(now);
      pending_.push_back(std::move(heartbeat));
      next_heartbeat_ = now + heartbeat_interval_;
    }
    for (v1::FlaggedFeedEntry& entry : *page->mutable_entries()) {
      v1::WatchFlaggedFeedResponse message;
      *message.mutable_entry() = std::move(entry);
      pending_.push_back(std::move(message));
    }
    after_ = page->next_after_sequence();
    caught_up_ = page->entries_size() == 0;
    WriteNext();
  }

  void WriteNext() {
    if (cancelled_) {
      End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
      return;
    }
    if (!pending_.empty()) {
      current_ = std::move(pending_.front());
      pending_.pop_front();
      StartWrite(&current_);
      return;
    }
    if (caught_up_) {
      handler_->scheduler_.RunAfter(handler_->options_.watch_poll_interval,
                                    [this] { Submit([this] { Poll(); }); });
    } else {
      Submit([this] { Poll(); });
    }
  }

  CaptureServiceHandler* const handler_;
  grpc::CallbackServerContext* const context_;
  const absl::Time started_;
  std::atomic<bool> cancelled_{false};
  bool registered_ = false;
  bool caught_up_ = false;
  std::string project_id_;
  int64_t after_ = 0;
  absl::Duration heartbeat_interval_;
  absl::Time next_heartbeat_ = absl::InfinitePast();
  std::deque<v1::WatchFlaggedFeedResponse> pending_;
  v1::WatchFlaggedFeedResponse current_;
};

grpc::ServerWriteReactor<v1::WatchFlaggedFeedResponse>* CaptureServiceHandler::WatchFlaggedFeed(
    grpc::CallbackServerContext* context, const v1::WatchFlaggedFeedRequest* request) {
  return new FeedWatchReactor(this, context, request);
}

bool CaptureServiceHandler::AcquireWatch(const std::string& project_id) {
  std::lock_guard<std::mutex> lock(watches_mu_);
  int& count = watches_[project_id];
  if (count >= options_.max_watches_per_project) return false;
  ++count;
  return true;
}

void CaptureServiceHandler::ReleaseWatch(const std::string& project_id) {
  std::lock_guard<std::mutex> lock(watches_mu_);
  if (--watches_[project_id] <= 0) watches_.erase(project_id);
}

}  // namespace flywheel::capture
