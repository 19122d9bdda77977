#include "services/evalset/capture_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace flywheel::evalset {
namespace {

// A sanity bound: pairs are held in memory for the duration of one export.
constexpr size_t kMaxPairs = 1000000;

absl::Status FromCapture(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
      return absl::UnavailableError(
          "capture service unreachable; resume the export later with after_case_id");
    case grpc::StatusCode::UNIMPLEMENTED:
      return absl::FailedPreconditionError(
          "the capture service does not serve ListPreferencePairs");
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::UnauthenticatedError("capture refused the API key");
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError("capture: the key lacks the read or eval scope");
    default:
      // Capture's own detail stays out of our responses.
      return absl::UnavailableError(absl::StrCat("capture service failed (code ",
                                                 static_cast<int>(status.error_code()), ")"));
  }
}

}  // namespace

GrpcPreferencePairSource::GrpcPreferencePairSource(const std::string& capture_address)
    : GrpcPreferencePairSource(
          grpc::CreateChannel(capture_address, grpc::InsecureChannelCredentials())) {}

GrpcPreferencePairSource::GrpcPreferencePairSource(std::shared_ptr<grpc::Channel> channel)
    : stub_(flywheel::capture::v1::CaptureService::NewStub(std::move(channel))) {}

absl::StatusOr<std::vector<flywheel::capture::v1::PreferencePair>>
GrpcPreferencePairSource::ListAllPairs(const std::string& authorization) {
  std::vector<flywheel::capture::v1::PreferencePair> pairs;
  std::string token;
  do {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    flywheel::capture::v1::ListPreferencePairsRequest request;
    request.set_page_size(500);
    request.set_page_token(token);
    flywheel::capture::v1::ListPreferencePairsResponse response;
    grpc::Status status = stub_->ListPreferencePairs(&context, request, &response);
    if (!status.ok()) return FromCapture(status);
    for (auto& pair : *response.mutable_pairs()) pairs.push_back(std::move(pair));
    if (pairs.size() > kMaxPairs) {
      return absl::ResourceExhaustedError("capture holds too many preference pairs to export");
    }
    token = response.next_page_token();
  } while (!token.empty());
  return pairs;
}

}  // namespace flywheel::evalset
