#pragma once

#include <grpcpp/impl/service_type.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/auth/authenticator.h"
#include "common/config/flags.h"
#include "common/db/pool.h"
#include "common/log/logger.h"
#include "common/metrics/metrics.h"
#include "common/server/server_runner.h"

namespace flywheel {

// Flags every service binary takes (each also settable as FLYWHEEL_<NAME>).
struct CommonServiceOptions {
  std::string database_url;
  std::string listen = "127.0.0.1:0";
  std::string metrics_listen = "127.0.0.1:0";
  int db_pool_size = 8;
  absl::Duration db_acquire_timeout = absl::Seconds(5);
  bool migrate = true;
  absl::Duration shutdown_grace = absl::Seconds(10);
  std::string port_file;
  std::string log_level = "info";
  absl::Duration auth_cache_ttl = absl::Seconds(30);
  std::string service_key_file;
};

// What a service's wiring hands to the runner.
struct ServiceParts {
  // Run after the server has drained, in reverse order: stop background workers here. Declared
  // first so that what the hooks own outlives the services.
  std::vector<std::function<void()>> on_shutdown;
  // (service, fully qualified proto service name), served by one gRPC server.
  std::vector<std::pair<std::unique_ptr<grpc::Service>, std::string>> services;
};

// Dependencies shared by every service, built by RunServiceMain and lent to the wiring.
struct ServiceEnv {
  const CommonServiceOptions& options;
  Logger& logger;
  db::ConnectionPool& pool;
  metrics::Registry& metrics;
  auth::Authenticator& authenticator;
  // Projects and keys (read-only for services: background workers list projects here).
  auth::TenancyStore& tenancy;
  // This deployment's service key (fw_svc_...), read from --service_key_file; empty when none is
  // configured. Background workers act for a project by sending it with that project's id (see
  // common/auth/client_credentials.h).
  const std::string& service_key;
};

struct ServiceSpec {
  std::string name;         // "capture": log name and binary suffix
  std::string schema;       // the schema this service owns and migrates (besides tenancy)
  std::string description;  // --help text
  // Largest request message accepted (larger ones fail with RESOURCE_EXHAUSTED).
  int max_message_bytes = 4 << 20;
  // Optional: define service-specific flags and validate them after parsing.
  std::function<void(FlagSet&)> define_flags;
  std::function<absl::Status()> validate;
  // Builds the service's handlers and workers.
  std::function<absl::StatusOr<ServiceParts>(ServiceEnv&)> wire;
};

// The whole life of a service binary: parse and validate flags, migrate (or, with --nomigrate,
// refuse to start on a schema that is behind), open the pool, serve until SIGTERM/SIGINT, drain.
// Returns the process exit code (0 clean, 1 runtime failure, 2 bad configuration).
int RunServiceMain(int argc, char** argv, const ServiceSpec& spec);

// Validation of the common options: INVALID_ARGUMENT naming the flag.
absl::Status ValidateCommonOptions(const CommonServiceOptions& options);

}  // namespace flywheel
