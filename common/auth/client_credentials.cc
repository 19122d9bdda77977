#include "common/auth/client_credentials.h"

namespace flywheel::auth {

void AttachServiceKey(grpc::ClientContext& context, const std::string& service_key,
                      const std::string& project_id) {
  context.AddMetadata("authorization", "Bearer " + service_key);
  context.AddMetadata(kProjectMetadataKey, project_id);
}

void AttachAuthorization(grpc::ClientContext& context, const std::string& authorization) {
  context.AddMetadata("authorization", authorization);
}

}  // namespace flywheel::auth
