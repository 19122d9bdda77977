#include "common/server/server_runner.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/metrics/grpc_metrics.h"

namespace flywheel {

ServerRunner::ServerRunner(ServerOptions options, Logger* logger, metrics::Registry* registry)
    : options_(std::move(options)), logger_(logger), registry_(registry) {}

ServerRunner::~ServerRunner() { Shutdown(); }

void ServerRunner::AddService(grpc::Service* service, std::string full_name) {
  services_.emplace_back(service, std::move(full_name));
}

absl::Status ServerRunner::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen_address, grpc::InsecureServerCredentials(), &port_);
  builder.SetMaxReceiveMessageSize(options_.max_receive_message_bytes);
  // gRPC enables SO_REUSEPORT by default, which lets a second instance silently share the port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  for (auto& [service, name] : services_) builder.RegisterService(service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<metrics::RpcMetricsInterceptorFactory>(registry_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("listen: cannot serve gRPC on ", options_.listen_address));
  }
  if (!options_.metrics_address.empty()) {
    metrics_ = std::make_unique<metrics::HttpExporter>(registry_, logger_);
    absl::Status status = metrics_->Start(options_.metrics_address);
    if (!status.ok()) {
      metrics_.reset();
      Shutdown();
      return status;
    }
  }
  auto* health = server_->GetHealthCheckService();
  health->SetServingStatus(true);
  for (auto& [service, name] : services_) health->SetServingStatus(name, true);
  if (!options_.port_file.empty()) {
    const std::string tmp = options_.port_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << "grpc_port=" << port_ << "\nmetrics_port=" << metrics_port() << "\n";
      if (!out) return absl::InternalError(absl::StrCat("port_file: cannot write ", tmp));
    }
    if (std::rename(tmp.c_str(), options_.port_file.c_str()) != 0) {
      return absl::InternalError(absl::StrCat("port_file: cannot write ", options_.port_file));
    }
  }
  logger_->Info("serving", {{"grpc_port", absl::StrCat(port_)},
                            {"metrics_port", absl::StrCat(metrics_port())},
                            {"listen", options_.listen_address}});
  return absl::OkStatus();
}

void ServerRunner::Shutdown() {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  server_->GetHealthCheckService()->Shutdown();
  logger_->Info("draining", {{"grace", absl::FormatDuration(options_.shutdown_grace)}});
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoNanoseconds(options_.shutdown_grace));
  server_->Wait();
  if (metrics_) metrics_->Stop();
  logger_->Info("stopped");
}

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal_number = 0;
  while (sigwait(&set, &signal_number) != 0) {
  }
  return signal_number;
}

}  // namespace flywheel
