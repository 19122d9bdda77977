// Eval sets, version resolution, versions and tags.
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/evalset/evalset_logic.h"
#include "services/evalset/ids.h"
#include "services/evalset/json_schema.h"
#include "services/evalset/logic_util.h"

namespace flywheel::evalset {
namespace {

absl::Status CheckSchemaField(const std::string& field, const google::protobuf::Struct& schema) {
  if (JsonSize(schema) > kMaxSchemaJsonBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": over 64 KiB as JSON"));
  }
  return CheckJsonSchema(field, schema);
}

absl::Status CheckDisplayName(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("eval_set.display_name: required");
  if (name.size() > 256) return absl::InvalidArgumentError("eval_set.display_name: over 256 bytes");
  return absl::OkStatus();
}

absl::Status CheckDescription(const std::string& description) {
  if (description.size() > 4096) {
    return absl::InvalidArgumentError("eval_set.description: over 4 KiB");
  }
  return absl::OkStatus();
}

absl::Status CheckEtag(const SetRecord& set, const std::string& etag) {
  if (!etag.empty() && etag != Etag(set.etag_seq)) {
    return absl::AbortedError("etag is stale: re-read the eval set and retry");
  }
  return absl::OkStatus();
}

// Resolves a ref inside a set's write transaction (tags may move concurrently otherwise).
absl::StatusOr<int64_t> ResolveInTx(SetWriteTx& tx, const v1::VersionRef* ref) {
  if (ref != nullptr && ref->ref_case() == v1::VersionRef::kNumber) {
    if (ref->number() < 1) return absl::InvalidArgumentError("version.number: must be >= 1");
    if (ref->number() > tx.set().latest_version) {
      return absl::NotFoundError("version: no such version");
    }
    return ref->number();
  }
  if (ref != nullptr && ref->ref_case() == v1::VersionRef::kTag) {
    RETURN_IF_ERROR(ValidateTagName("version.tag", ref->tag()));
    ASSIGN_OR_RETURN(std::optional<int64_t> tagged, tx.GetTag(ref->tag()));
    if (!tagged) return absl::NotFoundError("version.tag: no such tag");
    return *tagged;
  }
  if (ref != nullptr && ref->ref_case() == v1::VersionRef::kLatest && !ref->latest()) {
    return absl::InvalidArgumentError("version.latest: must be true when set");
  }
  if (tx.set().latest_version == 0) {
    return absl::FailedPreconditionError("the eval set has no versions yet");
  }
  return tx.set().latest_version;
}

}  // namespace

EvalSetLogic::EvalSetLogic(EvalSetRepository* repository, PreferencePairSource* pairs,
                           LogicOptions options)
    : repository_(repository),
      pairs_(pairs),
      options_(options),
      novelty_cache_(options.novelty_cache_cases) {}

absl::StatusOr<SetRecord> EvalSetLogic::LoadSet(const std::string& project,
                                                const std::string& eval_set_id) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", eval_set_id));
  return repository_->GetSet(project, eval_set_id);
}

absl::StatusOr<VersionRecord> EvalSetLogic::ResolveRef(const std::string& project,
                                                       const SetRecord& set,
                                                       const v1::VersionRef* ref) {
  int64_t number = 0;
  if (ref != nullptr && ref->ref_case() == v1::VersionRef::kNumber) {
    if (ref->number() < 1) return absl::InvalidArgumentError("version.number: must be >= 1");
    if (ref->number() > set.latest_version) {
      return absl::NotFoundError("version: no such version");
    }
    number = ref->number();
  } else if (ref != nullptr && ref->ref_case() == v1::VersionRef::kTag) {
    RETURN_IF_ERROR(ValidateTagName("version.tag", ref->tag()));
    absl::StatusOr<int64_t> tagged =
        repository_->GetTaggedVersion(project, set.eval_set_id, ref->tag());
    if (absl::IsNotFound(tagged.status())) return absl::NotFoundError("version.tag: no such tag");
    RETURN_IF_ERROR(tagged);
    number = *tagged;
  } else {
    if (ref != nullptr && ref->ref_case() == v1::VersionRef::kLatest && !ref->latest()) {
      return absl::InvalidArgumentError("version.latest: must be true when set");
    }
    if (set.latest_version == 0) {
      return absl::FailedPreconditionError("the eval set has no versions yet");
    }
    number = set.latest_version;
  }
  return repository_->GetVersion(project, set.eval_set_id, number);
}

absl::StatusOr<EvalSetLogic::Resolved> EvalSetLogic::Resolve(const std::string& project,
                                                             const std::string& eval_set_id,
                                                             const v1::VersionRef* ref) {
  ASSIGN_OR_RETURN(SetRecord set, LoadSet(project, eval_set_id));
  ASSIGN_OR_RETURN(VersionRecord version, ResolveRef(project, set, ref));
  return Resolved{std::move(set), std::move(version)};
}

absl::StatusOr<v1::CreateEvalSetResponse> EvalSetLogic::CreateEvalSet(
    const std::string& project, const v1::CreateEvalSetRequest& request) {
  const v1::EvalSet& in = request.eval_set();
  SetRecord record;
  if (in.eval_set_id().empty()) {
    record.eval_set_id = GenerateId();
  } else {
    RETURN_IF_ERROR(ValidateId("eval_set.eval_set_id", in.eval_set_id()));
    record.eval_set_id = in.eval_set_id();
  }
  RETURN_IF_ERROR(CheckDisplayName(in.display_name()));
  RETURN_IF_ERROR(CheckDescription(in.description()));
  record.display_name = in.display_name();
  record.description = in.description();
  if (in.has_input_schema()) {
    RETURN_IF_ERROR(CheckSchemaField("eval_set.input_schema", in.input_schema()));
    record.input_schema = DeterministicBytes(in.input_schema());
  }
  if (in.has_expected_output_schema()) {
    RETURN_IF_ERROR(
        CheckSchemaField("eval_set.expected_output_schema", in.expected_output_schema()));
    record.expected_output_schema = DeterministicBytes(in.expected_output_schema());
  }
  absl::StatusOr<SetRecord> inserted =
      repository_->InsertSet(project, record, options_.max_sets_per_project);
  v1::CreateEvalSetResponse response;
  if (inserted.ok()) {
    *response.mutable_eval_set() = SetToProto(*inserted);
    return response;
  }
  if (!absl::IsAlreadyExists(inserted.status())) return inserted.status();
  ASSIGN_OR_RETURN(SetRecord existing, repository_->GetSet(project, record.eval_set_id));
  if (existing.display_name != record.display_name || existing.description != record.description ||
      existing.input_schema != record.input_schema ||
      existing.expected_output_schema != record.expected_output_schema) {
    return absl::AlreadyExistsError(
        "eval_set.eval_set_id: an eval set with this id exists with different content");
  }
  *response.mutable_eval_set() = SetToProto(existing);
  return response;
}

absl::StatusOr<v1::GetEvalSetResponse> EvalSetLogic::GetEvalSet(
    const std::string& project, const v1::GetEvalSetRequest& request) {
  ASSIGN_OR_RETURN(SetRecord set, LoadSet(project, request.eval_set_id()));
  v1::GetEvalSetResponse response;
  *response.mutable_eval_set() = SetToProto(set);
  return response;
}

absl::StatusOr<v1::ListEvalSetsResponse> EvalSetLogic::ListEvalSets(
    const std::string& project, const v1::ListEvalSetsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size()));
  const std::string fingerprint = Fingerprint(absl::StrCat("archived=", request.show_archived()));
  std::string after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageToken token,
                     DecodePageToken(request.page_token(), "sets", fingerprint, now_()));
    if (token.position.size() != 1) return absl::InvalidArgumentError("page_token: malformed");
    after = token.position[0];
  }
  ASSIGN_OR_RETURN(std::vector<SetRecord> sets,
                   repository_->ListSets(project, after, request.show_archived(), page_size + 1));
  v1::ListEvalSetsResponse response;
  for (size_t i = 0; i < sets.size() && i < static_cast<size_t>(page_size); ++i) {
    *response.add_eval_sets() = SetToProto(sets[i]);
  }
  if (sets.size() > static_cast<size_t>(page_size)) {
    response.set_next_page_token(
        EncodePageToken("sets", fingerprint, {sets[page_size - 1].eval_set_id}, now_()));
  }
  return response;
}

absl::StatusOr<v1::UpdateEvalSetResponse> EvalSetLogic::UpdateEvalSet(
    const std::string& project, const v1::UpdateEvalSetRequest& request) {
  const v1::EvalSet& in = request.eval_set();
  RETURN_IF_ERROR(ValidateId("eval_set.eval_set_id", in.eval_set_id()));
  if (request.update_mask().paths_size() == 0) {
    return absl::InvalidArgumentError("update_mask: must name at least one field");
  }
  std::set<std::string> paths;
  for (const std::string& path : request.update_mask().paths()) {
    if (path != "display_name" && path != "description" && path != "input_schema" &&
        path != "expected_output_schema") {
      return absl::InvalidArgumentError(
          absl::StrCat("update_mask: path \"", path, "\" is unknown or not updatable"));
    }
    paths.insert(path);
  }
  if (paths.count("display_name")) RETURN_IF_ERROR(CheckDisplayName(in.display_name()));
  if (paths.count("description")) RETURN_IF_ERROR(CheckDescription(in.description()));
  if (paths.count("input_schema") && in.has_input_schema()) {
    RETURN_IF_ERROR(CheckSchemaField("eval_set.input_schema", in.input_schema()));
  }
  if (paths.count("expected_output_schema") && in.has_expected_output_schema()) {
    RETURN_IF_ERROR(
        CheckSchemaField("eval_set.expected_output_schema", in.expected_output_schema()));
  }
  v1::UpdateEvalSetResponse response;
  RETURN_IF_ERROR(repository_->WriteSet(project, in.eval_set_id(), [&](SetWriteTx& tx) {
    RETURN_IF_ERROR(CheckEtag(tx.set(), in.etag()));
    SetRecord updated = tx.set();
    if (paths.count("display_name")) updated.display_name = in.display_name();
    if (paths.count("description")) updated.description = in.description();
    if (paths.count("input_schema")) {
      updated.input_schema = in.has_input_schema()
                                 ? std::optional<std::string>(DeterministicBytes(in.input_schema()))
                                 : std::nullopt;
    }
    if (paths.count("expected_output_schema")) {
      updated.expected_output_schema =
          in.has_expected_output_schema()
              ? std::optional<std::string>(DeterministicBytes(in.expected_output_schema()))
              : std::nullopt;
    }
    const SetRecord& current = tx.set();
    const bool changed = updated.display_name != current.display_name ||
                         updated.description != current.description ||
                         updated.input_schema != current.input_schema ||
                         updated.expected_output_schema != current.expected_output_schema;
    if (changed) RETURN_IF_ERROR(tx.SaveSetFields(updated));
    *response.mutable_eval_set() = SetToProto(tx.set());
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::ArchiveEvalSetResponse> EvalSetLogic::ArchiveEvalSet(
    const std::string& project, const v1::ArchiveEvalSetRequest& request) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
  v1::ArchiveEvalSetResponse response;
  RETURN_IF_ERROR(repository_->WriteSet(project, request.eval_set_id(), [&](SetWriteTx& tx) {
    RETURN_IF_ERROR(CheckEtag(tx.set(), request.etag()));
    if (!tx.set().archived) {
      SetRecord updated = tx.set();
      updated.archived = true;
      RETURN_IF_ERROR(tx.SaveSetFields(updated));
    }
    *response.mutable_eval_set() = SetToProto(tx.set());
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::UnarchiveEvalSetResponse> EvalSetLogic::UnarchiveEvalSet(
    const std::string& project, const v1::UnarchiveEvalSetRequest& request) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
  v1::UnarchiveEvalSetResponse response;
  RETURN_IF_ERROR(repository_->WriteSet(project, request.eval_set_id(), [&](SetWriteTx& tx) {
    RETURN_IF_ERROR(CheckEtag(tx.set(), request.etag()));
    if (tx.set().archived) {
      SetRecord updated = tx.set();
      updated.archived = false;
      RETURN_IF_ERROR(tx.SaveSetFields(updated));
    }
    *response.mutable_eval_set() = SetToProto(tx.set());
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::GetVersionResponse> EvalSetLogic::GetVersion(
    const std::string& project, const v1::GetVersionRequest& request) {
  ASSIGN_OR_RETURN(Resolved resolved,
                   Resolve(project, request.eval_set_id(),
                           request.has_version() ? &request.version() : nullptr));
  v1::GetVersionResponse response;
  *response.mutable_version() = VersionToProto(resolved.version);
  return response;
}

absl::StatusOr<v1::ListVersionsResponse> EvalSetLogic::ListVersions(
    const std::string& project, const v1::ListVersionsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size()));
  ASSIGN_OR_RETURN(SetRecord set, LoadSet(project, request.eval_set_id()));
  const std::string fingerprint =
      Fingerprint(absl::StrCat("set=", request.eval_set_id(), ";tagged=", request.tagged_only()));
  int64_t before = 0;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageToken token,
                     DecodePageToken(request.page_token(), "versions", fingerprint, now_()));
    if (token.position.size() != 1 || !absl::SimpleAtoi(token.position[0], &before)) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
  }
  ASSIGN_OR_RETURN(std::vector<VersionRecord> versions,
                   repository_->ListVersions(project, set.eval_set_id, before,
                                             request.tagged_only(), page_size + 1));
  v1::ListVersionsResponse response;
  for (size_t i = 0; i < versions.size() && i < static_cast<size_t>(page_size); ++i) {
    *response.add_versions() = VersionToProto(versions[i]);
  }
  if (versions.size() > static_cast<size_t>(page_size)) {
    response.set_next_page_token(EncodePageToken(
        "versions", fingerprint, {absl::StrCat(versions[page_size - 1].version)}, now_()));
  }
  return response;
}

absl::StatusOr<v1::TagVersionResponse> EvalSetLogic::TagVersion(
    const std::string& project, const v1::TagVersionRequest& request) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
  RETURN_IF_ERROR(ValidateTagName("tag", request.tag()));
  v1::TagVersionResponse response;
  RETURN_IF_ERROR(repository_->WriteSet(project, request.eval_set_id(), [&](SetWriteTx& tx) {
    response.Clear();
    if (tx.set().archived) return absl::FailedPreconditionError("the eval set is archived");
    ASSIGN_OR_RETURN(int64_t target,
                     ResolveInTx(tx, request.has_version() ? &request.version() : nullptr));
    ASSIGN_OR_RETURN(std::optional<int64_t> current, tx.GetTag(request.tag()));
    if (request.has_expected_current_version() &&
        request.expected_current_version() != current.value_or(0)) {
      return absl::AbortedError("expected_current_version does not match the tag's version");
    }
    if (current != target) {
      if (!current.has_value()) {
        ASSIGN_OR_RETURN(int64_t tags, tx.CountTags());
        if (tags >= options_.max_tags_per_set) {
          return absl::ResourceExhaustedError(
              absl::StrCat("the eval set already has ", options_.max_tags_per_set, " tags"));
        }
      }
      RETURN_IF_ERROR(tx.PutTag(request.tag(), target));
    }
    ASSIGN_OR_RETURN(VersionRecord version, tx.GetVersion(target));
    *response.mutable_version() = VersionToProto(version);
    response.set_previous_version(current.value_or(0));
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::UntagVersionResponse> EvalSetLogic::UntagVersion(
    const std::string& project, const v1::UntagVersionRequest& request) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
  RETURN_IF_ERROR(ValidateTagName("tag", request.tag()));
  v1::UntagVersionResponse response;
  RETURN_IF_ERROR(repository_->WriteSet(project, request.eval_set_id(), [&](SetWriteTx& tx) {
    response.Clear();
    if (tx.set().archived) return absl::FailedPreconditionError("the eval set is archived");
    ASSIGN_OR_RETURN(std::optional<int64_t> current, tx.GetTag(request.tag()));
    if (!current.has_value()) {
      if (request.allow_missing()) return absl::OkStatus();
      return absl::NotFoundError("tag: no such tag");
    }
    RETURN_IF_ERROR(tx.DeleteTag(request.tag()));
    response.set_previous_version(*current);
    return absl::OkStatus();
  }));
  return response;
}

}  // namespace flywheel::evalset
