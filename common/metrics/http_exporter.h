#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "common/log/logger.h"
#include "common/metrics/metrics.h"

namespace flywheel::metrics {

// Serves GET /metrics (Prometheus text format) and GET /healthz over plain HTTP/1.0 on its own
// thread. Small by design: one request per connection, 2 s I/O timeouts, nothing else.
class HttpExporter {
 public:
  HttpExporter(Registry* registry, Logger* logger);
  ~HttpExporter();

  // address: "host:port"; port 0 picks a free port (see port()).
  absl::Status Start(const std::string& address);
  void Stop();
  int port() const { return port_; }

 private:
  void Serve();
  void Handle(int client);

  Registry* const registry_;
  Logger* const logger_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;
};

}  // namespace flywheel::metrics
