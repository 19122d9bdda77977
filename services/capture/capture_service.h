#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "common/auth/authenticator.h"
#include "common/log/logger.h"
#include "common/server/executor.h"
#include "common/server/scheduler.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "services/capture/capture_logic.h"

namespace flywheel::capture {

struct CaptureHandlerOptions {
  // Threads and queue bound for database work (see BoundedExecutor).
  int worker_threads = 8;
  int max_queued = 512;
  // StreamIngest: commit window and stream limits (documented in capture.proto).
  int stream_window_items = 1000;
  absl::Duration stream_window_age = absl::Seconds(1);
  int stream_max_items = 10000;
  absl::Duration stream_max_duration = absl::Minutes(10);
  // WatchFlaggedFeed: poll period while caught up, watch lifetime, watches per project.
  absl::Duration watch_poll_interval = absl::Milliseconds(250);
  absl::Duration watch_max_duration = absl::Hours(1);
  int max_watches_per_project = 16;
};

// Ingestion methods take raw bytes: gRPC 1.51's callback API answers UNIMPLEMENTED when it cannot
// parse a request (e.g. malformed UTF-8 in a proto3 string), so they parse it themselves and
// answer INVALID_ARGUMENT, as the API documents.
using CaptureServiceBase = v1::CaptureService::WithRawCallbackMethod_CreateTrace<
    v1::CaptureService::WithRawCallbackMethod_CreateSignal<
        v1::CaptureService::WithRawCallbackMethod_BatchCreateTraces<
            v1::CaptureService::WithRawCallbackMethod_BatchCreateSignals<
                v1::CaptureService::WithRawCallbackMethod_Ingest<
                    v1::CaptureService::WithRawCallbackMethod_StreamIngest<
                        v1::CaptureService::CallbackService>>>>>>;

// gRPC handler of flywheel.capture.v1.CaptureService: authenticates, translates to the logic
// and maps statuses. Database work runs on a bounded executor, never on a reactor thread.
class CaptureServiceHandler final : public CaptureServiceBase {
 public:
  // `on_ingested` runs after a write that stored something (wakes the local labeler).
  CaptureServiceHandler(auth::Authenticator* authenticator, CaptureLogic* logic, Logger* logger,
                        std::function<void()> on_ingested, CaptureHandlerOptions options = {});
  ~CaptureServiceHandler() override;

  grpc::ServerUnaryReactor* CreateTrace(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* CreateSignal(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* BatchCreateTraces(grpc::CallbackServerContext* context,
                                              const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* BatchCreateSignals(grpc::CallbackServerContext* context,
                                               const grpc::ByteBuffer* request,
                                               grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Ingest(grpc::CallbackServerContext* context,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* StreamIngest(grpc::CallbackServerContext* context,
                                                          grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetTrace(grpc::CallbackServerContext* context,
                                     const v1::GetTraceRequest* request,
                                     v1::GetTraceResponse* response) override;
  grpc::ServerUnaryReactor* ListTraces(grpc::CallbackServerContext* context,
                                       const v1::ListTracesRequest* request,
                                       v1::ListTracesResponse* response) override;
  grpc::ServerUnaryReactor* ListSignals(grpc::CallbackServerContext* context,
                                        const v1::ListSignalsRequest* request,
                                        v1::ListSignalsResponse* response) override;
  grpc::ServerUnaryReactor* GetLabelRuleSet(grpc::CallbackServerContext* context,
                                            const v1::GetLabelRuleSetRequest* request,
                                            v1::GetLabelRuleSetResponse* response) override;
  grpc::ServerUnaryReactor* ReadFlaggedFeed(grpc::CallbackServerContext* context,
                                            const v1::ReadFlaggedFeedRequest* request,
                                            v1::ReadFlaggedFeedResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchFlaggedFeedResponse>* WatchFlaggedFeed(
      grpc::CallbackServerContext* context, const v1::WatchFlaggedFeedRequest* request) override;
  grpc::ServerUnaryReactor* ListPreferencePairs(grpc::CallbackServerContext* context,
                                                const v1::ListPreferencePairsRequest* request,
                                                v1::ListPreferencePairsResponse* response) override;
  grpc::ServerUnaryReactor* ListLabelRuleSetVersions(
      grpc::CallbackServerContext* context, const v1::ListLabelRuleSetVersionsRequest* request,
      v1::ListLabelRuleSetVersionsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateLabelRuleSet(grpc::CallbackServerContext* context,
                                               const v1::UpdateLabelRuleSetRequest* request,
                                               v1::UpdateLabelRuleSetResponse* response) override;
  grpc::ServerUnaryReactor* Relabel(grpc::CallbackServerContext* context,
                                    const v1::RelabelRequest* request,
                                    v1::RelabelResponse* response) override;
  grpc::ServerUnaryReactor* GetRelabelJob(grpc::CallbackServerContext* context,
                                          const v1::GetRelabelJobRequest* request,
                                          v1::GetRelabelJobResponse* response) override;
  grpc::ServerUnaryReactor* GetSurvivorshipAudit(
      grpc::CallbackServerContext* context, const v1::GetSurvivorshipAuditRequest* request,
      v1::GetSurvivorshipAuditResponse* response) override;
  grpc::ServerUnaryReactor* UpdateRedactionConfig(
      grpc::CallbackServerContext* context, const v1::UpdateRedactionConfigRequest* request,
      v1::UpdateRedactionConfigResponse* response) override;
  grpc::ServerUnaryReactor* GetRedactionConfig(grpc::CallbackServerContext* context,
                                               const v1::GetRedactionConfigRequest* request,
                                               v1::GetRedactionConfigResponse* response) override;

 private:
  friend class StreamIngestReactor;
  friend class FeedWatchReactor;

  template <typename Request, typename Response>
  using TypedBody = absl::Status (CaptureServiceHandler::*)(const auth::Principal&, const Request&,
                                                            Response*);
  // Parses a raw request (INVALID_ARGUMENT if it is not a valid message), runs `body` like Run
  // and serializes the response.
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* RunRaw(grpc::CallbackServerContext* context,
                                   const grpc::ByteBuffer* request, grpc::ByteBuffer* response,
                                   const auth::Requirement& requirement,
                                   TypedBody<Request, Response> body);
  absl::Status DoCreateTrace(const auth::Principal& principal,
                             const v1::CreateTraceRequest& request,
                             v1::CreateTraceResponse* response);
  absl::Status DoCreateSignal(const auth::Principal& principal,
                              const v1::CreateSignalRequest& request,
                              v1::CreateSignalResponse* response);
  absl::Status DoBatchCreateTraces(const auth::Principal& principal,
                                   const v1::BatchCreateTracesRequest& request,
                                   v1::BatchCreateTracesResponse* response);
  absl::Status DoBatchCreateSignals(const auth::Principal& principal,
                                    const v1::BatchCreateSignalsRequest& request,
                                    v1::BatchCreateSignalsResponse* response);
  absl::Status DoIngest(const auth::Principal& principal, const v1::IngestRequest& request,
                        v1::IngestResponse* response);

  // Runs `body` on the executor after authenticating with `requirement`; maps its status.
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context,
                                const auth::Requirement& requirement,
                                std::function<absl::Status(const auth::Principal&)> body);
  grpc::Status Finish(const absl::Status& status, const char* method);
  absl::StatusOr<auth::Principal> Authenticate(grpc::CallbackServerContext* context,
                                               const auth::Requirement& requirement);
  bool AcquireWatch(const std::string& project_id);
  void ReleaseWatch(const std::string& project_id);

  auth::Authenticator* const authenticator_;
  CaptureLogic* const logic_;
  Logger* const logger_;
  const std::function<void()> on_ingested_;
  const CaptureHandlerOptions options_;
  std::mutex watches_mu_;
  std::map<std::string, int> watches_;
  // Declared last: destroyed first, so queued work finishes while the rest is alive.
  Scheduler scheduler_;
  BoundedExecutor executor_;
};

}  // namespace flywheel::capture
