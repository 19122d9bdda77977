#include "services/clustering/capture_feed_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/auth/client_credentials.h"

namespace flywheel::clustering {

GrpcFeedSource::GrpcFeedSource(const std::string& capture_address, std::string service_key)
    : GrpcFeedSource(grpc::CreateChannel(capture_address, grpc::InsecureChannelCredentials()),
                     std::move(service_key)) {}

GrpcFeedSource::GrpcFeedSource(std::shared_ptr<grpc::Channel> channel, std::string service_key)
    : stub_(capture::v1::CaptureService::NewStub(std::move(channel))),
      service_key_(std::move(service_key)) {}

absl::StatusOr<FeedPage> GrpcFeedSource::Read(const std::string& project, int64_t after_sequence,
                                              int max_items) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auth::AttachServiceKey(context, service_key_, project);
  capture::v1::ReadFlaggedFeedRequest request;
  request.set_after_sequence(after_sequence);
  request.set_max_items(std::min(std::max(max_items, 1), 1000));
  capture::v1::ReadFlaggedFeedResponse response;
  const grpc::Status status = stub_->ReadFlaggedFeed(&context, request, &response);
  if (!status.ok()) {
    // Capture's detail stays out of our statuses; the code tells the follower what to do.
    return absl::UnavailableError(absl::StrCat("capture ReadFlaggedFeed failed (code ",
                                               static_cast<int>(status.error_code()), ")"));
  }
  FeedPage page;
  page.entries.assign(response.entries().begin(), response.entries().end());
  page.next_after_sequence = response.next_after_sequence();
  page.high_water_mark = response.high_water_mark();
  return page;
}

}  // namespace flywheel::clustering
