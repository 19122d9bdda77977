#pragma once

#include <grpcpp/client_context.h>

#include <string>

namespace flywheel::auth {

// Metadata naming the project a service key acts for. Ignored for project keys (a project key
// already decides its project).
inline constexpr char kProjectMetadataKey[] = "x-flywheel-project";

// Makes `context` call another Flywheel service as this deployment's service identity acting for
// `project_id`: `authorization: Bearer <service_key>` plus `x-flywheel-project: <project_id>`.
// Service keys (fw_svc_...) belong to no project and carry their own scopes (never admin); they
// exist so background workers (feed followers, queue fillers, outboxes) can read or write any
// project without holding that project's keys.
void AttachServiceKey(grpc::ClientContext& context, const std::string& service_key,
                      const std::string& project_id);

// Forwards a caller's `authorization` metadata value ("Bearer <key>") unchanged.
void AttachAuthorization(grpc::ClientContext& context, const std::string& authorization);

}  // namespace flywheel::auth
