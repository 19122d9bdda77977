#pragma once

#include "common/auth/authenticator.h"
#include "common/log/logger.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"

namespace flywheel::capture {

// gRPC handler of flywheel.capture.v1.CaptureService: translates, authorizes and maps status codes.
// Until an RPC is implemented it answers UNIMPLEMENTED (the callback base class's default).
class CaptureServiceHandler final : public ::flywheel::capture::v1::CaptureService::CallbackService {
 public:
  CaptureServiceHandler(auth::Authenticator* authenticator, Logger* logger)
      : authenticator_(authenticator), logger_(logger) {}

 private:
  [[maybe_unused]] auth::Authenticator* const authenticator_;
  [[maybe_unused]] Logger* const logger_;
};

}  // namespace flywheel::capture
