#pragma once

// Domain rules of the eval-set service: every RPC's semantics (evalset.proto is the reference)
// on top of an EvalSetRepository. Speaks the API's protobuf messages as data, returns
// absl::Status; knows nothing of gRPC or SQL. Thread-safe.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/capture/v1/capture.pb.h"
#include "flywheel/evalset/v1/evalset.pb.h"
#include "services/evalset/evalset_repository.h"
#include "services/evalset/novelty.h"

namespace flywheel::evalset {

// Capture's preference pairs, for DPO exports. Implemented over capture's gRPC API in the
// handler layer; `authorization` is the caller's metadata value, forwarded as is.
class PreferencePairSource {
 public:
  virtual ~PreferencePairSource() = default;
  // Every pair capture holds for the project of the key. UNAVAILABLE when capture cannot be
  // reached; FAILED_PRECONDITION when no capture service is configured.
  virtual absl::StatusOr<std::vector<flywheel::capture::v1::PreferencePair>> ListAllPairs(
      const std::string& authorization) = 0;
};

// A server stream as batches of messages: the handler writes each batch, then asks for the next
// (so at most one batch of rows is in memory per stream).
template <typename Message>
class MessageSource {
 public:
  virtual ~MessageSource() = default;
  // Appends the next messages to `out`; returns false once the stream is complete (the last
  // messages may come with false).
  virtual absl::StatusOr<bool> Next(std::vector<Message>* out) = 0;
};

struct LogicOptions {
  int64_t max_sets_per_project = 1000;
  int64_t max_live_cases_per_set = 100000;
  int64_t max_versions_per_set = 1000000;
  int64_t max_tags_per_set = 100;
  // Rows read per database round trip by streams and exports, and how many such pages are read
  // concurrently ahead of the one being sent (each holds a pool connection while it runs).
  int stream_fetch_rows = 2000;
  int stream_read_ahead = 2;
  // Embedded cases kept in memory for FindNearestCases.
  size_t novelty_cache_cases = 400000;
};

class EvalSetLogic {
 public:
  EvalSetLogic(EvalSetRepository* repository, PreferencePairSource* pairs,
               LogicOptions options = {});

  // ---- eval sets
  absl::StatusOr<v1::CreateEvalSetResponse> CreateEvalSet(const std::string& project,
                                                          const v1::CreateEvalSetRequest& request);
  absl::StatusOr<v1::GetEvalSetResponse> GetEvalSet(const std::string& project,
                                                    const v1::GetEvalSetRequest& request);
  absl::StatusOr<v1::ListEvalSetsResponse> ListEvalSets(const std::string& project,
                                                        const v1::ListEvalSetsRequest& request);
  absl::StatusOr<v1::UpdateEvalSetResponse> UpdateEvalSet(const std::string& project,
                                                          const v1::UpdateEvalSetRequest& request);
  absl::StatusOr<v1::ArchiveEvalSetResponse> ArchiveEvalSet(
      const std::string& project, const v1::ArchiveEvalSetRequest& request);
  absl::StatusOr<v1::UnarchiveEvalSetResponse> UnarchiveEvalSet(
      const std::string& project, const v1::UnarchiveEvalSetRequest& request);

  // ---- cases
  absl::StatusOr<v1::AddCasesResponse> AddCases(const std::string& project,
                                                const v1::AddCasesRequest& request);
  absl::StatusOr<v1::UpdateCaseResponse> UpdateCase(const std::string& project,
                                                    const v1::UpdateCaseRequest& request);
  absl::StatusOr<v1::RetireCasesResponse> RetireCases(const std::string& project,
                                                      const v1::RetireCasesRequest& request);
  absl::StatusOr<v1::GetCaseResponse> GetCase(const std::string& project,
                                              const v1::GetCaseRequest& request);
  absl::StatusOr<v1::ListCasesResponse> ListCases(const std::string& project,
                                                  const v1::ListCasesRequest& request);
  // The first batch holds the header message alone.
  absl::StatusOr<std::unique_ptr<MessageSource<v1::StreamCasesResponse>>> StreamCases(
      const std::string& project, const v1::StreamCasesRequest& request);

  // ---- versions and tags
  absl::StatusOr<v1::GetVersionResponse> GetVersion(const std::string& project,
                                                    const v1::GetVersionRequest& request);
  absl::StatusOr<v1::ListVersionsResponse> ListVersions(const std::string& project,
                                                        const v1::ListVersionsRequest& request);
  absl::StatusOr<v1::TagVersionResponse> TagVersion(const std::string& project,
                                                    const v1::TagVersionRequest& request);
  absl::StatusOr<v1::UntagVersionResponse> UntagVersion(const std::string& project,
                                                        const v1::UntagVersionRequest& request);

  // ---- runs and results
  absl::StatusOr<v1::CreateRunResponse> CreateRun(const std::string& project,
                                                  const v1::CreateRunRequest& request);
  absl::StatusOr<v1::RecordResultsResponse> RecordResults(const std::string& project,
                                                          const v1::RecordResultsRequest& request);
  absl::StatusOr<v1::CompleteRunResponse> CompleteRun(const std::string& project,
                                                      const v1::CompleteRunRequest& request);
  absl::StatusOr<v1::GetRunResponse> GetRun(const std::string& project,
                                            const v1::GetRunRequest& request);
  absl::StatusOr<v1::ListRunsResponse> ListRuns(const std::string& project,
                                                const v1::ListRunsRequest& request);
  absl::StatusOr<v1::ListResultsResponse> ListResults(const std::string& project,
                                                      const v1::ListResultsRequest& request);
  absl::StatusOr<v1::CompareRunsResponse> CompareRuns(const std::string& project,
                                                      const v1::CompareRunsRequest& request);

  // ---- export and novelty
  // `authorization` is forwarded to capture for DPO exports. The first batch holds the header.
  absl::StatusOr<std::unique_ptr<MessageSource<v1::ExportEvalSetResponse>>> ExportEvalSet(
      const std::string& project, const v1::ExportEvalSetRequest& request,
      const std::string& authorization);
  absl::StatusOr<v1::FindNearestCasesResponse> FindNearestCases(
      const std::string& project, const v1::FindNearestCasesRequest& request);

  // Test hook: the clock used for page-token issue and expiry.
  void SetClockForTesting(absl::Time (*now)()) { now_ = now; }

 private:
  // The set (NOT_FOUND in another project) and a resolved version of it.
  struct Resolved {
    SetRecord set;
    VersionRecord version;
  };
  absl::StatusOr<SetRecord> LoadSet(const std::string& project, const std::string& eval_set_id);
  absl::StatusOr<VersionRecord> ResolveRef(const std::string& project, const SetRecord& set,
                                           const v1::VersionRef* ref);
  absl::StatusOr<Resolved> Resolve(const std::string& project, const std::string& eval_set_id,
                                   const v1::VersionRef* ref);
  absl::StatusOr<RunRecord> LoadRun(const std::string& project, const std::string& run_id);
  absl::StatusOr<v1::Run> RunWithSummary(const std::string& project, const RunRecord& run,
                                         bool full);
  absl::StatusOr<std::shared_ptr<const CaseIndex>> NoveltyIndex(const std::string& project,
                                                                const SetRecord& set);

  EvalSetRepository* const repository_;
  PreferencePairSource* const pairs_;
  const LogicOptions options_;
  NoveltyCache novelty_cache_;
  absl::Time (*now_)() = &absl::Now;
};

}  // namespace flywheel::evalset
