#pragma once

// RETURN_IF_ERROR / ASSIGN_OR_RETURN: Debian's abseil 20220623 ships neither, so we keep our own.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FLYWHEEL_STATUS_CONCAT_INNER(a, b) a##b
#define FLYWHEEL_STATUS_CONCAT(a, b) FLYWHEEL_STATUS_CONCAT_INNER(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                       \
  do {                                                              \
    ::absl::Status flywheel_status_ = ::flywheel::AsStatus((expr)); \
    if (!flywheel_status_.ok()) return flywheel_status_;            \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (a StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs` (which may be a declaration such as `auto x`).
#define ASSIGN_OR_RETURN(lhs, expr) \
  FLYWHEEL_ASSIGN_OR_RETURN_IMPL(FLYWHEEL_STATUS_CONCAT(flywheel_statusor_, __LINE__), lhs, expr)

#define FLYWHEEL_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

namespace flywheel {

inline const absl::Status& AsStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& AsStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

}  // namespace flywheel
