#pragma once

// gRPC implementations of upstream.h: capture, clustering and eval-set clients that act for a
// project with the deployment's service key (auth::AttachServiceKey) or a forwarded caller key,
// with a deadline per call, mapping gRPC status to absl::Status (FromGrpcStatus, message
// prefixed with the service name).

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "flywheel/clustering/v1/clustering.grpc.pb.h"
#include "flywheel/evalset/v1/evalset.grpc.pb.h"
#include "services/annotation/upstream.h"

namespace flywheel::annotation {

struct UpstreamOptions {
  // The deployment's service key (fw_svc_...). Empty: calls without a forwarded authorization
  // fail with UNAVAILABLE.
  std::string service_key;
  // Deadline of each RPC.
  absl::Duration deadline = absl::Seconds(10);
  // GetTraces: GetTrace calls in flight at once.
  int max_concurrent_calls = 16;
  // SampleTraces: when the window holds more traces than one ListTraces page, how many probes
  // per requested trace at most (see GrpcCaptureUpstream::SampleTraces).
  int sample_probe_factor = 3;
};

// A channel to `address` ("host:port"), insecure (the services talk on a private network, as
// everywhere in Flywheel).
std::shared_ptr<grpc::Channel> MakeUpstreamChannel(const std::string& address);

class GrpcCaptureUpstream final : public CaptureUpstream {
 public:
  GrpcCaptureUpstream(std::shared_ptr<grpc::Channel> channel, UpstreamOptions options);

  absl::StatusOr<FlaggedFeedPage> ReadFlaggedFeed(const CallScope& scope, int64_t after_sequence,
                                                  int limit) override;
  // One GetTrace per id, up to max_concurrent_calls at a time. Once a call fails in a way every
  // further call would repeat (UNAVAILABLE, DEADLINE_EXCEEDED, UNAUTHENTICATED,
  // PERMISSION_DENIED, RESOURCE_EXHAUSTED), the ids not yet asked get that status without a call.
  absl::StatusOr<std::vector<FetchedTrace>> GetTraces(
      const CallScope& scope, const std::vector<std::string>& trace_ids) override;
  // Capture has no sampling RPC. When the window's traces fit one ListTraces page (100), the n
  // traces are drawn uniformly from them. Otherwise each draw picks a uniformly random instant t
  // in the window and takes the newest trace starting at or before t (ListTraces page_size 1):
  // uniform over time, so a trace is weighted by the gap before it (busy periods are
  // under-represented); duplicates are redrawn up to sample_probe_factor * n probes. A window
  // without a start uses the last 24 h; without an end, now.
  absl::StatusOr<std::vector<SampledTrace>> SampleTraces(const CallScope& scope,
                                                         const TimeWindow& window, int n,
                                                         uint64_t seed) override;

 private:
  std::unique_ptr<::flywheel::capture::v1::CaptureService::Stub> stub_;
  UpstreamOptions options_;
};

class GrpcClusteringUpstream final : public ClusteringUpstream {
 public:
  GrpcClusteringUpstream(std::shared_ptr<grpc::Channel> channel, UpstreamOptions options);

  absl::StatusOr<::flywheel::clustering::v1::GetTraceAssignmentResponse> GetTraceAssignment(
      const CallScope& scope, const std::string& trace_id) override;
  absl::StatusOr<ClusterMembersPage> ListClusterMembers(const CallScope& scope,
                                                        const std::string& cluster_id,
                                                        const std::string& page_token,
                                                        int page_size) override;
  absl::StatusOr<std::vector<::flywheel::clustering::v1::NearestClustersResult>> NearestClusters(
      const CallScope& scope, const std::vector<std::string>& texts, int top_k) override;
  absl::StatusOr<::flywheel::clustering::v1::Cluster> GetCluster(
      const CallScope& scope, const std::string& cluster_id) override;

 private:
  std::unique_ptr<::flywheel::clustering::v1::ClusteringService::Stub> stub_;
  UpstreamOptions options_;
};

class GrpcEvalSetUpstream final : public EvalSetUpstream {
 public:
  GrpcEvalSetUpstream(std::shared_ptr<grpc::Channel> channel, UpstreamOptions options);

  absl::StatusOr<::flywheel::evalset::v1::AddCasesResponse> AddCases(
      const CallScope& scope, const std::string& eval_set_id,
      const std::vector<::flywheel::evalset::v1::Case>& cases,
      const std::string& change_note) override;
  absl::StatusOr<::flywheel::evalset::v1::UpdateCaseResponse> UpdateCase(
      const CallScope& scope, const std::string& eval_set_id,
      const ::flywheel::evalset::v1::Case& eval_case, const std::vector<std::string>& paths,
      const std::string& change_note) override;
  absl::StatusOr<std::vector<::flywheel::evalset::v1::NearestCases>> FindNearestCases(
      const CallScope& scope, const std::vector<std::string>& texts,
      const std::vector<std::string>& eval_set_ids, int k) override;

 private:
  std::unique_ptr<::flywheel::evalset::v1::EvalSetService::Stub> stub_;
  UpstreamOptions options_;
};

// The reviewer's view of a capture trace (exposed for tests): input and output cut to 256 KiB
// each at a code point boundary (`truncated`), signal counts by family (explicit, implicit,
// outcome; custom counts as outcome... see the .cc), the 50 most recent signals as SignalBriefs,
// capture's label, snapshot_time = now. Also fills `signal_kinds`.
FetchedTrace FetchedTraceFromCapture(const ::flywheel::capture::v1::GetTraceResponse& response,
                                     absl::Time now);

// Capture's lower_snake_case name of a signal kind ("thumbs_down", "regenerate", "edit",
// "rephrase", "abandon", "derived_rephrase", ...), as SourceRule.signal_kinds names them.
std::string SignalKindName(::flywheel::capture::v1::SignalKind kind);

}  // namespace flywheel::annotation
