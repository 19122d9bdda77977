#pragma once

#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"
#include "common/auth/authenticator.h"

namespace flywheel::auth {

// Authenticates a gRPC call from its `authorization` metadata (see Authenticator).
absl::StatusOr<Principal> AuthenticateCall(const grpc::ServerContextBase& context,
                                           Authenticator& authenticator,
                                           const Requirement& requirement);

}  // namespace flywheel::auth
