#pragma once

#include <grpcpp/support/server_interceptor.h>

#include "common/metrics/metrics.h"

namespace flywheel::metrics {

// Counts every RPC by method and status code (flywheel_rpc_total) and records its latency from
// receipt to status (flywheel_rpc_duration_seconds), for all services of a server at once.
class RpcMetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(Registry* registry) : registry_(registry) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Registry* const registry_;
};

}  // namespace flywheel::metrics
