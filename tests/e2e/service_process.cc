#include "tests/e2e/service_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

extern char** environ;

namespace flywheel::testing {
namespace {

std::string BinDir() {
  const char* dir = std::getenv("FLYWHEEL_BIN_DIR");
  return dir == nullptr ? "." : dir;
}

int ExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

}  // namespace

ServiceProcess::ServiceProcess(std::string binary, std::vector<std::string> args)
    : binary_(std::move(binary)), args_(std::move(args)) {}

ServiceProcess::~ServiceProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
  }
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

absl::Status ServiceProcess::Start() {
  char pattern[] = "/tmp/flywheel-e2e-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) return absl::InternalError("mkdtemp failed");
  dir_ = pattern;
  const std::string path = BinDir() + "/" + binary_;
  std::vector<std::string> argv_storage = {path};
  argv_storage.insert(argv_storage.end(), args_.begin(), args_.end());
  argv_storage.push_back("--port_file=" + dir_ + "/ports");
  std::vector<char*> argv;
  for (auto& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = dir_ + "/stderr.log";
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  // The test decides every setting: drop FLYWHEEL_* variables inherited from the caller.
  std::vector<char*> env;
  for (char** var = environ; *var != nullptr; ++var) {
    if (std::string_view(*var).rfind("FLYWHEEL_", 0) != 0) env.push_back(*var);
  }
  env.push_back(nullptr);
  const int rc = ::posix_spawn(&pid_, path.c_str(), &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    return absl::InternalError(absl::StrCat("cannot start ", path));
  }
  return absl::OkStatus();
}

absl::Status ServiceProcess::WaitServing(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::ifstream in(dir_ + "/ports");
    if (in) {
      std::string line;
      while (std::getline(in, line)) {
        std::vector<std::string> kv = absl::StrSplit(line, '=');
        if (kv.size() != 2) continue;
        if (kv[0] == "grpc_port") (void)absl::SimpleAtoi(kv[1], &grpc_port_);
        if (kv[0] == "metrics_port") (void)absl::SimpleAtoi(kv[1], &metrics_port_);
      }
      if (grpc_port_ > 0) return absl::OkStatus();
    }
    int status;
    if (pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::FailedPreconditionError(
          absl::StrCat(binary_, " exited with ", ExitCode(status), ":\n", Log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(binary_, " did not start:\n", Log()));
}

absl::StatusOr<int> ServiceProcess::WaitExit(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return ExitCode(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(binary_, " did not exit"));
}

absl::StatusOr<int> ServiceProcess::Stop(int signal, absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  ::kill(pid_, signal);
  return WaitExit(timeout);
}

std::string ServiceProcess::Log() const {
  std::ifstream in(dir_ + "/stderr.log");
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace flywheel::testing
