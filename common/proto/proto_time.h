#pragma once

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace flywheel {

// absl time <-> protobuf well-known types, at microsecond precision (what Postgres stores).
// Negative times round toward the past, so nanos stay in [0, 1e9) as the Timestamp spec demands.
google::protobuf::Timestamp ToProtoTime(absl::Time time);
absl::Time FromProtoTime(const google::protobuf::Timestamp& time);

}  // namespace flywheel
