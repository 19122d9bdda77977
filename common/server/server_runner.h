#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/log/logger.h"
#include "common/metrics/http_exporter.h"
#include "common/metrics/metrics.h"

namespace flywheel {

struct ServerOptions {
  // gRPC listen address; port 0 picks a free port (written to port_file).
  std::string listen_address = "127.0.0.1:0";
  // Prometheus /metrics listen address; empty disables it; port 0 picks a free port.
  std::string metrics_address;
  // In-flight RPCs get this long to finish after SIGTERM before they are cancelled.
  absl::Duration shutdown_grace = absl::Seconds(10);
  int max_receive_message_bytes = 8 << 20;
  // When set, "grpc_port=N\nmetrics_port=M\n" is written here (atomically) once serving.
  std::string port_file;
};

// Runs a gRPC server with the standard health service (grpc.health.v1; "" and each registered
// service name report SERVING while up), server reflection, per-method RPC metrics and a
// Prometheus endpoint. Shutdown flips health to NOT_SERVING, stops accepting calls and drains
// in-flight ones until the grace deadline.
class ServerRunner {
 public:
  ServerRunner(ServerOptions options, Logger* logger, metrics::Registry* registry);
  ~ServerRunner();

  // Register before Start. Not owned.
  void AddService(grpc::Service* service, std::string full_name);

  absl::Status Start();
  void Shutdown();
  int port() const { return port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }

 private:
  const ServerOptions options_;
  Logger* const logger_;
  metrics::Registry* const registry_;
  std::vector<std::pair<grpc::Service*, std::string>> services_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::HttpExporter> metrics_;
  int port_ = 0;
  bool shut_down_ = false;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts afterwards; call
// first thing in main so that WaitForTerminationSignal() is the only place they arrive.
void BlockTerminationSignals();
// Waits for SIGTERM or SIGINT and returns its number.
int WaitForTerminationSignal();

}  // namespace flywheel
