#pragma once

#include <string>

namespace flywheel::cli {

// Each command parses its own flags from argv (argv[0] is the command name) and returns the
// process exit code: 0 success, 1 failure, 2 usage error.
int Migrate(int argc, char** argv);
int Health(int argc, char** argv);
int CreateProject(const std::string& name, int argc, char** argv);
int ListProjects(const std::string& name, int argc, char** argv);
int CreateKey(const std::string& name, int argc, char** argv);
int ListKeys(const std::string& name, int argc, char** argv);
int RevokeKey(const std::string& name, int argc, char** argv);
int Demo(int argc, char** argv);
int Ingest(int argc, char** argv);
int Themes(int argc, char** argv);
int Review(int argc, char** argv);
int Evals(int argc, char** argv);
int Rules(int argc, char** argv);

}  // namespace flywheel::cli
