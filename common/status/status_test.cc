#include <gtest/gtest.h>

#include "absl/status/statusor.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "common/status/status_matchers.h"

namespace flywheel {
namespace {

using ::flywheel::testing::IsOkAndHolds;
using ::flywheel::testing::StatusIs;

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("x: must be even");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(auto quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x));
  return absl::OkStatus();
}

TEST(StatusMacrosTest, AssignOrReturnPropagatesValueAndError) {
  EXPECT_THAT(Quarter(8), IsOkAndHolds(2));
  EXPECT_THAT(Quarter(6), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(CheckEven(4));
  EXPECT_THAT(CheckEven(3), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(GrpcStatusTest, EveryCodeMapsOneToOne) {
  for (int code = 0; code <= 16; ++code) {
    absl::Status status(static_cast<absl::StatusCode>(code), code == 0 ? "" : "detail");
    grpc::Status grpc_status = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(grpc_status.error_code()), code);
    EXPECT_EQ(FromGrpcStatus(grpc_status).code(), status.code());
  }
}

TEST(GrpcStatusTest, InternalDetailNeverReachesClient) {
  const std::string secret = "ERROR: relation \"capture.traces\" violates constraint";
  for (auto code :
       {absl::StatusCode::kInternal, absl::StatusCode::kUnknown, absl::StatusCode::kDataLoss}) {
    grpc::Status grpc_status = ToGrpcStatus(absl::Status(code, secret));
    EXPECT_EQ(grpc_status.error_message().find("relation"), std::string::npos);
    EXPECT_EQ(static_cast<int>(grpc_status.error_code()), static_cast<int>(code));
  }
}

TEST(GrpcStatusTest, ClientErrorsKeepTheirFieldName) {
  grpc::Status grpc_status = ToGrpcStatus(absl::InvalidArgumentError("trace.output: too long"));
  EXPECT_EQ(grpc_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(grpc_status.error_message().empty());
}

}  // namespace
}  // namespace flywheel
