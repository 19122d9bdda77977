// flywheel: the command-line tool. See `flywheel --help`.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"

namespace {

constexpr char kUsage[] = R"(Usage: flywheel <command> [flags]

Commands:
  migrate                      apply every schema's migrations to a database
  admin create-project         create a project (tenant)
  admin list-projects          list projects
  admin create-key             create an API key for a project, or a service key (printed once)
  admin list-keys              list a project's keys (never their secrets)
  admin revoke-key             revoke a key
  health                       check a service's gRPC health (exit 0 when SERVING)
  ingest                       send traces and signals from a JSONL file to capture (batched)
  themes                       list failure themes with size, users, share and trend
  review                       review a queue interactively (claim, label, submit, skip)
  evals list|export|compare    eval sets, their cases as JSONL, and run comparisons
  rules get|set                a project's label rules (versioned; set can relabel history)
  demo                         run the whole loop on a simulated product and print what happened

Every command takes --help. Flags can also be set as FLYWHEEL_<FLAG NAME> environment variables,
e.g. FLYWHEEL_DATABASE_URL. Exit codes: 0 success, 1 failure, 2 usage error.
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  if (command == "migrate") return flywheel::cli::Migrate(argc - 1, argv + 1);
  if (command == "health") return flywheel::cli::Health(argc - 1, argv + 1);
  if (command == "ingest") return flywheel::cli::Ingest(argc - 1, argv + 1);
  if (command == "themes") return flywheel::cli::Themes(argc - 1, argv + 1);
  if (command == "review") return flywheel::cli::Review(argc - 1, argv + 1);
  if (command == "rules") return flywheel::cli::Rules(argc - 1, argv + 1);
  if (command == "evals") return flywheel::cli::Evals(argc - 1, argv + 1);
  if (command == "demo") return flywheel::cli::Demo(argc - 1, argv + 1);
  if (command == "admin" && argc >= 3) {
    const std::string sub = argv[2];
    const std::string name = "flywheel admin " + sub;
    if (sub == "create-project") return flywheel::cli::CreateProject(name, argc - 2, argv + 2);
    if (sub == "list-projects") return flywheel::cli::ListProjects(name, argc - 2, argv + 2);
    if (sub == "create-key") return flywheel::cli::CreateKey(name, argc - 2, argv + 2);
    if (sub == "list-keys") return flywheel::cli::ListKeys(name, argc - 2, argv + 2);
    if (sub == "revoke-key") return flywheel::cli::RevokeKey(name, argc - 2, argv + 2);
  }
  std::fprintf(stderr, "flywheel: unknown command \"%s\"\n\n%s", command.c_str(), kUsage);
  return 2;
}
