#pragma once

#include <memory>
#include <string>

#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "services/clustering/feed_follower.h"

namespace flywheel::clustering {

// Capture's flagged feed over gRPC (CaptureService/ReadFlaggedFeed), called as this
// deployment's service identity acting for each project (auth::AttachServiceKey).
class GrpcFeedSource final : public FeedSource {
 public:
  GrpcFeedSource(const std::string& capture_address, std::string service_key);
  GrpcFeedSource(std::shared_ptr<grpc::Channel> channel, std::string service_key);

  absl::StatusOr<FeedPage> Read(const std::string& project, int64_t after_sequence,
                                int max_items) override;

 private:
  std::unique_ptr<capture::v1::CaptureService::Stub> stub_;
  const std::string service_key_;
};

}  // namespace flywheel::clustering
