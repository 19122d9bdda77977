// Runs, their per-case results and summaries, and run comparison.
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/evalset/case_content.h"
#include "services/evalset/comparison.h"
#include "services/evalset/evalset_logic.h"
#include "services/evalset/ids.h"
#include "services/evalset/logic_util.h"
#include "services/evalset/run_summary.h"

namespace flywheel::evalset {
namespace {

constexpr int kMaxResultsPerCall = 1000;
constexpr size_t kMaxFailureReasonBytes = 1024;

v1::Run RunToProto(const RunRecord& run) {
  v1::Run out;
  out.set_run_id(run.run_id);
  out.set_eval_set_id(run.eval_set_id);
  out.set_version(run.version);
  out.set_requested_version_ref(run.requested_ref);
  out.set_candidate_label(run.candidate_label);
  if (auto metadata = ParseStruct(run.metadata)) *out.mutable_metadata() = *metadata;
  out.set_state(run.state);
  out.set_failure_reason(run.failure_reason);
  *out.mutable_create_time() = ToProtoTime(run.create_time);
  if (run.complete_time) *out.mutable_complete_time() = ToProtoTime(*run.complete_time);
  return out;
}

bool SameRunRequest(const RunRecord& existing, const RunRecord& wanted) {
  return existing.eval_set_id == wanted.eval_set_id &&
         existing.requested_ref == wanted.requested_ref &&
         existing.candidate_label == wanted.candidate_label && existing.metadata == wanted.metadata;
}

FieldError Error(absl::StatusCode code, std::string field, std::string reason) {
  return FieldError{code, std::move(field), std::move(reason)};
}

}  // namespace

absl::StatusOr<RunRecord> EvalSetLogic::LoadRun(const std::string& project,
                                                const std::string& run_id) {
  RETURN_IF_ERROR(ValidateId("run_id", run_id));
  return repository_->GetRun(project, run_id);
}

absl::StatusOr<v1::Run> EvalSetLogic::RunWithSummary(const std::string& project,
                                                     const RunRecord& run, bool full) {
  v1::Run out = RunToProto(run);
  if (run.summary.has_value()) {
    out.mutable_summary()->ParseFromString(*run.summary);
  } else {
    // A running run's summary is computed at read time.
    ASSIGN_OR_RETURN(std::vector<ThemeCount> themes,
                     repository_->ThemeCountsAt(project, run.eval_set_id, run.version));
    ASSIGN_OR_RETURN(std::vector<ResultFacts> results,
                     repository_->RunResults(project, run.run_id));
    *out.mutable_summary() = ComputeRunSummary(themes, results, full);
  }
  if (!full) out.mutable_summary()->clear_themes();
  return out;
}

absl::StatusOr<v1::CreateRunResponse> EvalSetLogic::CreateRun(const std::string& project,
                                                              const v1::CreateRunRequest& request) {
  const v1::Run& in = request.run();
  RunRecord wanted;
  const bool client_id = !in.run_id().empty();
  if (client_id) {
    RETURN_IF_ERROR(ValidateId("run.run_id", in.run_id()));
    wanted.run_id = in.run_id();
  } else {
    wanted.run_id = GenerateId();
  }
  RETURN_IF_ERROR(ValidateId("run.eval_set_id", in.eval_set_id()));
  if (in.candidate_label().empty() || in.candidate_label().size() > 256) {
    return absl::InvalidArgumentError("run.candidate_label: required, 1..256 bytes");
  }
  if (in.has_metadata()) {
    if (JsonSize(in.metadata()) > kMaxMetadataJsonBytes) {
      return absl::InvalidArgumentError("run.metadata: over 16 KiB as JSON");
    }
    wanted.metadata = DeterministicBytes(in.metadata());
  }
  const v1::VersionRef* ref = request.has_version() ? &request.version() : nullptr;
  if (ref != nullptr && ref->ref_case() == v1::VersionRef::kLatest && !ref->latest()) {
    return absl::InvalidArgumentError("version.latest: must be true when set");
  }
  wanted.eval_set_id = in.eval_set_id();
  wanted.candidate_label = in.candidate_label();
  wanted.requested_ref = RefText(ref);

  auto existing_or_conflict = [&]() -> absl::StatusOr<v1::CreateRunResponse> {
    ASSIGN_OR_RETURN(RunRecord existing, repository_->GetRun(project, wanted.run_id));
    if (!SameRunRequest(existing, wanted)) {
      return absl::AlreadyExistsError("run.run_id: a run with this id exists with other content");
    }
    v1::CreateRunResponse response;
    ASSIGN_OR_RETURN(*response.mutable_run(), RunWithSummary(project, existing, true));
    return response;
  };
  if (client_id) {
    absl::StatusOr<v1::CreateRunResponse> repeat = existing_or_conflict();
    if (!absl::IsNotFound(repeat.status())) return repeat;
  }
  ASSIGN_OR_RETURN(SetRecord set, LoadSet(project, in.eval_set_id()));
  if (set.archived) return absl::FailedPreconditionError("the eval set is archived");
  ASSIGN_OR_RETURN(VersionRecord version, ResolveRef(project, set, ref));
  wanted.version = version.version;
  wanted.state = v1::RUN_STATE_RUNNING;
  absl::Status inserted = repository_->InsertRun(project, wanted);
  if (absl::IsAlreadyExists(inserted) && client_id) return existing_or_conflict();
  RETURN_IF_ERROR(inserted);
  ASSIGN_OR_RETURN(RunRecord stored, repository_->GetRun(project, wanted.run_id));
  v1::CreateRunResponse response;
  ASSIGN_OR_RETURN(*response.mutable_run(), RunWithSummary(project, stored, true));
  return response;
}

absl::StatusOr<v1::RecordResultsResponse> EvalSetLogic::RecordResults(
    const std::string& project, const v1::RecordResultsRequest& request) {
  RETURN_IF_ERROR(ValidateId("run_id", request.run_id()));
  if (request.results_size() < 1 || request.results_size() > kMaxResultsPerCall) {
    return absl::InvalidArgumentError("results: 1..1000 results per call");
  }
  struct Item {
    std::optional<FieldError> error;
    ResultWrite write;
  };
  std::vector<Item> items(request.results_size());
  std::vector<std::string> ids;
  for (int i = 0; i < request.results_size(); ++i) {
    Item& item = items[i];
    item.error = PrepareResultContent(request.results(i), &item.write.content);
    if (item.error) continue;
    item.write.case_id = item.write.content.case_id();
    item.write.content_digest = ResultContentDigest(item.write.content);
    ids.push_back(item.write.case_id);
  }
  v1::RecordResultsResponse response;
  RETURN_IF_ERROR(
      repository_->WriteRun(project, request.run_id(), /*exclusive=*/false, [&](RunWriteTx& tx) {
        response.Clear();
        const bool running = tx.run().state == v1::RUN_STATE_RUNNING;
        ASSIGN_OR_RETURN(auto pinned, tx.PinnedCases(ids));
        ASSIGN_OR_RETURN(auto digests, tx.ResultDigests(ids));
        for (int i = 0; i < request.results_size(); ++i) {
          Item& item = items[i];
          const std::string& id = request.results(i).case_id();
          if (item.error) {
            *response.add_results() = Rejected(i, id, *item.error);
            continue;
          }
          auto pin = pinned.find(id);
          if (pin == pinned.end()) {
            *response.add_results() =
                Rejected(i, id,
                         Error(absl::StatusCode::kInvalidArgument, "case_id",
                               absl::StrCat("not live in the run's version ", tx.run().version)));
            continue;
          }
          auto existing = digests.find(id);
          if (existing != digests.end() && existing->second == item.write.content_digest) {
            *response.add_results() = Duplicate(i, id);
            continue;
          }
          if (!running) {
            *response.add_results() = Rejected(
                i, id, Error(absl::StatusCode::kFailedPrecondition, "", "the run is finished"));
            continue;
          }
          if (existing != digests.end() && !request.overwrite()) {
            *response.add_results() =
                Rejected(i, id,
                         Error(absl::StatusCode::kAlreadyExists, "case_id",
                               "a different result for this case exists (set overwrite)"));
            continue;
          }
          item.write.pinned = pin->second;
          if (existing != digests.end()) {
            item.write.replaces_digest = existing->second;
          } else {
            item.write.replaces_digest.reset();
          }
          RETURN_IF_ERROR(tx.UpsertResult(item.write));
          digests[id] = item.write.content_digest;
          *response.add_results() = Accepted(i, id);
        }
        return absl::OkStatus();
      }));
  return response;
}

absl::StatusOr<v1::CompleteRunResponse> EvalSetLogic::CompleteRun(
    const std::string& project, const v1::CompleteRunRequest& request) {
  RETURN_IF_ERROR(ValidateId("run_id", request.run_id()));
  if (request.state() != v1::RUN_STATE_COMPLETED && request.state() != v1::RUN_STATE_FAILED) {
    return absl::InvalidArgumentError("state: must be RUN_STATE_COMPLETED or RUN_STATE_FAILED");
  }
  if (request.failure_reason().size() > kMaxFailureReasonBytes) {
    return absl::InvalidArgumentError("failure_reason: over 1 KiB");
  }
  if (request.state() == v1::RUN_STATE_COMPLETED && !request.failure_reason().empty()) {
    return absl::InvalidArgumentError("failure_reason: must be empty for RUN_STATE_COMPLETED");
  }
  RETURN_IF_ERROR(
      repository_->WriteRun(project, request.run_id(), /*exclusive=*/true, [&](RunWriteTx& tx) {
        const RunRecord& run = tx.run();
        if (run.state == request.state()) return absl::OkStatus();  // repeat: unchanged
        if (run.state != v1::RUN_STATE_RUNNING) {
          return absl::FailedPreconditionError("the run already finished with the other state");
        }
        ASSIGN_OR_RETURN(std::vector<ThemeCount> themes, tx.PinnedThemeCounts());
        ASSIGN_OR_RETURN(std::vector<ResultFacts> results, tx.AllResults());
        const v1::RunSummary summary = ComputeRunSummary(themes, results, /*full=*/true);
        if (request.require_all_results() && request.state() == v1::RUN_STATE_COMPLETED &&
            summary.overall().missing_count() > 0) {
          return absl::FailedPreconditionError(absl::StrCat(
              summary.overall().missing_count(), " cases have no result (require_all_results)"));
        }
        return tx.FinishRun(request.state(), request.failure_reason(), DeterministicBytes(summary));
      }));
  ASSIGN_OR_RETURN(RunRecord run, repository_->GetRun(project, request.run_id()));
  v1::CompleteRunResponse response;
  ASSIGN_OR_RETURN(*response.mutable_run(), RunWithSummary(project, run, true));
  return response;
}

absl::StatusOr<v1::GetRunResponse> EvalSetLogic::GetRun(const std::string& project,
                                                        const v1::GetRunRequest& request) {
  ASSIGN_OR_RETURN(RunRecord run, LoadRun(project, request.run_id()));
  v1::GetRunResponse response;
  ASSIGN_OR_RETURN(*response.mutable_run(), RunWithSummary(project, run, true));
  return response;
}

absl::StatusOr<v1::ListRunsResponse> EvalSetLogic::ListRuns(const std::string& project,
                                                            const v1::ListRunsRequest& request) {
  const bool full = request.view() == v1::RUN_VIEW_FULL;
  ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size(), full ? 100 : 1000));
  RunQuery query;
  if (!request.eval_set_id().empty()) {
    RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
    query.eval_set_id = request.eval_set_id();
  }
  if (request.candidate_label().size() > 256) {
    return absl::InvalidArgumentError("candidate_label: over 256 bytes");
  }
  query.candidate_label = request.candidate_label();
  std::string states;
  for (int i = 0; i < request.states_size(); ++i) {
    const auto state = static_cast<v1::RunState>(request.states(i));
    if (state == v1::RUN_STATE_UNSPECIFIED || !v1::RunState_IsValid(state)) {
      return absl::InvalidArgumentError(absl::StrCat("states[", i, "]: unknown state"));
    }
    query.states.push_back(state);
    absl::StrAppend(&states, state, ",");
  }
  if (request.has_create_time()) {
    if (request.create_time().has_start_time()) {
      query.created_from = FromProtoTime(request.create_time().start_time());
    }
    if (request.create_time().has_end_time()) {
      query.created_before = FromProtoTime(request.create_time().end_time());
    }
    if (query.created_from && query.created_before && *query.created_from > *query.created_before) {
      return absl::InvalidArgumentError("create_time: start_time after end_time");
    }
  }
  const std::string fingerprint = Fingerprint(absl::StrCat(
      "set=", query.eval_set_id, ";label=", query.candidate_label, ";states=", states,
      ";from=", query.created_from ? absl::ToUnixMicros(*query.created_from) : -1,
      ";before=", query.created_before ? absl::ToUnixMicros(*query.created_before) : -1));
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageToken token,
                     DecodePageToken(request.page_token(), "runs", fingerprint, now_()));
    int64_t micros = 0;
    if (token.position.size() != 2 || !absl::SimpleAtoi(token.position[0], &micros)) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    query.after = std::make_pair(absl::FromUnixMicros(micros), token.position[1]);
  }
  ASSIGN_OR_RETURN(std::vector<RunRecord> runs,
                   repository_->ListRuns(project, query, page_size + 1));
  v1::ListRunsResponse response;
  for (size_t i = 0; i < runs.size() && i < static_cast<size_t>(page_size); ++i) {
    ASSIGN_OR_RETURN(*response.add_runs(), RunWithSummary(project, runs[i], full));
  }
  if (runs.size() > static_cast<size_t>(page_size)) {
    const RunRecord& last = runs[page_size - 1];
    response.set_next_page_token(
        EncodePageToken("runs", fingerprint,
                        {absl::StrCat(absl::ToUnixMicros(last.create_time)), last.run_id}, now_()));
  }
  return response;
}

absl::StatusOr<v1::ListResultsResponse> EvalSetLogic::ListResults(
    const std::string& project, const v1::ListResultsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size()));
  ResultQuery query;
  std::string canonical = absl::StrCat("run=", request.run_id(), ";verdicts=");
  for (int i = 0; i < request.verdicts_size(); ++i) {
    const auto verdict = static_cast<v1::Verdict>(request.verdicts(i));
    if (verdict == v1::VERDICT_UNSPECIFIED || !v1::Verdict_IsValid(verdict)) {
      return absl::InvalidArgumentError(absl::StrCat("verdicts[", i, "]: unknown verdict"));
    }
    query.verdicts.push_back(verdict);
    absl::StrAppend(&canonical, verdict, ",");
  }
  canonical += ";themes=";
  if (request.theme_ids_size() > 100) return absl::InvalidArgumentError("theme_ids: at most 100");
  for (int i = 0; i < request.theme_ids_size(); ++i) {
    if (!IsValidId(request.theme_ids(i))) {
      return absl::InvalidArgumentError(absl::StrCat("theme_ids[", i, "]: malformed id"));
    }
    query.theme_ids.push_back(request.theme_ids(i));
    absl::StrAppend(&canonical, request.theme_ids(i), ",");
  }
  if (request.has_score()) {
    if (request.score().has_min()) query.min_score = request.score().min();
    if (request.score().has_max()) query.max_score = request.score().max();
    if (query.min_score && query.max_score && *query.min_score > *query.max_score) {
      return absl::InvalidArgumentError("score: min is above max");
    }
  }
  absl::StrAppend(&canonical, ";min=", query.min_score.value_or(-1),
                  ";max=", query.max_score.value_or(-1), ";hasmin=", query.min_score.has_value(),
                  ";hasmax=", query.max_score.has_value());
  const std::string fingerprint = Fingerprint(canonical);
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageToken token,
                     DecodePageToken(request.page_token(), "results", fingerprint, now_()));
    if (token.position.size() != 1) return absl::InvalidArgumentError("page_token: malformed");
    query.after_case_id = token.position[0];
  }
  ASSIGN_OR_RETURN(RunRecord run, LoadRun(project, request.run_id()));
  ASSIGN_OR_RETURN(std::vector<v1::CaseResult> results,
                   repository_->ListResults(project, run.run_id, query, page_size + 1));
  v1::ListResultsResponse response;
  for (size_t i = 0; i < results.size() && i < static_cast<size_t>(page_size); ++i) {
    *response.add_results() = std::move(results[i]);
  }
  if (results.size() > static_cast<size_t>(page_size)) {
    response.set_next_page_token(EncodePageToken(
        "results", fingerprint, {response.results(page_size - 1).case_id()}, now_()));
  }
  return response;
}

absl::StatusOr<v1::CompareRunsResponse> EvalSetLogic::CompareRuns(
    const std::string& project, const v1::CompareRunsRequest& request) {
  RETURN_IF_ERROR(ValidateId("baseline_run_id", request.baseline_run_id()));
  RETURN_IF_ERROR(ValidateId("candidate_run_id", request.candidate_run_id()));
  if (request.baseline_run_id() == request.candidate_run_id()) {
    return absl::InvalidArgumentError("candidate_run_id: must differ from baseline_run_id");
  }
  CompareOptions options;
  if (request.max_listed_cases() < 0 || request.max_listed_cases() > 1000) {
    return absl::InvalidArgumentError("max_listed_cases: must be in 0..1000");
  }
  if (request.max_listed_cases() > 0) options.max_listed_cases = request.max_listed_cases();
  int snippet_chars = request.snippet_chars() == 0 ? 200 : request.snippet_chars();
  if (snippet_chars < 1 || snippet_chars > 2000) {
    return absl::InvalidArgumentError("snippet_chars: must be in 1..2000");
  }
  if (request.has_release_notes_min_delta_points()) {
    const double d = request.release_notes_min_delta_points();
    if (!(d >= 0 && d <= 100)) {
      return absl::InvalidArgumentError("release_notes_min_delta_points: must be in 0..100");
    }
    options.release_notes_min_delta_points = d;
  }
  if (request.has_release_notes_min_cases()) {
    const int n = request.release_notes_min_cases();
    if (n < 1 || n > 100000) {
      return absl::InvalidArgumentError("release_notes_min_cases: must be in 1..100000");
    }
    options.release_notes_min_cases = n;
  }
  ASSIGN_OR_RETURN(RunRecord baseline, repository_->GetRun(project, request.baseline_run_id()));
  ASSIGN_OR_RETURN(RunRecord candidate, repository_->GetRun(project, request.candidate_run_id()));
  if (baseline.eval_set_id != candidate.eval_set_id) {
    return absl::FailedPreconditionError("the runs belong to different eval sets");
  }
  if (!request.allow_incomplete() &&
      (baseline.state != v1::RUN_STATE_COMPLETED || candidate.state != v1::RUN_STATE_COMPLETED)) {
    return absl::FailedPreconditionError("both runs must be COMPLETED (or set allow_incomplete)");
  }
  ASSIGN_OR_RETURN(std::vector<ResultFacts> baseline_results,
                   repository_->RunResults(project, baseline.run_id));
  ASSIGN_OR_RETURN(std::vector<ResultFacts> candidate_results,
                   repository_->RunResults(project, candidate.run_id));
  v1::CompareRunsResponse response =
      CompareResults({&baseline, &baseline_results}, {&candidate, &candidate_results}, options);

  // Snippets of the listed cases.
  std::vector<std::string> listed;
  for (const auto& c : response.regressions()) listed.push_back(c.case_id());
  for (const auto& c : response.fixes()) listed.push_back(c.case_id());
  if (!listed.empty()) {
    ASSIGN_OR_RETURN(auto inputs, repository_->InputTextsAt(project, candidate.eval_set_id,
                                                            candidate.version, listed));
    ASSIGN_OR_RETURN(auto base_out, repository_->ResultsFor(project, baseline.run_id, listed));
    ASSIGN_OR_RETURN(auto cand_out, repository_->ResultsFor(project, candidate.run_id, listed));
    auto output_of = [&](const std::map<std::string, v1::CaseResult>& results,
                         const std::string& id) {
      auto it = results.find(id);
      if (it == results.end()) return std::string();
      const v1::CaseResult& r = it->second;
      return Snippet(r.verdict() == v1::VERDICT_ERROR ? r.error() : r.output_text(),
                     static_cast<size_t>(snippet_chars));
    };
    for (auto* list : {response.mutable_regressions(), response.mutable_fixes()}) {
      for (v1::CaseChange& change : *list) {
        change.set_input_snippet(Snippet(inputs[change.case_id()], snippet_chars));
        change.set_candidate_output_snippet(output_of(cand_out, change.case_id()));
        change.set_baseline_output_snippet(output_of(base_out, change.case_id()));
      }
    }
  }
  ASSIGN_OR_RETURN(SetRecord set, repository_->GetSet(project, candidate.eval_set_id));
  response.set_release_notes(WriteReleaseNotes(response, set.display_name, options));
  return response;
}

}  // namespace flywheel::evalset
