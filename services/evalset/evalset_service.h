#pragma once

#include "common/auth/authenticator.h"
#include "common/log/logger.h"
#include "flywheel/evalset/v1/evalset.grpc.pb.h"

namespace flywheel::evalset {

// gRPC handler of flywheel.evalset.v1.EvalSetService: translates, authorizes and maps status codes.
// Until an RPC is implemented it answers UNIMPLEMENTED (the callback base class's default).
class EvalSetServiceHandler final : public ::flywheel::evalset::v1::EvalSetService::CallbackService {
 public:
  EvalSetServiceHandler(auth::Authenticator* authenticator, Logger* logger)
      : authenticator_(authenticator), logger_(logger) {}

 private:
  [[maybe_unused]] auth::Authenticator* const authenticator_;
  [[maybe_unused]] Logger* const logger_;
};

}  // namespace flywheel::evalset
