#pragma once

// gMock matchers for absl::Status / StatusOr (Debian's abseil ships none). They match on codes
// and values, never on message text.

#include <gmock/gmock.h>

#include <ostream>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status/status_macros.h"

namespace flywheel::testing {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  if (!status.ok()) *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P(StatusIs, code, "has status code " + ::testing::PrintToString(code)) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code;
}

MATCHER_P(IsOkAndHolds, inner, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(inner, *arg, result_listener);
}

}  // namespace flywheel::testing

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::flywheel::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::flywheel::testing::IsOk())
// ASSERT_OK_AND_ASSIGN(lhs, expr): asserts the StatusOr is OK and moves its value into lhs.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  FLYWHEEL_ASSERT_OK_AND_ASSIGN_IMPL(FLYWHEEL_STATUS_CONCAT(flywheel_test_so_, __LINE__), lhs, expr)
#define FLYWHEEL_ASSERT_OK_AND_ASSIGN_IMPL(so, lhs, expr) \
  auto so = (expr);                                       \
  ASSERT_TRUE(so.ok()) << so.status();                    \
  lhs = std::move(so).value()
