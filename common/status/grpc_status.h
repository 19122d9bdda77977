#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace flywheel {

// Converts a domain status into the status sent to a client. Codes map one to one. Messages of
// INTERNAL, UNKNOWN and DATA_LOSS are replaced by a generic text so that no SQL, exception or
// stack detail ever reaches a client; callers log the original before converting.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Converts a status received from another service (or a gRPC client call) into a domain status.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace flywheel
