#include "common/auth/grpc_auth.h"

#include "common/auth/client_credentials.h"

namespace flywheel::auth {
namespace {

absl::string_view Metadata(const grpc::ServerContextBase& context, const char* key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(key);
  if (it == metadata.end()) return {};
  return absl::string_view(it->second.data(), it->second.size());
}

}  // namespace

absl::StatusOr<Principal> AuthenticateCall(const grpc::ServerContextBase& context,
                                           Authenticator& authenticator,
                                           const Requirement& requirement) {
  return authenticator.Authenticate(Metadata(context, "authorization"), requirement,
                                    Metadata(context, kProjectMetadataKey));
}

}  // namespace flywheel::auth
