#pragma once

#include "common/auth/authenticator.h"
#include "common/log/logger.h"
#include "flywheel/annotation/v1/annotation.grpc.pb.h"

namespace flywheel::annotation {

// gRPC handler of flywheel.annotation.v1.AnnotationService: translates, authorizes and maps status
// codes. Until an RPC is implemented it answers UNIMPLEMENTED (the callback base class's default).
class AnnotationServiceHandler final
    : public ::flywheel::annotation::v1::AnnotationService::CallbackService {
 public:
  AnnotationServiceHandler(auth::Authenticator* authenticator, Logger* logger)
      : authenticator_(authenticator), logger_(logger) {}

 private:
  [[maybe_unused]] auth::Authenticator* const authenticator_;
  [[maybe_unused]] Logger* const logger_;
};

}  // namespace flywheel::annotation
