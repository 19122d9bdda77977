#pragma once

#include "common/db/pool.h"
#include "common/log/logger.h"
#include "services/evalset/evalset_repository.h"

namespace flywheel::evalset {

// EvalSetRepository on PostgreSQL (schema `evals`). Every statement is a named prepared
// statement registered on the pool; every query filters on project_id; libpqxx exceptions end
// here (mapped to statuses by RunInTransaction).
class PgEvalSetRepository final : public EvalSetRepository {
 public:
  PgEvalSetRepository(db::ConnectionPool* pool, Logger* logger);

  absl::StatusOr<SetRecord> InsertSet(const std::string& project_id, const SetRecord& set,
                                      int64_t max_sets) override;
  absl::StatusOr<SetRecord> GetSet(const std::string& project_id,
                                   const std::string& eval_set_id) override;
  absl::StatusOr<std::vector<SetRecord>> ListSets(const std::string& project_id,
                                                  const std::string& after_id, bool show_archived,
                                                  int limit) override;
  absl::Status WriteSet(const std::string& project_id, const std::string& eval_set_id,
                        const std::function<absl::Status(SetWriteTx&)>& body) override;

  absl::StatusOr<VersionRecord> GetVersion(const std::string& project_id,
                                           const std::string& eval_set_id,
                                           int64_t version) override;
  absl::StatusOr<int64_t> GetTaggedVersion(const std::string& project_id,
                                           const std::string& eval_set_id,
                                           const std::string& tag) override;
  absl::StatusOr<std::vector<VersionRecord>> ListVersions(const std::string& project_id,
                                                          const std::string& eval_set_id,
                                                          int64_t before_version, bool tagged_only,
                                                          int limit) override;

  absl::StatusOr<std::optional<v1::Case>> GetCaseAt(const std::string& project_id,
                                                    const std::string& eval_set_id,
                                                    const std::string& case_id,
                                                    int64_t version) override;
  absl::StatusOr<std::vector<v1::Case>> ListCasesAt(const std::string& project_id,
                                                    const std::string& eval_set_id,
                                                    const SnapshotQuery& query, int limit) override;
  absl::StatusOr<int64_t> CountCasesAt(const std::string& project_id,
                                       const std::string& eval_set_id,
                                       const SnapshotQuery& query) override;
  absl::StatusOr<std::vector<std::string>> PageBoundaries(const std::string& project_id,
                                                          const std::string& eval_set_id,
                                                          const SnapshotQuery& query,
                                                          int page_rows) override;
  absl::StatusOr<std::map<std::string, std::string>> InputTextsAt(
      const std::string& project_id, const std::string& eval_set_id, int64_t version,
      const std::vector<std::string>& case_ids) override;
  absl::StatusOr<std::vector<CaseText>> LatestCaseTexts(const std::string& project_id,
                                                        const std::string& eval_set_id) override;

  absl::Status InsertRun(const std::string& project_id, const RunRecord& run) override;
  absl::StatusOr<RunRecord> GetRun(const std::string& project_id,
                                   const std::string& run_id) override;
  absl::StatusOr<std::vector<RunRecord>> ListRuns(const std::string& project_id,
                                                  const RunQuery& query, int limit) override;
  absl::Status WriteRun(const std::string& project_id, const std::string& run_id, bool exclusive,
                        const std::function<absl::Status(RunWriteTx&)>& body) override;
  absl::StatusOr<std::vector<ResultFacts>> RunResults(const std::string& project_id,
                                                      const std::string& run_id) override;
  absl::StatusOr<std::vector<ThemeCount>> ThemeCountsAt(const std::string& project_id,
                                                        const std::string& eval_set_id,
                                                        int64_t version) override;
  absl::StatusOr<std::vector<v1::CaseResult>> ListResults(const std::string& project_id,
                                                          const std::string& run_id,
                                                          const ResultQuery& query,
                                                          int limit) override;
  absl::StatusOr<std::map<std::string, v1::CaseResult>> ResultsFor(
      const std::string& project_id, const std::string& run_id,
      const std::vector<std::string>& case_ids) override;

 private:
  db::ConnectionPool* const pool_;
  Logger* const logger_;
};

}  // namespace flywheel::evalset
