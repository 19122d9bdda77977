#pragma once

#include "common/db/pool.h"
#include "common/log/logger.h"
#include "services/capture/capture_repository.h"

namespace flywheel::capture {

// CaptureRepository on the capture schema (migrations/capture). Bulk writes use one statement
// per column set (unnest of array parameters), so a batch costs a handful of round trips.
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
  absl::StatusOr<std::vector<v1::Signal>> ListSignals(const std::string& project_id,
                                                      const std::string& trace_id,
                                                      const std::string& session_id,
                                                      const std::vector<int>& kinds,
                                                      const std::optional<SignalCursor>& after,
                                                      int limit) override;
  absl::StatusOr<FeedPage> ReadFeed(const std::string& project_id, int64_t after_sequence,
                                    int max_items) override;
  absl::StatusOr<std::optional<v1::LabelRuleSet>> GetRuleSet(const std::string& project_id,
                                                             int64_t version) override;
  absl::StatusOr<std::optional<v1::RedactionConfig>> GetRedactionConfig(
      const std::string& project_id) override;
  absl::StatusOr<LabelPassStats> LabelQueued(int limit, const v1::LabelRuleSet& default_rules,
                                             absl::Time now, const LabelFunction& label) override;
  absl::StatusOr<int> SweepIdleSessions(absl::Duration default_timeout, int limit) override;

 private:
  db::ConnectionPool* const pool_;
  Logger* const logger_;
};

}  // namespace flywheel::capture
