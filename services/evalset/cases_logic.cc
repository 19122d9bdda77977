// Cases: adding, revising and retiring them (each change one new set version), and reading
// snapshots (get, list, stream).
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/evalset/case_content.h"
#include "services/evalset/evalset_logic.h"
#include "services/evalset/ids.h"
#include "services/evalset/logic_util.h"
#include "services/evalset/snapshot_pager.h"

namespace flywheel::evalset {
namespace {

constexpr int kMaxAddCases = 500;
constexpr int kMaxRetireCases = 1000;
constexpr size_t kMaxChangeNoteBytes = 1024;
// Responses and stream messages stay under the documented 4 MiB with room for framing.
constexpr size_t kMessageBudgetBytes = 3 * 1024 * 1024 + 512 * 1024;

absl::Status CheckExpectedVersion(const SetRecord& set, bool has, int64_t expected) {
  if (has && set.latest_version != expected) {
    return absl::AbortedError(absl::StrCat(
        "expected_version ", expected, " does not match the latest version ", set.latest_version));
  }
  return absl::OkStatus();
}

absl::Status CheckChangeNote(const std::string& note) {
  if (note.size() > kMaxChangeNoteBytes) {
    return absl::InvalidArgumentError("change_note: over 1 KiB");
  }
  return absl::OkStatus();
}

// What the call knows about a case id or key: stored, or accepted earlier in the same call.
struct KnownCase {
  std::string case_id;
  std::string case_key;
  std::string first_digest;
};

class CaseStreamSource : public MessageSource<v1::StreamCasesResponse> {
 public:
  CaseStreamSource(EvalSetRepository* repository, std::string project, std::string eval_set_id,
                   SnapshotQuery query, v1::StreamCasesResponse header, int per_message,
                   int fetch_rows, int read_ahead)
      : pager_(repository, std::move(project), std::move(eval_set_id), std::move(query), fetch_rows,
               read_ahead),
        header_(std::move(header)),
        per_message_(per_message) {}

  absl::StatusOr<bool> Next(std::vector<v1::StreamCasesResponse>* out) override {
    if (!header_sent_) {
      header_sent_ = true;
      out->push_back(header_);
      return header_.header().stream_case_count() > 0;
    }
    ASSIGN_OR_RETURN(std::vector<v1::Case> cases, pager_.NextPage());
    if (cases.empty()) return false;
    v1::StreamCasesResponse message;
    size_t bytes = 0;
    for (v1::Case& c : cases) {
      const size_t size = c.ByteSizeLong();
      if (message.cases_size() > 0 &&
          (message.cases_size() >= per_message_ || bytes + size > kMessageBudgetBytes)) {
        out->push_back(std::move(message));
        message = v1::StreamCasesResponse();
        bytes = 0;
      }
      bytes += size + 8;
      *message.add_cases() = std::move(c);
    }
    out->push_back(std::move(message));
    return true;
  }

 private:
  SnapshotPager pager_;
  const v1::StreamCasesResponse header_;
  const int per_message_;
  bool header_sent_ = false;
};

}  // namespace

absl::StatusOr<v1::AddCasesResponse> EvalSetLogic::AddCases(const std::string& project,
                                                            const v1::AddCasesRequest& request) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
  if (request.cases_size() < 1 || request.cases_size() > kMaxAddCases) {
    return absl::InvalidArgumentError("cases: 1..500 cases per call");
  }
  RETURN_IF_ERROR(CheckChangeNote(request.change_note()));
  v1::AddCasesResponse response;
  RETURN_IF_ERROR(repository_->WriteSet(project, request.eval_set_id(), [&](SetWriteTx& tx) {
    response.Clear();  // the transaction may be retried
    const SetRecord& set = tx.set();
    if (set.archived) return absl::FailedPreconditionError("the eval set is archived");
    RETURN_IF_ERROR(
        CheckExpectedVersion(set, request.has_expected_version(), request.expected_version()));
    const SetSchemas schemas = SchemasOf(set);

    struct Item {
      std::optional<FieldError> error;
      RevisionWrite revision;
      std::string case_key;
    };
    std::vector<Item> items(request.cases_size());
    std::vector<std::string> ids, keys;
    for (int i = 0; i < request.cases_size(); ++i) {
      const v1::Case& in = request.cases(i);
      Item& item = items[i];
      if (!in.case_id().empty() && !IsValidId(in.case_id())) {
        item.error = FieldError{absl::StatusCode::kInvalidArgument, "case_id",
                                "must be 1..128 bytes of [A-Za-z0-9._:-]"};
        continue;
      }
      if (!in.case_key().empty() && !IsValidId(in.case_key())) {
        item.error = FieldError{absl::StatusCode::kInvalidArgument, "case_key",
                                "must be 1..128 bytes of [A-Za-z0-9._:-]"};
        continue;
      }
      item.error = PrepareCaseContent(in, schemas, &item.revision.content);
      if (item.error) continue;
      item.revision.case_id = in.case_id();
      item.case_key = in.case_key();
      item.revision.content_digest = CaseContentDigest(item.revision.content);
      item.revision.input_text = CaseInputText(item.revision.content);
      if (!in.case_id().empty()) ids.push_back(in.case_id());
      if (!in.case_key().empty()) keys.push_back(in.case_key());
    }
    ASSIGN_OR_RETURN(std::vector<CaseIdentity> existing, tx.FindCases(ids, keys));
    std::map<std::string, KnownCase> by_id, by_key;
    for (const CaseIdentity& c : existing) {
      KnownCase known{c.case_id, c.case_key, c.first_content_digest};
      by_id[c.case_id] = known;
      if (!c.case_key.empty()) by_key[c.case_key] = known;
    }

    std::vector<const Item*> accepted;
    for (int i = 0; i < request.cases_size(); ++i) {
      Item& item = items[i];
      const std::string& requested_id = request.cases(i).case_id();
      if (item.error) {
        *response.add_results() = Rejected(i, requested_id, *item.error);
        continue;
      }
      const std::string& digest = item.revision.content_digest;
      if (!item.case_key.empty()) {
        if (auto it = by_key.find(item.case_key); it != by_key.end()) {
          const KnownCase& known = it->second;
          if ((requested_id.empty() || requested_id == known.case_id) &&
              digest == known.first_digest) {
            *response.add_results() = Duplicate(i, known.case_id);
          } else {
            *response.add_results() =
                Rejected(i, requested_id,
                         FieldError{absl::StatusCode::kAlreadyExists, "case_key",
                                    "a case with this key exists with different content or id"});
          }
          continue;
        }
        if (!requested_id.empty() && by_id.count(requested_id)) {
          *response.add_results() =
              Rejected(i, requested_id,
                       FieldError{absl::StatusCode::kAlreadyExists, "case_id",
                                  "the case id is taken by a case with another key"});
          continue;
        }
      } else if (!requested_id.empty()) {
        if (auto it = by_id.find(requested_id); it != by_id.end()) {
          const KnownCase& known = it->second;
          if (known.case_key.empty() && digest == known.first_digest) {
            *response.add_results() = Duplicate(i, known.case_id);
          } else {
            *response.add_results() = Rejected(
                i, requested_id,
                FieldError{absl::StatusCode::kAlreadyExists, "case_id",
                           "a case with this id exists with different content or a case_key"});
          }
          continue;
        }
      }
      if (item.revision.case_id.empty()) item.revision.case_id = GenerateId();
      KnownCase known{item.revision.case_id, item.case_key, digest};
      by_id[known.case_id] = known;
      if (!item.case_key.empty()) by_key[item.case_key] = known;
      accepted.push_back(&item);
      *response.add_results() = Accepted(i, item.revision.case_id);
    }

    if (accepted.empty()) {
      response.set_version(set.latest_version);
      response.set_version_created(false);
      return absl::OkStatus();
    }
    if (set.latest_version + 1 > options_.max_versions_per_set) {
      return absl::ResourceExhaustedError("the eval set has reached its maximum of versions");
    }
    ASSIGN_OR_RETURN(int64_t live, tx.LiveCaseCount());
    if (live + static_cast<int64_t>(accepted.size()) > options_.max_live_cases_per_set) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the eval set would exceed ", options_.max_live_cases_per_set, " live cases"));
    }
    const int64_t version = set.latest_version + 1;
    std::vector<NewCase> new_cases;
    new_cases.reserve(accepted.size());
    for (const Item* item : accepted) new_cases.push_back(NewCase{item->case_key, item->revision});
    RETURN_IF_ERROR(tx.InsertCases(new_cases, version));
    VersionRecord record;
    record.version = version;
    record.change_kind = v1::VERSION_CHANGE_KIND_ADD_CASES;
    record.added_count = static_cast<int64_t>(accepted.size());
    record.note = request.change_note();
    RETURN_IF_ERROR(tx.CreateVersion(record));
    response.set_version(version);
    response.set_version_created(true);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::UpdateCaseResponse> EvalSetLogic::UpdateCase(
    const std::string& project, const v1::UpdateCaseRequest& request) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
  const v1::Case& in = request.eval_case();
  RETURN_IF_ERROR(ValidateId("eval_case.case_id", in.case_id()));
  RETURN_IF_ERROR(CheckChangeNote(request.change_note()));
  if (request.update_mask().paths_size() == 0) {
    return absl::InvalidArgumentError("update_mask: must name at least one field");
  }
  static const std::set<std::string>* const kUpdatable = new std::set<std::string>{
      "input", "context", "expected_output", "assertions", "theme", "tags", "metadata"};
  std::set<std::string> paths;
  for (const std::string& path : request.update_mask().paths()) {
    if (!kUpdatable->count(path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("update_mask: path \"", path, "\" is unknown or not updatable"));
    }
    paths.insert(path);
  }
  v1::UpdateCaseResponse response;
  RETURN_IF_ERROR(repository_->WriteSet(project, request.eval_set_id(), [&](SetWriteTx& tx) {
    response.Clear();
    const SetRecord& set = tx.set();
    if (set.archived) return absl::FailedPreconditionError("the eval set is archived");
    RETURN_IF_ERROR(
        CheckExpectedVersion(set, request.has_expected_version(), request.expected_version()));
    ASSIGN_OR_RETURN(std::vector<CaseIdentity> found, tx.FindCases({in.case_id()}, {}));
    if (found.empty())
      return absl::NotFoundError(absl::StrCat("case ", in.case_id(), ": not found"));
    const CaseIdentity& identity = found[0];
    if (identity.retired_version != 0) {
      return absl::FailedPreconditionError(absl::StrCat("case ", in.case_id(), ": retired"));
    }
    ASSIGN_OR_RETURN(v1::Case current, tx.GetLatestCase(in.case_id()));
    v1::Case merged = current;
    if (paths.count("input")) *merged.mutable_input() = in.input();
    if (paths.count("context")) {
      if (in.has_context()) {
        *merged.mutable_context() = in.context();
      } else {
        merged.clear_context();
      }
    }
    if (paths.count("expected_output")) merged.set_expected_output(in.expected_output());
    if (paths.count("assertions")) *merged.mutable_assertions() = in.assertions();
    if (paths.count("theme")) {
      if (in.has_theme()) {
        *merged.mutable_theme() = in.theme();
      } else {
        merged.clear_theme();
      }
    }
    if (paths.count("tags")) *merged.mutable_tags() = in.tags();
    if (paths.count("metadata")) {
      if (in.has_metadata()) {
        *merged.mutable_metadata() = in.metadata();
      } else {
        merged.clear_metadata();
      }
    }
    RevisionWrite revision;
    if (auto error = PrepareCaseContent(merged, SchemasOf(set), &revision.content)) {
      return absl::Status(error->code, absl::StrCat("case ", in.case_id(), ": ", error->field, ": ",
                                                    error->reason));
    }
    revision.content_digest = CaseContentDigest(revision.content);
    if (revision.content_digest == current.content_digest()) {
      *response.mutable_eval_case() = current;
      response.set_version(set.latest_version);
      response.set_version_created(false);
      return absl::OkStatus();
    }
    if (set.latest_version + 1 > options_.max_versions_per_set) {
      return absl::ResourceExhaustedError("the eval set has reached its maximum of versions");
    }
    const int64_t version = set.latest_version + 1;
    revision.case_id = in.case_id();
    revision.revision = identity.revision_count + 1;
    revision.input_text = CaseInputText(revision.content);
    RETURN_IF_ERROR(tx.ReviseCase(revision, version));
    VersionRecord record;
    record.version = version;
    record.change_kind = v1::VERSION_CHANGE_KIND_UPDATE_CASE;
    record.updated_count = 1;
    record.note = request.change_note();
    RETURN_IF_ERROR(tx.CreateVersion(record));
    ASSIGN_OR_RETURN(*response.mutable_eval_case(), tx.GetLatestCase(in.case_id()));
    response.set_version(version);
    response.set_version_created(true);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::RetireCasesResponse> EvalSetLogic::RetireCases(
    const std::string& project, const v1::RetireCasesRequest& request) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
  if (request.case_ids_size() < 1 || request.case_ids_size() > kMaxRetireCases) {
    return absl::InvalidArgumentError("case_ids: 1..1000 ids per call");
  }
  RETURN_IF_ERROR(CheckChangeNote(request.change_note()));
  v1::RetireCasesResponse response;
  RETURN_IF_ERROR(repository_->WriteSet(project, request.eval_set_id(), [&](SetWriteTx& tx) {
    response.Clear();
    const SetRecord& set = tx.set();
    if (set.archived) return absl::FailedPreconditionError("the eval set is archived");
    RETURN_IF_ERROR(
        CheckExpectedVersion(set, request.has_expected_version(), request.expected_version()));
    std::vector<std::string> ids;
    for (const std::string& id : request.case_ids()) {
      if (IsValidId(id)) ids.push_back(id);
    }
    ASSIGN_OR_RETURN(std::vector<CaseIdentity> found, tx.FindCases(ids, {}));
    std::map<std::string, int64_t> retired_version;
    for (const CaseIdentity& c : found) retired_version[c.case_id] = c.retired_version;
    std::vector<std::string> to_retire;
    for (int i = 0; i < request.case_ids_size(); ++i) {
      const std::string& id = request.case_ids(i);
      if (!IsValidId(id)) {
        *response.add_results() =
            Rejected(i, id,
                     FieldError{absl::StatusCode::kInvalidArgument, "case_ids",
                                "must be 1..128 bytes of [A-Za-z0-9._:-]"});
        continue;
      }
      auto it = retired_version.find(id);
      if (it == retired_version.end()) {
        *response.add_results() =
            Rejected(i, id, FieldError{absl::StatusCode::kNotFound, "case_ids", "no such case"});
      } else if (it->second != 0) {
        *response.add_results() = Duplicate(i, id);
      } else {
        it->second = set.latest_version + 1;  // a repeat later in the call is a duplicate
        to_retire.push_back(id);
        *response.add_results() = Accepted(i, id);
      }
    }
    if (to_retire.empty()) {
      response.set_version(set.latest_version);
      return absl::OkStatus();
    }
    if (set.latest_version + 1 > options_.max_versions_per_set) {
      return absl::ResourceExhaustedError("the eval set has reached its maximum of versions");
    }
    const int64_t version = set.latest_version + 1;
    for (const std::string& id : to_retire) RETURN_IF_ERROR(tx.RetireCase(id, version));
    VersionRecord record;
    record.version = version;
    record.change_kind = v1::VERSION_CHANGE_KIND_RETIRE_CASES;
    record.retired_count = static_cast<int64_t>(to_retire.size());
    record.note = request.change_note();
    RETURN_IF_ERROR(tx.CreateVersion(record));
    response.set_version(version);
    response.set_version_created(true);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::GetCaseResponse> EvalSetLogic::GetCase(const std::string& project,
                                                          const v1::GetCaseRequest& request) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
  RETURN_IF_ERROR(ValidateId("case_id", request.case_id()));
  ASSIGN_OR_RETURN(Resolved resolved,
                   Resolve(project, request.eval_set_id(),
                           request.has_version() ? &request.version() : nullptr));
  ASSIGN_OR_RETURN(std::optional<v1::Case> found,
                   repository_->GetCaseAt(project, request.eval_set_id(), request.case_id(),
                                          resolved.version.version));
  if (!found) {
    return absl::NotFoundError(absl::StrCat("case ", request.case_id(), ": not live at version ",
                                            resolved.version.version));
  }
  v1::GetCaseResponse response;
  *response.mutable_eval_case() = std::move(*found);
  response.set_version(resolved.version.version);
  return response;
}

absl::StatusOr<v1::ListCasesResponse> EvalSetLogic::ListCases(const std::string& project,
                                                              const v1::ListCasesRequest& request) {
  ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size()));
  ASSIGN_OR_RETURN(SnapshotQuery query, FilterToQuery(request.filter()));
  ASSIGN_OR_RETURN(SetRecord set, LoadSet(project, request.eval_set_id()));
  const std::string fingerprint =
      Fingerprint(absl::StrCat("set=", set.eval_set_id, ";", FilterCanonical(query)));
  if (request.page_token().empty()) {
    ASSIGN_OR_RETURN(
        VersionRecord version,
        ResolveRef(project, set, request.has_version() ? &request.version() : nullptr));
    query.version = version.version;
  } else {
    ASSIGN_OR_RETURN(PageToken token,
                     DecodePageToken(request.page_token(), "cases", fingerprint, now_()));
    if (token.position.size() != 2 || !absl::SimpleAtoi(token.position[0], &query.version) ||
        query.version < 1 || query.version > set.latest_version) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    query.after_case_id = token.position[1];
  }
  SnapshotQuery count_query = query;
  count_query.after_case_id.clear();
  ASSIGN_OR_RETURN(int64_t total, repository_->CountCasesAt(project, set.eval_set_id, count_query));
  ASSIGN_OR_RETURN(std::vector<v1::Case> cases,
                   repository_->ListCasesAt(project, set.eval_set_id, query, page_size + 1));
  v1::ListCasesResponse response;
  response.set_version(query.version);
  response.set_total_size(total);
  size_t bytes = 0;
  bool cut = false;
  for (size_t i = 0; i < cases.size() && i < static_cast<size_t>(page_size); ++i) {
    const size_t size = cases[i].ByteSizeLong() + 8;
    if (response.cases_size() > 0 && bytes + size > kMessageBudgetBytes) {
      cut = true;
      break;
    }
    bytes += size;
    *response.add_cases() = std::move(cases[i]);
  }
  if (cut || cases.size() > static_cast<size_t>(page_size)) {
    response.set_next_page_token(EncodePageToken(
        "cases", fingerprint,
        {absl::StrCat(query.version), response.cases(response.cases_size() - 1).case_id()},
        now_()));
  }
  return response;
}

absl::StatusOr<std::unique_ptr<MessageSource<v1::StreamCasesResponse>>> EvalSetLogic::StreamCases(
    const std::string& project, const v1::StreamCasesRequest& request) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
  int per_message = request.max_cases_per_message();
  if (per_message == 0) per_message = 100;
  if (per_message < 1 || per_message > 1000) {
    return absl::InvalidArgumentError("max_cases_per_message: must be in 1..1000");
  }
  if (!request.after_case_id().empty()) {
    RETURN_IF_ERROR(ValidateId("after_case_id", request.after_case_id()));
  }
  ASSIGN_OR_RETURN(SnapshotQuery query, FilterToQuery(request.filter()));
  ASSIGN_OR_RETURN(Resolved resolved,
                   Resolve(project, request.eval_set_id(),
                           request.has_version() ? &request.version() : nullptr));
  query.version = resolved.version.version;
  query.after_case_id = request.after_case_id();
  v1::StreamCasesResponse header;
  *header.mutable_header()->mutable_version() = VersionToProto(resolved.version);
  header.mutable_header()->set_case_count(resolved.version.case_count);
  if (query.theme_ids.empty() && query.tags.empty() && query.after_case_id.empty()) {
    header.mutable_header()->set_stream_case_count(resolved.version.case_count);
  } else {
    ASSIGN_OR_RETURN(int64_t count,
                     repository_->CountCasesAt(project, request.eval_set_id(), query));
    header.mutable_header()->set_stream_case_count(count);
  }
  return std::make_unique<CaseStreamSource>(repository_, project, request.eval_set_id(),
                                            std::move(query), std::move(header), per_message,
                                            options_.stream_fetch_rows, options_.stream_read_ahead);
}

}  // namespace flywheel::evalset
