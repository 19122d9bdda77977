#include "common/auth/grpc_auth.h"

namespace flywheel::auth {

absl::StatusOr<Principal> AuthenticateCall(const grpc::ServerContextBase& context,
                                           Authenticator& authenticator,
                                           const Requirement& requirement) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return authenticator.Authenticate("", requirement);
  return authenticator.Authenticate(absl::string_view(it->second.data(), it->second.size()),
                                    requirement);
}

}  // namespace flywheel::auth
