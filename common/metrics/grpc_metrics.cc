#include "common/metrics/grpc_metrics.h"

#include <chrono>

#include "absl/strings/str_cat.h"

namespace flywheel::metrics {
namespace {

const char* CodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  const int index = static_cast<int>(code);
  return index >= 0 && index <= 16 ? kNames[index] : "UNKNOWN";
}

class RpcMetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(Registry* registry, const char* method)
      : registry_(registry),
        method_(method == nullptr ? "unknown" : method),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      registry_
          ->GetCounter("flywheel_rpc_total", "RPCs handled, by method and status code.",
                       {{"method", method_}, {"code", CodeName(status.error_code())}})
          ->Increment();
      registry_
          ->GetHistogram("flywheel_rpc_duration_seconds",
                         "RPC latency from receipt to status, by method.", {{"method", method_}})
          ->Observe(seconds);
    }
    methods->Proceed();
  }

 private:
  Registry* const registry_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace

grpc::experimental::Interceptor* RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new RpcMetricsInterceptor(registry_, info->method());
}

}  // namespace flywheel::metrics
