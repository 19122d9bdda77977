// The four real service binaries on a throwaway Postgres: they migrate an empty database
// concurrently, serve health, count RPCs, drain on SIGTERM, and refuse to start when behind.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <pqxx/pqxx>

#include "common/status/status_matchers.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/e2e/service_process.h"
#include "tests/pg/test_database.h"

namespace flywheel {
namespace {

using ::flywheel::testing::ServiceProcess;
using ::flywheel::testing::TestDatabase;
using grpc::health::v1::HealthCheckResponse;

struct Binary {
  const char* name;
  const char* service;
};
constexpr Binary kBinaries[] = {
    {"flywheel-capture", "flywheel.capture.v1.CaptureService"},
    {"flywheel-clustering", "flywheel.clustering.v1.ClusteringService"},
    {"flywheel-annotation", "flywheel.annotation.v1.AnnotationService"},
    {"flywheel-evalset", "flywheel.evalset.v1.EvalSetService"},
};

HealthCheckResponse::ServingStatus Health(const std::string& address, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  return status.ok() ? response.status() : HealthCheckResponse::UNKNOWN;
}

std::string HttpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
    (void)!::write(fd, request.data(), request.size());
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  }
  ::close(fd);
  return response;
}

std::vector<std::string> Args(const TestDatabase& db) {
  return {"--database_url=" + db.conninfo(), "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
          "--shutdown_grace=5s", "--log_level=warning"};
}

TEST(ServicesE2eTest, AllFourMigrateAnEmptyDatabaseTogetherServeAndDrainOnSigterm) {
  ASSERT_OK_AND_ASSIGN(auto db, TestDatabase::Create(TestDatabase::Kind::kEmpty));
  std::vector<std::unique_ptr<ServiceProcess>> processes;
  for (const Binary& binary : kBinaries) {
    processes.push_back(std::make_unique<ServiceProcess>(binary.name, Args(*db)));
    ASSERT_OK(processes.back()->Start());
  }
  for (auto& process : processes) ASSERT_OK(process->WaitServing(absl::Seconds(60)));
  for (size_t i = 0; i < processes.size(); ++i) {
    EXPECT_EQ(Health(processes[i]->address(), ""), HealthCheckResponse::SERVING);
    EXPECT_EQ(Health(processes[i]->address(), kBinaries[i].service), HealthCheckResponse::SERVING)
        << kBinaries[i].name;
  }
  // Every schema was migrated exactly once although four processes raced on tenancy.
  {
    pqxx::connection connection(db->conninfo());
    pqxx::work tx(connection);
    for (const char* schema : {"tenancy", "capture", "clustering", "review", "evals"}) {
      EXPECT_EQ(tx.exec1(std::string("SELECT count(*) FROM ") + schema +
                         ".schema_migrations WHERE version = 1")[0]
                    .as<int>(),
                1)
          << schema;
    }
  }
  // RPC metrics are exported per method.
  const std::string metrics = HttpGet(processes[0]->metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("flywheel_rpc_total{method=\"/grpc.health.v1.Health/Check\""),
            std::string::npos);
  EXPECT_NE(metrics.find("flywheel_db_pool_max"), std::string::npos);
  for (auto& process : processes) {
    ASSERT_OK_AND_ASSIGN(int code, process->Stop(SIGTERM, absl::Seconds(30)));
    EXPECT_EQ(code, 0) << process->Log();
  }
}

TEST(ServicesE2eTest, ServiceRefusesToStartOnASchemaThatIsBehindWithoutMigrate) {
  ASSERT_OK_AND_ASSIGN(auto db, TestDatabase::Create(TestDatabase::Kind::kEmpty));
  std::vector<std::string> args = Args(*db);
  args.push_back("--nomigrate");
  ServiceProcess process("flywheel-evalset", args);
  ASSERT_OK(process.Start());
  ASSERT_OK_AND_ASSIGN(int code, process.WaitExit(absl::Seconds(30)));
  EXPECT_EQ(code, 1);
}

TEST(ServicesE2eTest, InvalidConfigurationExitsWithUsageError) {
  ServiceProcess process("flywheel-capture", {"--listen=127.0.0.1:0", "--db_pool_size=0",
                                              "--database_url=host=/nonexistent"});
  ASSERT_OK(process.Start());
  ASSERT_OK_AND_ASSIGN(int code, process.WaitExit(absl::Seconds(30)));
  EXPECT_EQ(code, 2);
}

TEST(ServicesE2eTest, MigratedDatabaseNeedsNoMigrateAndSigintStopsCleanly) {
  ASSERT_OK_AND_ASSIGN(auto db, TestDatabase::Create(TestDatabase::Kind::kMigrated));
  std::vector<std::string> args = Args(*db);
  args.push_back("--nomigrate");
  ServiceProcess process("flywheel-capture", args);
  ASSERT_OK(process.Start());
  ASSERT_OK(process.WaitServing(absl::Seconds(30)));
  EXPECT_EQ(Health(process.address(), ""), HealthCheckResponse::SERVING);
  ASSERT_OK_AND_ASSIGN(int code, process.Stop(SIGINT, absl::Seconds(30)));
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace flywheel
