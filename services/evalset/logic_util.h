#pragma once

// Helpers shared by the logic files: record <-> API message conversions, filter validation,
// deterministic serialization. Internal to evalset_logic.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/proto/proto_time.h"
#include "flywheel/common/v1/common.pb.h"
#include "flywheel/evalset/v1/evalset.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "services/evalset/case_content.h"
#include "services/evalset/evalset_repository.h"

namespace flywheel::evalset {

using ::flywheel::FromProtoTime;
using ::flywheel::ToProtoTime;

std::string DeterministicBytes(const google::protobuf::Message& message);
std::optional<google::protobuf::Struct> ParseStruct(const std::optional<std::string>& bytes);

std::string Etag(int64_t etag_seq);
v1::EvalSet SetToProto(const SetRecord& set);
v1::EvalSetVersion VersionToProto(const VersionRecord& version);
SetSchemas SchemasOf(const SetRecord& set);

// Validates a CaseFilter (INVALID_ARGUMENT naming "filter.theme_ids[i]" / "filter.tags[i]").
absl::StatusOr<SnapshotQuery> FilterToQuery(const v1::CaseFilter& filter);
// A short stable fingerprint of request filters, bound into page tokens.
std::string Fingerprint(const std::string& canonical);
std::string FilterCanonical(const SnapshotQuery& query);

// "latest", "tag:<name>" or "number:<n>".
std::string RefText(const v1::VersionRef* ref);

flywheel::common::v1::ItemResult Accepted(int index, const std::string& id);
flywheel::common::v1::ItemResult Duplicate(int index, const std::string& id);
flywheel::common::v1::ItemResult Rejected(int index, const std::string& id,
                                          const FieldError& error);

}  // namespace flywheel::evalset
