#pragma once

#include <memory>
#include <string>

#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "services/evalset/evalset_logic.h"

namespace flywheel::evalset {

// Reads preference pairs from capture's gRPC API (flywheel.capture.v1.CaptureService/
// ListPreferencePairs), forwarding the caller's API key so capture applies its own scoping.
class GrpcPreferencePairSource final : public PreferencePairSource {
 public:
  explicit GrpcPreferencePairSource(const std::string& capture_address);
  // For tests: any channel.
  explicit GrpcPreferencePairSource(std::shared_ptr<grpc::Channel> channel);

  absl::StatusOr<std::vector<flywheel::capture::v1::PreferencePair>> ListAllPairs(
      const std::string& authorization) override;

 private:
  std::unique_ptr<flywheel::capture::v1::CaptureService::Stub> stub_;
};

}  // namespace flywheel::evalset
