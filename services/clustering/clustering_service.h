#pragma once

#include "common/auth/authenticator.h"
#include "common/log/logger.h"
#include "flywheel/clustering/v1/clustering.grpc.pb.h"

namespace flywheel::clustering {

// gRPC handler of flywheel.clustering.v1.ClusteringService: translates, authorizes and maps status
// codes. Until an RPC is implemented it answers UNIMPLEMENTED (the callback base class's default).
class ClusteringServiceHandler final
    : public ::flywheel::clustering::v1::ClusteringService::CallbackService {
 public:
  ClusteringServiceHandler(auth::Authenticator* authenticator, Logger* logger)
      : authenticator_(authenticator), logger_(logger) {}

 private:
  [[maybe_unused]] auth::Authenticator* const authenticator_;
  [[maybe_unused]] Logger* const logger_;
};

}  // namespace flywheel::clustering
