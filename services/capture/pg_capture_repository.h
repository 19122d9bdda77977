#pragma once

#include "common/db/pool.h"
#include "common/log/logger.h"
#include "services/capture/capture_repository.h"

namespace flywheel::capture {

// CaptureRepository on the capture schema (migrations/capture). A batch write is a lookup of the
// stored ids, COPY of the new rows and two statements for the label queue and session activity;
// a single-item write is one statement. Other bulk statements take one array parameter per
// column (unnest), so a batch costs a handful of round trips.
class PgCaptureRepository : public CaptureRepository {
 public:
  // Registers its prepared statements on `pool`.
  PgCaptureRepository(db::ConnectionPool* pool, Logger* logger);

  absl::StatusOr<std::vector<WriteResult>> Write(const std::string& project_id,
                                                 const std::vector<PreparedItem>& items) override;
  absl::StatusOr<std::optional<StoredTrace>> GetTrace(const std::string& project_id,
                                                      const std::string& trace_id) override;
  absl::StatusOr<std::vector<v1::Signal>> TraceSignals(const std::string& project_id,
                                                       const std::string& trace_id,
                                                       const std::string& session_id,
                                                       int limit) override;
  absl::StatusOr<std::vector<v1::DerivedSignal>> DerivedSignals(
      const std::string& project_id, const std::string& trace_id) override;
  absl::StatusOr<std::vector<v1::Trace>> ListTraces(const std::string& project_id,
                                                    const TraceFilter& filter,
                                                    const std::optional<TraceCursor>& after,
                                                    int limit) override;
  absl::StatusOr<std::vector<v1::Signal>> ListSignals(
      const std::string& project_id, const std::string& trace_id, const std::string& session_id,
      const std::vector<int>& kinds, const std::optional<SignalCursor>& after, int limit) override;
  absl::StatusOr<FeedPage> ReadFeed(const std::string& project_id, int64_t after_sequence,
                                    int max_items) override;
  absl::StatusOr<std::optional<v1::LabelRuleSet>> GetRuleSet(const std::string& project_id,
                                                             int64_t version) override;
  absl::StatusOr<std::optional<v1::RedactionConfig>> GetRedactionConfig(
      const std::string& project_id) override;
  absl::StatusOr<LabelPassStats> LabelQueued(int limit, const v1::LabelRuleSet& default_rules,
                                             absl::Time now, const LabelFunction& label) override;
  absl::StatusOr<int> SweepIdleSessions(absl::Duration default_timeout, int limit) override;
  absl::Status StoreRuleSet(const std::string& project_id, const v1::LabelRuleSet& rules) override;
  absl::StatusOr<std::vector<v1::LabelRuleSet>> ListRuleSets(
      const std::string& project_id) override;
  absl::Status StoreRedactionConfig(const std::string& project_id,
                                    const v1::RedactionConfig& config,
                                    int64_t expected_version) override;
  absl::StatusOr<StoredRelabelJob> CreateRelabelJob(const StoredRelabelJob& job) override;
  absl::StatusOr<std::optional<v1::RelabelJob>> GetRelabelJob(const std::string& project_id,
                                                              const std::string& job_id) override;
  absl::StatusOr<bool> RelabelStep(int limit, const v1::LabelRuleSet& default_rules, absl::Time now,
                                   const LabelFunction& label) override;
  absl::StatusOr<std::vector<v1::PreferencePair>> ListPreferencePairs(
      const std::string& project_id, const PairFilter& filter,
      const std::optional<PairCursor>& after, int limit) override;
  absl::StatusOr<AuditData> AuditWindow(const std::string& project_id, absl::Time start,
                                        absl::Time end, const std::string& feature_area) override;

 private:
  // One item: a single statement (insert, label queue, session activity) in its transaction.
  absl::StatusOr<std::vector<WriteResult>> WriteOne(const std::string& project_id,
                                                    const PreparedItem& item);
  // Several items: lookup of stored ids, COPY of the new rows, queue and session rows.
  absl::StatusOr<std::vector<WriteResult>> WriteBatch(const std::string& project_id,
                                                      const std::vector<PreparedItem>& items);

  db::ConnectionPool* const pool_;
  Logger* const logger_;
};

}  // namespace flywheel::capture
