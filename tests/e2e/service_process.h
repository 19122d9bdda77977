#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace flywheel::testing {

// One real service binary started by an e2e test: binds port 0 and reports its ports through
// --port_file; stderr goes to a log file kept for failure diagnosis.
class ServiceProcess {
 public:
  // `binary` is a file name in $FLYWHEEL_BIN_DIR (e.g. "flywheel-capture").
  ServiceProcess(std::string binary, std::vector<std::string> args);
  ~ServiceProcess();  // SIGKILLs a process still running

  absl::Status Start();
  // Waits until the port file appears (the service is serving). FAILED_PRECONDITION if the
  // process exits first, DEADLINE_EXCEEDED on timeout.
  absl::Status WaitServing(absl::Duration timeout);
  // Sends `signal` and waits for exit; returns the exit code (128+n when killed by signal n).
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout);
  // Waits for the process to exit on its own; returns its exit code.
  absl::StatusOr<int> WaitExit(absl::Duration timeout);

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  std::string Log() const;

 private:
  const std::string binary_;
  const std::vector<std::string> args_;
  std::string dir_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
};

}  // namespace flywheel::testing
