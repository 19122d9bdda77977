#include "common/metrics/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/metrics/http_exporter.h"
#include "common/status/status_matchers.h"

namespace flywheel::metrics {
namespace {

using ::testing::HasSubstr;

TEST(RegistryTest, RendersCountersGaugesAndCumulativeHistograms) {
  Registry registry;
  registry.GetCounter("x_total", "things", {{"method", "/a.B/C"}, {"code", "OK"}})->Increment(2);
  registry.GetGauge("pool_in_use", "busy")->Set(3);
  Histogram* latency = registry.GetHistogram("lat_seconds", "latency", {}, {0.1, 1});
  latency->Observe(0.05);
  latency->Observe(0.5);
  latency->Observe(5);
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("# TYPE x_total counter\n"));
  EXPECT_THAT(text, HasSubstr("x_total{method=\"/a.B/C\",code=\"OK\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("pool_in_use 3\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"0.1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"+Inf\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_count 3\n"));
}

TEST(RegistryTest, SameNameAndLabelsReturnTheSameMetricAndHooksRunOnRender) {
  Registry registry;
  EXPECT_EQ(registry.GetCounter("a", "h", {{"k", "v"}}),
            registry.GetCounter("a", "h", {{"k", "v"}}));
  EXPECT_NE(registry.GetCounter("a", "h", {{"k", "v"}}),
            registry.GetCounter("a", "h", {{"k", "w"}}));
  int calls = 0;
  registry.AddCollectHook([&] { registry.GetGauge("hooked", "h")->Set(++calls); });
  EXPECT_THAT(registry.Render(), HasSubstr("hooked 1\n"));
  EXPECT_EQ(calls, 1);
}

TEST(RegistryTest, LabelValuesAreEscaped) {
  EXPECT_EQ(FormatLabels({{"m", "a\"b\\c\n"}}), "{m=\"a\\\"b\\\\c\\n\"}");
}

std::string HttpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return "";
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
  (void)!::write(fd, request.data(), request.size());
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  ::close(fd);
  return response;
}

TEST(HttpExporterTest, ServesMetricsOnAnEphemeralPort) {
  Registry registry;
  Logger logger("test", Logger::Level::kError);
  registry.GetCounter("served_total", "h")->Increment();
  HttpExporter exporter(&registry, &logger);
  ASSERT_OK(exporter.Start("127.0.0.1:0"));
  ASSERT_GT(exporter.port(), 0);
  const std::string response = HttpGet(exporter.port(), "/metrics");
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("served_total 1\n"));
  EXPECT_THAT(HttpGet(exporter.port(), "/nope"), HasSubstr("404"));
  exporter.Stop();
}

TEST(HttpExporterTest, BadAddressIsInvalidArgument) {
  Registry registry;
  Logger logger("test", Logger::Level::kError);
  HttpExporter exporter(&registry, &logger);
  EXPECT_THAT(exporter.Start("no-port"),
              ::flywheel::testing::StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace flywheel::metrics
