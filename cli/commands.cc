#include "cli/commands.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cli/cli_util.h"
#include "cli/demo/demo.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/auth/tenancy_admin.h"
#include "common/config/flags.h"
#include "common/db/migrate.h"
#include "common/db/pool.h"
#include "common/log/logger.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "migrations/migrations.h"

namespace flywheel::cli {
namespace {

// Admin commands talk to Postgres directly: they bootstrap the keys every API needs.
struct AdminContext {
  explicit AdminContext(const std::string& url)
      : logger("cli", Logger::Level::kWarning),
        pool(db::PoolOptions{url, 1, absl::Seconds(10), "flywheel-cli"}),
        store(&pool, &logger),
        admin(&store) {}
  Logger logger;
  db::ConnectionPool pool;
  auth::PgTenancyStore store;
  auth::TenancyAdmin admin;
};

void DatabaseFlag(FlagSet& flags, std::string* url) {
  flags.String("database_url", url, "PostgreSQL URL or libpq conninfo (required)");
}

}  // namespace

int Migrate(int argc, char** argv) {
  std::string url;
  std::string schema;
  FlagSet flags(
      "flywheel migrate",
      "Applies pending migrations (tenancy, capture, clustering, review, evals) in order. "
      "Safe to run while services start: each schema is migrated under an advisory lock.");
  DatabaseFlag(flags, &url);
  flags.String("schema", &schema, "only this schema (default: all)");
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require("flywheel migrate", "database_url", url)) return *exit;
  Logger logger("migrate", Logger::Level::kWarning);
  if (!schema.empty()) {
    absl::StatusOr<db::MigrationSet> known = migrations::ForSchema(schema);
    if (!known.ok())
      return Fail("flywheel migrate", absl::InvalidArgumentError(known.status().message()));
  }
  for (const db::MigrationSet& set : migrations::All()) {
    if (!schema.empty() && set.schema != schema) continue;
    absl::StatusOr<db::MigrationReport> report = db::ApplyMigrations(url, set, &logger);
    if (!report.ok()) return Fail("flywheel migrate", report.status());
    std::printf("%-10s at version %d (%d applied now)\n", set.schema.c_str(),
                report->current_version, report->applied_now);
  }
  return 0;
}

int Health(int argc, char** argv) {
  std::string address;
  std::string service;
  absl::Duration timeout = absl::Seconds(3);
  FlagSet flags("flywheel health", "Checks a service's grpc.health.v1 status.");
  flags.String("address", &address, "host:port of the service (required)");
  flags.String("service", &service, "service name to check (default: the whole server)");
  flags.Duration("timeout", &timeout, "deadline of the check");
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require("flywheel health", "address", address)) return *exit;
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\n", address.c_str(), status.error_message().c_str());
    return 1;
  }
  const bool serving = response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  std::printf("%s %s\n", address.c_str(),
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  return serving ? 0 : 1;
}

int CreateProject(const std::string& name, int argc, char** argv) {
  std::string url;
  std::string id;
  std::string display_name;
  FlagSet flags(name, "Creates a project (tenant).");
  DatabaseFlag(flags, &url);
  flags.String("id", &id, "project id: 1..63 of a-z 0-9 - _ (required)");
  flags.String("display_name", &display_name, "human-readable name (default: the id)");
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require(name, "database_url", url)) return *exit;
  if (auto exit = Require(name, "id", id)) return *exit;
  AdminContext context(url);
  absl::StatusOr<auth::Project> project = context.admin.CreateProject(id, display_name);
  if (!project.ok()) return Fail(name, project.status());
  std::printf("created project %s\n", project->project_id.c_str());
  return 0;
}

int ListProjects(const std::string& name, int argc, char** argv) {
  std::string url;
  FlagSet flags(name, "Lists projects.");
  DatabaseFlag(flags, &url);
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require(name, "database_url", url)) return *exit;
  AdminContext context(url);
  absl::StatusOr<std::vector<auth::Project>> projects = context.admin.ListProjects();
  if (!projects.ok()) return Fail(name, projects.status());
  for (const auth::Project& project : *projects) {
    std::printf(
        "%s\t%s\t%s\n", project.project_id.c_str(), project.display_name.c_str(),
        absl::FormatTime(absl::RFC3339_sec, project.created_at, absl::UTCTimeZone()).c_str());
  }
  return 0;
}

int CreateKey(const std::string& name, int argc, char** argv) {
  std::string url;
  std::string project;
  std::string kind = "secret";
  std::string scopes;
  std::string display_name;
  bool quiet = false;
  FlagSet flags(name,
                "Creates an API key and prints it once (only its hash is stored). Public keys are "
                "browser-safe and may only write signals; secret keys carry scopes. Service keys "
                "belong to no project: services' background workers use them to act for any "
                "project (give them to services with --service_key_file).");
  DatabaseFlag(flags, &url);
  flags.String("project", &project, "project id (required, except for service keys)");
  flags.String("kind", &kind, "secret, public or service");
  flags.String("scopes", &scopes,
               "secret keys: comma list of ingest, read, review, eval, admin; service keys: any "
               "but admin");
  flags.String("display_name", &display_name, "what the key is for");
  flags.Bool("quiet", &quiet, "print only the key (for scripts)");
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require(name, "database_url", url)) return *exit;
  if (kind != "secret" && kind != "public" && kind != "service") {
    return Fail(name, absl::InvalidArgumentError("--kind: secret, public or service"));
  }
  if (kind == "service" && !project.empty()) {
    return Fail(name, absl::InvalidArgumentError("--project: service keys belong to no project"));
  }
  if (kind != "service") {
    if (auto exit = Require(name, "project", project)) return *exit;
  }
  absl::StatusOr<auth::ScopeSet> scope_set = auth::ParseScopes(scopes);
  if (!scope_set.ok()) return Fail(name, scope_set.status());
  AdminContext context(url);
  absl::StatusOr<auth::CreatedKey> created =
      kind == "service"
          ? context.admin.CreateServiceKey(*scope_set, display_name)
          : context.admin.CreateKey(
                project, kind == "public" ? auth::KeyKind::kPublic : auth::KeyKind::kSecret,
                *scope_set, display_name);
  if (!created.ok()) return Fail(name, created.status());
  if (quiet) {
    std::printf("%s\n", created->plaintext.c_str());
  } else {
    std::printf(
        "key id:  %s\nproject: %s\nkind:    %s\nscopes:  %s\n\n%s\n\n"
        "Store this key now: it is shown only once.\n",
        created->key.key_id.c_str(), project.empty() ? "(any)" : project.c_str(), kind.c_str(),
        absl::StrJoin(auth::ScopeNames(created->key.scopes), ",").c_str(),
        created->plaintext.c_str());
  }
  return 0;
}

int ListKeys(const std::string& name, int argc, char** argv) {
  std::string url;
  std::string project;
  bool service = false;
  FlagSet flags(name,
                "Lists a project's keys, or the service keys (ids, kinds, scopes; never "
                "secrets).");
  DatabaseFlag(flags, &url);
  flags.String("project", &project, "project id (required unless --service)");
  flags.Bool("service", &service, "list the service keys instead");
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require(name, "database_url", url)) return *exit;
  if (!service) {
    if (auto exit = Require(name, "project", project)) return *exit;
  }
  AdminContext context(url);
  absl::StatusOr<std::vector<auth::StoredKey>> keys =
      service ? context.admin.ListServiceKeys() : context.admin.ListKeys(project);
  if (!keys.ok()) return Fail(name, keys.status());
  for (const auth::StoredKey& key : *keys) {
    std::printf("%s\t%s\t%s\t%s\t%s\n", key.key_id.c_str(), auth::KeyKindName(key.kind).c_str(),
                absl::StrJoin(auth::ScopeNames(key.scopes), ",").c_str(),
                key.revoked ? "revoked" : "active", key.display_name.c_str());
  }
  return 0;
}

int RevokeKey(const std::string& name, int argc, char** argv) {
  std::string url;
  std::string project;
  std::string key_id;
  bool service = false;
  FlagSet flags(name, "Revokes a key. Services notice within their auth cache TTL (30 s).");
  DatabaseFlag(flags, &url);
  flags.String("project", &project, "project id (required unless --service)");
  flags.String("key_id", &key_id, "the key's id (required)");
  flags.Bool("service", &service, "the key is a service key");
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require(name, "database_url", url)) return *exit;
  if (!service) {
    if (auto exit = Require(name, "project", project)) return *exit;
  }
  if (auto exit = Require(name, "key_id", key_id)) return *exit;
  AdminContext context(url);
  absl::Status status =
      service ? context.admin.RevokeServiceKey(key_id) : context.admin.RevokeKey(project, key_id);
  if (!status.ok()) return Fail(name, status);
  std::printf("revoked %s\n", key_id.c_str());
  return 0;
}

int Demo(int argc, char** argv) {
  const std::string name = "flywheel demo";
  demo::DemoOptions options;
  std::string key_file;
  int seed = static_cast<int>(options.seed);
  FlagSet flags(name,
                "Simulates a product (users who rate often, rarely or never; responses with a "
                "hidden quality and hidden failure themes) and runs it through the loop via the "
                "services' public APIs: capture, labels, themes, a review queue, eval set and "
                "runs. Prints coverage, what thumbs alone would have found vs composite labels, "
                "the themes found, queue progress and release notes. Seeded: the same --seed and "
                "--run_id send the same traffic (a re-run is all duplicates).");
  flags.String("capture_address", &options.capture_address, "capture service host:port");
  flags.String("clustering_address", &options.clustering_address, "clustering service host:port");
  flags.String("annotation_address", &options.annotation_address, "annotation service host:port");
  flags.String("evalset_address", &options.evalset_address, "eval-set service host:port");
  flags.String("key_file", &key_file,
               "file with a secret key of the demo project (scopes ingest, read, review, eval)");
  flags.Int("seed", &seed, "random seed of the simulated traffic");
  flags.Int("users", &options.users, "simulated users (10..100000)");
  flags.String("run_id", &options.run_id,
               "prefix of the simulated ids; the same seed and run id re-send identical traffic "
               "(default: demo-<UTC time>, new traffic each run)");
  flags.Duration("step_timeout", &options.step_timeout, "how long to wait for each step");
  flags.String("json", &options.json_path, "also write the figures as JSON to this file");
  flags.Bool("quiet", &options.quiet, "print nothing but errors");
  flags.Int("max_reviews", &options.max_reviews, "items the simulated reviewer reviews (1..10000)");
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require(name, "key_file", key_file)) return *exit;
  absl::StatusOr<std::string> key = ReadKeyFile("key_file", key_file);
  if (!key.ok()) return Fail(name, key.status());
  options.api_key = *key;
  options.seed = static_cast<uint64_t>(seed);
  return demo::RunDemo(options);
}

}  // namespace flywheel::cli
