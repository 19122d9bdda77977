#include "services/evalset/logic_util.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "services/evalset/ids.h"

namespace flywheel::evalset {

std::string DeterministicBytes(const google::protobuf::Message& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

std::optional<google::protobuf::Struct> ParseStruct(const std::optional<std::string>& bytes) {
  if (!bytes.has_value()) return std::nullopt;
  google::protobuf::Struct out;
  out.ParseFromString(*bytes);
  return out;
}

std::string Etag(int64_t etag_seq) { return absl::StrCat("e", etag_seq); }

v1::EvalSet SetToProto(const SetRecord& set) {
  v1::EvalSet out;
  out.set_eval_set_id(set.eval_set_id);
  out.set_display_name(set.display_name);
  out.set_description(set.description);
  if (auto schema = ParseStruct(set.input_schema)) *out.mutable_input_schema() = *schema;
  if (auto schema = ParseStruct(set.expected_output_schema)) {
    *out.mutable_expected_output_schema() = *schema;
  }
  out.set_state(set.archived ? v1::EVAL_SET_STATE_ARCHIVED : v1::EVAL_SET_STATE_ACTIVE);
  out.set_latest_version(set.latest_version);
  out.set_case_count(set.case_count);
  *out.mutable_create_time() = ToProtoTime(set.create_time);
  *out.mutable_update_time() = ToProtoTime(set.update_time);
  if (set.archive_time) *out.mutable_archive_time() = ToProtoTime(*set.archive_time);
  out.set_etag(Etag(set.etag_seq));
  return out;
}

v1::EvalSetVersion VersionToProto(const VersionRecord& version) {
  v1::EvalSetVersion out;
  out.set_eval_set_id(version.eval_set_id);
  out.set_version(version.version);
  *out.mutable_create_time() = ToProtoTime(version.create_time);
  auto* change = out.mutable_change();
  change->set_kind(version.change_kind);
  change->set_added_count(version.added_count);
  change->set_updated_count(version.updated_count);
  change->set_retired_count(version.retired_count);
  change->set_note(version.note);
  out.set_case_count(version.case_count);
  out.set_content_digest(version.content_digest);
  for (const std::string& tag : version.tags) out.add_tags(tag);
  return out;
}

SetSchemas SchemasOf(const SetRecord& set) {
  return SetSchemas{ParseStruct(set.input_schema), ParseStruct(set.expected_output_schema)};
}

absl::StatusOr<SnapshotQuery> FilterToQuery(const v1::CaseFilter& filter) {
  SnapshotQuery query;
  if (filter.theme_ids_size() > 100) {
    return absl::InvalidArgumentError("filter.theme_ids: at most 100");
  }
  if (filter.tags_size() > 20) return absl::InvalidArgumentError("filter.tags: at most 20");
  for (int i = 0; i < filter.theme_ids_size(); ++i) {
    if (!IsValidId(filter.theme_ids(i))) {
      return absl::InvalidArgumentError(absl::StrCat("filter.theme_ids[", i, "]: malformed id"));
    }
    query.theme_ids.push_back(filter.theme_ids(i));
  }
  for (int i = 0; i < filter.tags_size(); ++i) {
    if (!IsValidCaseTag(filter.tags(i))) {
      return absl::InvalidArgumentError(absl::StrCat("filter.tags[", i, "]: malformed tag"));
    }
    query.tags.push_back(filter.tags(i));
  }
  return query;
}

std::string Fingerprint(const std::string& canonical) {
  return Sha256Digest(canonical).substr(7, 16);
}

std::string FilterCanonical(const SnapshotQuery& query) {
  return absl::StrCat("themes=", absl::StrJoin(query.theme_ids, ","),
                      ";tags=", absl::StrJoin(query.tags, ","));
}

std::string RefText(const v1::VersionRef* ref) {
  if (ref == nullptr) return "latest";
  switch (ref->ref_case()) {
    case v1::VersionRef::kNumber:
      return absl::StrCat("number:", ref->number());
    case v1::VersionRef::kTag:
      return absl::StrCat("tag:", ref->tag());
    default:
      return "latest";
  }
}

flywheel::common::v1::ItemResult Accepted(int index, const std::string& id) {
  flywheel::common::v1::ItemResult r;
  r.set_index(index);
  r.set_id(id);
  r.set_outcome(flywheel::common::v1::ITEM_OUTCOME_ACCEPTED);
  return r;
}

flywheel::common::v1::ItemResult Duplicate(int index, const std::string& id) {
  flywheel::common::v1::ItemResult r = Accepted(index, id);
  r.set_outcome(flywheel::common::v1::ITEM_OUTCOME_DUPLICATE);
  return r;
}

flywheel::common::v1::ItemResult Rejected(int index, const std::string& id,
                                          const FieldError& error) {
  flywheel::common::v1::ItemResult r;
  r.set_index(index);
  r.set_id(id);
  r.set_outcome(flywheel::common::v1::ITEM_OUTCOME_REJECTED);
  r.set_code(static_cast<int32_t>(error.code));
  r.set_field(error.field);
  r.set_reason(error.reason);
  return r;
}

}  // namespace flywheel::evalset
