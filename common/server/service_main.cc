#include "common/server/service_main.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/db/migrate.h"
#include "migrations/migrations.h"

namespace flywheel {

absl::Status ValidateCommonOptions(const CommonServiceOptions& options) {
  if (options.database_url.empty()) {
    return absl::InvalidArgumentError(
        "--database_url (or FLYWHEEL_DATABASE_URL) is required, e.g. "
        "postgresql://postgres@127.0.0.1:54320/flywheel");
  }
  if (options.listen.empty() || options.listen.find(':') == std::string::npos) {
    return absl::InvalidArgumentError("--listen: expected host:port");
  }
  if (options.db_pool_size < 1 || options.db_pool_size > 256) {
    return absl::InvalidArgumentError("--db_pool_size: must be in 1..256");
  }
  if (options.db_acquire_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--db_acquire_timeout: must be positive");
  }
  if (options.shutdown_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--shutdown_grace: must not be negative");
  }
  if (options.auth_cache_ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--auth_cache_ttl: must not be negative");
  }
  Logger::Level level;
  if (!Logger::ParseLevel(options.log_level, &level)) {
    return absl::InvalidArgumentError("--log_level: one of debug, info, warning, error");
  }
  return absl::OkStatus();
}

namespace {

absl::Status PrepareSchemas(const CommonServiceOptions& options, const std::string& schema,
                            Logger& logger) {
  for (const std::string& name : {std::string("tenancy"), schema}) {
    absl::StatusOr<db::MigrationSet> set = migrations::ForSchema(name);
    if (!set.ok()) return set.status();
    absl::StatusOr<db::MigrationReport> report =
        options.migrate ? db::ApplyMigrations(options.database_url, *set, &logger)
                        : db::CheckMigrations(options.database_url, *set, &logger);
    if (!report.ok()) return report.status();
    logger.Info("schema ready", {{"schema", name},
                                 {"version", absl::StrCat(report->current_version)},
                                 {"applied_now", absl::StrCat(report->applied_now)}});
    if (report->unknown_applied > 0) {
      logger.Warn("schema is newer than this binary",
                  {{"schema", name}, {"unknown_versions", absl::StrCat(report->unknown_applied)}});
    }
  }
  return absl::OkStatus();
}

// The first line of the file, trimmed; must look like a service key.
absl::StatusOr<std::string> ReadServiceKeyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError("cannot read " + path);
  std::string line;
  std::getline(in, line);
  std::string key(absl::StripAsciiWhitespace(line));
  if (!absl::StartsWith(key, "fw_svc_")) {
    return absl::InvalidArgumentError(path + " does not hold a service key (fw_svc_...)");
  }
  return key;
}

}  // namespace

int RunServiceMain(int argc, char** argv, const ServiceSpec& spec) {
  BlockTerminationSignals();
  CommonServiceOptions options;
  FlagSet flags("flywheel-" + spec.name, spec.description);
  flags.String("database_url", &options.database_url, "PostgreSQL URL or libpq conninfo");
  flags.String("listen", &options.listen, "gRPC listen address host:port (port 0: any free)");
  flags.String("metrics_listen", &options.metrics_listen,
               "Prometheus /metrics address host:port; empty disables");
  flags.Int("db_pool_size", &options.db_pool_size, "maximum database connections");
  flags.Duration("db_acquire_timeout", &options.db_acquire_timeout,
                 "how long a request waits for a free connection before UNAVAILABLE");
  flags.Bool("migrate", &options.migrate,
             "apply pending migrations at start; with --nomigrate, refuse to start when behind");
  flags.Duration("shutdown_grace", &options.shutdown_grace,
                 "how long in-flight RPCs may run after SIGTERM");
  flags.String("port_file", &options.port_file, "write the bound ports here once serving");
  flags.String("log_level", &options.log_level, "debug, info, warning or error");
  flags.Duration("auth_cache_ttl", &options.auth_cache_ttl,
                 "how long a verified API key is cached (revocation delay)");
  flags.String("service_key_file", &options.service_key_file,
               "file holding this deployment's service key (fw_svc_...), used by background "
               "workers to call other services for each project");
  if (spec.define_flags) spec.define_flags(flags);

  absl::Status status = flags.Parse(argc, argv);
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (status.ok()) status = ValidateCommonOptions(options);
  if (status.ok() && spec.validate) status = spec.validate();
  if (!status.ok()) {
    std::fprintf(stderr, "flywheel-%s: %s\n", spec.name.c_str(),
                 std::string(status.message()).c_str());
    return 2;
  }
  Logger::Level level = Logger::Level::kInfo;
  Logger::ParseLevel(options.log_level, &level);
  Logger logger(spec.name, level);

  status = PrepareSchemas(options, spec.schema, logger);
  if (!status.ok()) {
    logger.Error("cannot start: database schema not ready", {{"status", status.ToString()}});
    return 1;
  }

  db::ConnectionPool pool(db::PoolOptions{options.database_url, options.db_pool_size,
                                          options.db_acquire_timeout, "flywheel-" + spec.name});
  metrics::Registry registry;
  registry.AddCollectHook([&pool, &registry] {
    const db::PoolStats stats = pool.Stats();
    registry.GetGauge("flywheel_db_pool_max", "Maximum database connections.")
        ->Set(stats.max_connections);
    registry.GetGauge("flywheel_db_pool_open", "Open database connections.")->Set(stats.open);
    registry.GetGauge("flywheel_db_pool_in_use", "Database connections in use.")->Set(stats.in_use);
    registry.GetGauge("flywheel_db_pool_waiting", "Requests waiting for a connection.")
        ->Set(stats.waiting);
    registry.GetCounter("flywheel_db_pool_timeouts_total", "Connection waits that timed out.")
        ->SetTotal(static_cast<double>(stats.timeouts_total));
    registry.GetCounter("flywheel_db_pool_connect_failures_total", "Failed connection attempts.")
        ->SetTotal(static_cast<double>(stats.connect_failures_total));
    registry.GetCounter("flywheel_db_pool_discarded_total", "Broken connections discarded.")
        ->SetTotal(static_cast<double>(stats.discarded_total));
  });
  auth::PgTenancyStore tenancy(&pool, &logger);
  auth::Authenticator authenticator(&tenancy, auth::AuthenticatorOptions{options.auth_cache_ttl});
  std::string service_key;
  if (!options.service_key_file.empty()) {
    absl::StatusOr<std::string> key = ReadServiceKeyFile(options.service_key_file);
    if (!key.ok()) {
      logger.Error("cannot start: bad --service_key_file", {{"status", key.status().ToString()}});
      return 2;
    }
    service_key = *std::move(key);
  }
  ServiceEnv env{options, logger, pool, registry, authenticator, tenancy, service_key};

  absl::StatusOr<ServiceParts> parts = spec.wire(env);
  if (!parts.ok()) {
    logger.Error("cannot start", {{"status", parts.status().ToString()}});
    return 1;
  }
  // Workers started by `wire` are stopped on every exit path, before what they use is destroyed.
  struct StopWorkers {
    std::vector<std::function<void()>>& hooks;
    ~StopWorkers() {
      for (auto it = hooks.rbegin(); it != hooks.rend(); ++it) (*it)();
    }
  } stop_workers{parts->on_shutdown};
  ServerRunner runner(ServerOptions{options.listen, options.metrics_listen, options.shutdown_grace,
                                    spec.max_message_bytes, options.port_file},
                      &logger, &registry);
  for (auto& [service, name] : parts->services) runner.AddService(service.get(), name);
  status = runner.Start();
  if (!status.ok()) {
    logger.Error("cannot start", {{"status", status.ToString()}});
    return 1;
  }
  const int signal_number = WaitForTerminationSignal();
  logger.Info("signal received", {{"signal", absl::StrCat(signal_number)}});
  runner.Shutdown();
  return 0;
}

}  // namespace flywheel
