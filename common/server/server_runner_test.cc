#include "common/server/server_runner.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/status/status_matchers.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace flywheel {
namespace {

using grpc::health::v1::HealthCheckResponse;

// A service whose RPC blocks until released, to observe draining.
class SlowHealth final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest*,
                     HealthCheckResponse* response) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    response->set_status(HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
};

HealthCheckResponse::ServingStatus Check(int port, const std::string& service,
                                         grpc::StatusCode* code) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  *code = stub->Check(&context, request, &response).error_code();
  return response.status();
}

TEST(ServerRunnerTest, ServesHealthOnAPickedPortAndWritesThePortFile) {
  Logger logger("test", Logger::Level::kError);
  metrics::Registry registry;
  const std::string port_file = ::testing::TempDir() + "/ports";
  ServerRunner runner({"127.0.0.1:0", "127.0.0.1:0", absl::Seconds(1), 1 << 20, port_file}, &logger,
                      &registry);
  ASSERT_OK(runner.Start());
  ASSERT_GT(runner.port(), 0);
  ASSERT_GT(runner.metrics_port(), 0);
  grpc::StatusCode code;
  EXPECT_EQ(Check(runner.port(), "", &code), HealthCheckResponse::SERVING);
  EXPECT_EQ(code, grpc::StatusCode::OK);
  std::ifstream in(port_file);
  std::stringstream contents;
  contents << in.rdbuf();
  EXPECT_EQ(contents.str(), "grpc_port=" + std::to_string(runner.port()) +
                                "\nmetrics_port=" + std::to_string(runner.metrics_port()) + "\n");
  // RPCs are counted per method and code.
  EXPECT_NE(registry.Render().find("flywheel_rpc_total{method=\"/grpc.health.v1.Health/Check\","
                                   "code=\"OK\"} 1"),
            std::string::npos);
  runner.Shutdown();
  Check(runner.port(), "", &code);
  EXPECT_EQ(code, grpc::StatusCode::UNAVAILABLE);
}

TEST(ServerRunnerTest, ShutdownLetsInFlightCallsFinishWithinTheGrace) {
  Logger logger("test", Logger::Level::kError);
  metrics::Registry registry;
  ServerRunner runner({"127.0.0.1:0", "", absl::Seconds(5), 1 << 20, ""}, &logger, &registry);
  SlowHealth slow;
  // Registered under its own name; the runner's default health service is replaced by it.
  runner.AddService(&slow, "grpc.health.v1.Health");
  ASSERT_OK(runner.Start());
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::thread client([&] { Check(runner.port(), "", &code); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  runner.Shutdown();
  client.join();
  EXPECT_EQ(code, grpc::StatusCode::OK);
}

TEST(ServerRunnerTest, UnusablePortIsAnError) {
  Logger logger("test", Logger::Level::kError);
  metrics::Registry registry;
  ServerRunner first({"127.0.0.1:0", "", absl::Seconds(1), 1 << 20, ""}, &logger, &registry);
  ASSERT_OK(first.Start());
  ServerRunner second(
      {"127.0.0.1:" + std::to_string(first.port()), "", absl::Seconds(1), 1 << 20, ""}, &logger,
      &registry);
  EXPECT_FALSE(second.Start().ok());
}

}  // namespace
}  // namespace flywheel
