#pragma once

// The storage interface of the eval-set service and its domain types. The logic layer holds
// every rule (idempotency, limits, versioning); a repository only stores and reads, so the
// rules can be tested against any implementation. Case and result content travel as the API's
// protobuf messages (the logic layer already speaks them), everything else as plain structs.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/evalset/v1/evalset.pb.h"

namespace flywheel::evalset {

namespace v1 = ::flywheel::evalset::v1;

struct SetRecord {
  std::string eval_set_id;
  std::string display_name;
  std::string description;
  // Deterministically serialized google.protobuf.Struct; nullopt = no schema.
  std::optional<std::string> input_schema;
  std::optional<std::string> expected_output_schema;
  bool archived = false;
  int64_t latest_version = 0;
  int64_t case_count = 0;
  int64_t etag_seq = 1;
  absl::Time create_time;
  absl::Time update_time;
  std::optional<absl::Time> archive_time;
};

struct VersionRecord {
  std::string eval_set_id;
  int64_t version = 0;
  absl::Time create_time;
  v1::VersionChangeKind change_kind = v1::VERSION_CHANGE_KIND_UNSPECIFIED;
  int64_t added_count = 0;
  int64_t updated_count = 0;
  int64_t retired_count = 0;
  std::string note;
  int64_t case_count = 0;
  std::string content_digest;
  // Ascending.
  std::vector<std::string> tags;
};

// How a snapshot read is narrowed. Empty vectors do not filter.
struct SnapshotQuery {
  int64_t version = 0;
  std::vector<std::string> theme_ids;  // OR
  std::vector<std::string> tags;       // AND
  std::string after_case_id;           // exclusive, bytewise
  std::string through_case_id;         // inclusive upper bound; empty = none
};

// What identifies a stored case (never changes except retirement and revision count).
struct CaseIdentity {
  std::string case_id;
  std::string case_key;  // empty = none
  int64_t added_version = 0;
  int64_t retired_version = 0;  // 0 = live
  int32_t revision_count = 0;
  std::string first_content_digest;
};

// One revision to write. `content` holds only the content fields of a Case.
struct RevisionWrite {
  std::string case_id;
  int32_t revision = 1;
  v1::Case content;
  std::string content_digest;
  std::string input_text;
};

struct NewCase {
  std::string case_key;  // empty = none
  RevisionWrite revision;
};

struct RunRecord {
  std::string run_id;
  std::string eval_set_id;
  int64_t version = 0;
  std::string requested_ref;
  std::string candidate_label;
  std::optional<std::string> metadata;  // serialized Struct
  v1::RunState state = v1::RUN_STATE_RUNNING;
  std::string failure_reason;
  absl::Time create_time;
  std::optional<absl::Time> complete_time;
  std::optional<std::string> summary;  // serialized RunSummary, frozen at completion
};

// A case as a run sees it: its revision and theme in the run's pinned version.
struct PinnedCase {
  int32_t revision = 0;
  std::string theme_id;
  std::string theme_name;
};

// What summaries and comparisons need of one result.
struct ResultFacts {
  std::string case_id;
  v1::Verdict verdict = v1::VERDICT_UNSPECIFIED;
  std::optional<double> score;
  std::optional<int64_t> latency_us;
  std::optional<int64_t> cost_micros;
  int32_t case_revision = 0;
  std::string theme_id;
  std::string theme_name;
};

struct ResultWrite {
  std::string case_id;
  v1::CaseResult content;  // only caller-sent fields
  std::string content_digest;
  PinnedCase pinned;
  // nullopt: a first result (ABORTED if one appeared concurrently). Otherwise the digest of the
  // result being replaced (ABORTED if it changed concurrently).
  std::optional<std::string> replaces_digest;
};

struct ThemeCount {
  std::string theme_id;
  std::string theme_name;
  int64_t case_count = 0;
};

struct ResultQuery {
  std::vector<v1::Verdict> verdicts;
  std::vector<std::string> theme_ids;
  std::optional<double> min_score;
  std::optional<double> max_score;
  std::string after_case_id;
};

struct RunQuery {
  std::string eval_set_id;
  std::string candidate_label;
  std::vector<v1::RunState> states;
  std::optional<absl::Time> created_from;    // inclusive
  std::optional<absl::Time> created_before;  // exclusive
  // Keyset position: strictly after (create_time, run_id) in newest-first order.
  std::optional<std::pair<absl::Time, std::string>> after;
};

// A live case's text for novelty search.
struct CaseText {
  std::string eval_set_id;
  std::string case_id;
  std::string theme_id;
  std::string theme_name;
  std::string input_text;
};

// Operations inside one transaction that holds the write lock of one eval set (writers of a set
// are serialized). The transaction may be retried from the start, so callers must rebuild any
// output on every attempt.
class SetWriteTx {
 public:
  virtual ~SetWriteTx() = default;
  virtual const SetRecord& set() const = 0;
  // Saves the set's own fields (display name, description, schemas, archived) and bumps etag.
  virtual absl::Status SaveSetFields(const SetRecord& set) = 0;
  // Cases whose id is in `case_ids` or whose key is in `case_keys`.
  virtual absl::StatusOr<std::vector<CaseIdentity>> FindCases(
      const std::vector<std::string>& case_ids, const std::vector<std::string>& case_keys) = 0;
  // The live revision of a case in the latest version, with output fields; NOT_FOUND if none.
  virtual absl::StatusOr<v1::Case> GetLatestCase(const std::string& case_id) = 0;
  // Adds cases (revision 1 of each) live from `version`, in one round trip.
  virtual absl::Status InsertCases(const std::vector<NewCase>& cases, int64_t version) = 0;
  // Ends the live revision at `version` and makes `revision` live from it.
  virtual absl::Status ReviseCase(const RevisionWrite& revision, int64_t version) = 0;
  virtual absl::Status RetireCase(const std::string& case_id, int64_t version) = 0;
  virtual absl::StatusOr<int64_t> LiveCaseCount() = 0;
  // Writes version `record.version` (case_count and content_digest computed from the stored
  // snapshot) and makes it the set's latest. Returns the stored record.
  virtual absl::StatusOr<VersionRecord> CreateVersion(const VersionRecord& record) = 0;
  // Resolves a version ref against this set (NOT_FOUND for an unknown number or tag).
  virtual absl::StatusOr<VersionRecord> GetVersion(int64_t version) = 0;
  virtual absl::StatusOr<std::optional<int64_t>> GetTag(const std::string& tag) = 0;
  virtual absl::StatusOr<int64_t> CountTags() = 0;
  virtual absl::Status PutTag(const std::string& tag, int64_t version) = 0;
  virtual absl::Status DeleteTag(const std::string& tag) = 0;
};

// Operations inside one transaction that holds a run (FOR UPDATE when finishing, FOR SHARE when
// recording results, so results never land on a run being completed).
class RunWriteTx {
 public:
  virtual ~RunWriteTx() = default;
  virtual const RunRecord& run() const = 0;
  // The cases among `case_ids` that are live in the run's pinned version.
  virtual absl::StatusOr<std::map<std::string, PinnedCase>> PinnedCases(
      const std::vector<std::string>& case_ids) = 0;
  // Content digests of existing results among `case_ids`.
  virtual absl::StatusOr<std::map<std::string, std::string>> ResultDigests(
      const std::vector<std::string>& case_ids) = 0;
  virtual absl::Status UpsertResult(const ResultWrite& result) = 0;
  virtual absl::StatusOr<std::vector<ResultFacts>> AllResults() = 0;
  virtual absl::StatusOr<std::vector<ThemeCount>> PinnedThemeCounts() = 0;
  virtual absl::Status FinishRun(v1::RunState state, const std::string& failure_reason,
                                 const std::string& summary) = 0;
};

class EvalSetRepository {
 public:
  virtual ~EvalSetRepository() = default;

  // ---- sets
  // Inserts a new set; ALREADY_EXISTS if the id is taken; RESOURCE_EXHAUSTED when the project
  // already has `max_sets` sets.
  virtual absl::StatusOr<SetRecord> InsertSet(const std::string& project_id, const SetRecord& set,
                                              int64_t max_sets) = 0;
  virtual absl::StatusOr<SetRecord> GetSet(const std::string& project_id,
                                           const std::string& eval_set_id) = 0;
  virtual absl::StatusOr<std::vector<SetRecord>> ListSets(const std::string& project_id,
                                                          const std::string& after_id,
                                                          bool show_archived, int limit) = 0;
  // Runs `body` in a transaction holding the set's write lock; NOT_FOUND if no such set.
  virtual absl::Status WriteSet(const std::string& project_id, const std::string& eval_set_id,
                                const std::function<absl::Status(SetWriteTx&)>& body) = 0;

  // ---- versions
  virtual absl::StatusOr<VersionRecord> GetVersion(const std::string& project_id,
                                                   const std::string& eval_set_id,
                                                   int64_t version) = 0;
  // NOT_FOUND when the tag does not exist.
  virtual absl::StatusOr<int64_t> GetTaggedVersion(const std::string& project_id,
                                                   const std::string& eval_set_id,
                                                   const std::string& tag) = 0;
  // Newest first, versions below `before_version` (0 = no bound).
  virtual absl::StatusOr<std::vector<VersionRecord>> ListVersions(const std::string& project_id,
                                                                  const std::string& eval_set_id,
                                                                  int64_t before_version,
                                                                  bool tagged_only, int limit) = 0;

  // ---- snapshots (cases as they are at a version, with output fields filled)
  virtual absl::StatusOr<std::optional<v1::Case>> GetCaseAt(const std::string& project_id,
                                                            const std::string& eval_set_id,
                                                            const std::string& case_id,
                                                            int64_t version) = 0;
  virtual absl::StatusOr<std::vector<v1::Case>> ListCasesAt(const std::string& project_id,
                                                            const std::string& eval_set_id,
                                                            const SnapshotQuery& query,
                                                            int limit) = 0;
  virtual absl::StatusOr<int64_t> CountCasesAt(const std::string& project_id,
                                               const std::string& eval_set_id,
                                               const SnapshotQuery& query) = 0;
  // Every `page_rows`-th case id of the query's snapshot in order: the last ids of full pages,
  // so that pages can be read independently (and concurrently).
  virtual absl::StatusOr<std::vector<std::string>> PageBoundaries(const std::string& project_id,
                                                                  const std::string& eval_set_id,
                                                                  const SnapshotQuery& query,
                                                                  int page_rows) = 0;
  // Input texts of the given cases in a version (for snippets).
  virtual absl::StatusOr<std::map<std::string, std::string>> InputTextsAt(
      const std::string& project_id, const std::string& eval_set_id, int64_t version,
      const std::vector<std::string>& case_ids) = 0;
  // Live cases of the latest versions of the given sets, for novelty search.
  virtual absl::StatusOr<std::vector<CaseText>> LatestCaseTexts(const std::string& project_id,
                                                                const std::string& eval_set_id) = 0;

  // ---- runs
  // Inserts a run pinned to an existing version; ALREADY_EXISTS if the id is taken.
  virtual absl::Status InsertRun(const std::string& project_id, const RunRecord& run) = 0;
  virtual absl::StatusOr<RunRecord> GetRun(const std::string& project_id,
                                           const std::string& run_id) = 0;
  virtual absl::StatusOr<std::vector<RunRecord>> ListRuns(const std::string& project_id,
                                                          const RunQuery& query, int limit) = 0;
  // Runs `body` holding the run's row lock (exclusive or shared); NOT_FOUND if no such run.
  virtual absl::Status WriteRun(const std::string& project_id, const std::string& run_id,
                                bool exclusive,
                                const std::function<absl::Status(RunWriteTx&)>& body) = 0;
  virtual absl::StatusOr<std::vector<ResultFacts>> RunResults(const std::string& project_id,
                                                              const std::string& run_id) = 0;
  virtual absl::StatusOr<std::vector<ThemeCount>> ThemeCountsAt(const std::string& project_id,
                                                                const std::string& eval_set_id,
                                                                int64_t version) = 0;
  // Results with output fields (run_id, case_revision, theme, record_time).
  virtual absl::StatusOr<std::vector<v1::CaseResult>> ListResults(const std::string& project_id,
                                                                  const std::string& run_id,
                                                                  const ResultQuery& query,
                                                                  int limit) = 0;
  // Full results of the given cases (for snippets).
  virtual absl::StatusOr<std::map<std::string, v1::CaseResult>> ResultsFor(
      const std::string& project_id, const std::string& run_id,
      const std::vector<std::string>& case_ids) = 0;
};

}  // namespace flywheel::evalset
