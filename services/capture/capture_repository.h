#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/capture/v1/capture.pb.h"
#include "services/capture/labeling.h"

namespace flywheel::capture {

// One validated, redacted item ready to store.
struct PreparedItem {
  enum class Type { kTrace, kSignal };
  Type type = Type::kTrace;
  // The item as it will be stored (redacted; signal_kind and redactions set).
  v1::Trace trace;
  v1::Signal signal;
  // SHA-256 of the item as received (idempotency), 32 raw bytes.
  std::string content_sha256;

  const std::string& id() const {
    return type == Type::kTrace ? trace.trace_id() : signal.event_id();
  }
};

enum class WriteOutcome { kAccepted, kDuplicate, kConflict };

struct WriteResult {
  WriteOutcome outcome = WriteOutcome::kAccepted;
  // When the stored item (new or earlier) was committed.
  absl::Time receive_time;
  // Redactions of the stored item (for duplicates: of the earlier write).
  v1::RedactionCounts redactions;
  // Signals on a trace: whether the trace has been received.
  bool trace_received = false;
};

// A trace with its server-side fields.
struct StoredTrace {
  v1::Trace trace;  // receive_time and label filled in
};

// ListTraces filters (empty strings and unset optionals mean "no filter").
struct TraceFilter {
  std::optional<absl::Time> start_after;   // inclusive
  std::optional<absl::Time> start_before;  // exclusive
  bool flagged_only = false;
  std::string feature_area, model, model_version, prompt_template_id, prompt_version, session_id,
      user_id;
  std::vector<int> signal_kinds;
  std::optional<double> min_score, max_score;
};

// Position after the last trace of a page (newest first).
struct TraceCursor {
  absl::Time start_time;
  std::string trace_id;
};

struct SignalCursor {
  absl::Time occur_time;
  std::string event_id;
};

// A feed entry with what a summary is built from (FLAGGED entries whose trace still exists).
struct FeedRow {
  v1::FlaggedFeedEntry entry;
  std::optional<v1::Trace> trace;
  // Comments of explicit feedback on the trace, newest first.
  std::vector<std::string> comments;
};

struct FeedPage {
  std::vector<FeedRow> rows;
  int64_t high_water_mark = 0;
  int64_t oldest_sequence = 0;
};

// What the labeler decides for one trace.
struct LabelDecision {
  std::vector<v1::DerivedSignal> derived;
  v1::TraceLabel label;
};

// Computes a trace's derived signals and label from its evidence with the given rules.
using LabelFunction =
    std::function<LabelDecision(const TraceEvidence& evidence, const v1::LabelRuleSet& rules)>;

struct LabelPassStats {
  int traces_labeled = 0;  // labels written (or computed, for dry runs)
  int traces_missing = 0;  // queued ids whose trace has not arrived (signal came first)
  int feed_entries = 0;    // flagged-feed entries appended
  int flagged_before = 0;  // labeled traces flagged before / after
  int flagged_after = 0;
  int newly_flagged = 0;
  int unflagged = 0;
  int pairs_built = 0;  // preference pairs from settled regenerate chains
};

// A relabel job as stored (the proto plus what the worker needs).
struct StoredRelabelJob {
  std::string project_id;
  v1::RelabelJob job;
  std::string request_sha256;
};

struct PairFilter {
  std::optional<absl::Time> created_after;   // inclusive
  std::optional<absl::Time> created_before;  // exclusive
  std::string feature_area;
};

struct PairCursor {
  absl::Time created;
  std::string pair_id;
};

// Per-user usage in an audit window (only traces with a user id).
struct AuditUser {
  std::string user_id;
  bool rater = false;
  int64_t traces = 0;
  int64_t sessions = 0;
  absl::Time first_trace;  // ever stored
  std::map<std::string, int64_t> traces_by_area;
};

// Raw aggregates of a survivorship audit window.
struct AuditData {
  int64_t traces = 0, sessions = 0, users = 0;
  int64_t traces_with_explicit = 0;
  int64_t thumbs_up = 0, thumbs_down = 0, ratings = 0, comments_only = 0;
  int64_t sessions_with_implicit = 0;
  std::vector<AuditUser> per_user;
};

// Storage of the capture schema. Implemented on Postgres (PgCaptureRepository) and by fakes.
class CaptureRepository {
 public:
  virtual ~CaptureRepository() = default;

  // Stores items in one transaction (all or nothing), in order; ids are distinct per type
  // within `items`. Existing ids come back as kDuplicate (same content_sha256) or kConflict.
  // Every stored item queues the traces whose label it may change.
  virtual absl::StatusOr<std::vector<WriteResult>> Write(
      const std::string& project_id, const std::vector<PreparedItem>& items) = 0;

  virtual absl::StatusOr<std::optional<StoredTrace>> GetTrace(const std::string& project_id,
                                                              const std::string& trace_id) = 0;
  // Raw signals on the trace and session-level signals of `session_id`, oldest first, at most
  // `limit` (the newest ones when there are more).
  virtual absl::StatusOr<std::vector<v1::Signal>> TraceSignals(const std::string& project_id,
                                                               const std::string& trace_id,
                                                               const std::string& session_id,
                                                               int limit) = 0;
  virtual absl::StatusOr<std::vector<v1::DerivedSignal>> DerivedSignals(
      const std::string& project_id, const std::string& trace_id) = 0;
  // Newest first; `limit` rows after `after`.
  virtual absl::StatusOr<std::vector<v1::Trace>> ListTraces(const std::string& project_id,
                                                            const TraceFilter& filter,
                                                            const std::optional<TraceCursor>& after,
                                                            int limit) = 0;
  // Signals of a trace, or of a session (session-level plus those of its traces), oldest first.
  virtual absl::StatusOr<std::vector<v1::Signal>> ListSignals(
      const std::string& project_id, const std::string& trace_id, const std::string& session_id,
      const std::vector<int>& kinds, const std::optional<SignalCursor>& after, int limit) = 0;

  // Entries with sequence > after_sequence, in order, at most max_items.
  virtual absl::StatusOr<FeedPage> ReadFeed(const std::string& project_id, int64_t after_sequence,
                                            int max_items) = 0;

  // The stored rule set version (0 = the newest stored); nullopt when none is stored.
  virtual absl::StatusOr<std::optional<v1::LabelRuleSet>> GetRuleSet(const std::string& project_id,
                                                                     int64_t version) = 0;
  // nullopt while the project uses the defaults.
  virtual absl::StatusOr<std::optional<v1::RedactionConfig>> GetRedactionConfig(
      const std::string& project_id) = 0;

  // Claims up to `limit` queued traces (safe with several replicas), computes each label with
  // `label` and the project's current rules (`default_rules` when none are stored), stores
  // derived signals and labels, appends flagged-feed entries for traces whose flagged state
  // changed, and removes the claimed queue rows — all in one transaction.
  virtual absl::StatusOr<LabelPassStats> LabelQueued(int limit,
                                                     const v1::LabelRuleSet& default_rules,
                                                     absl::Time now,
                                                     const LabelFunction& label) = 0;

  // Stores a new rule set version (rules.version set by the caller). ABORTED when that version
  // already exists (a concurrent update won).
  virtual absl::Status StoreRuleSet(const std::string& project_id,
                                    const v1::LabelRuleSet& rules) = 0;
  // Every stored version, newest first.
  virtual absl::StatusOr<std::vector<v1::LabelRuleSet>> ListRuleSets(
      const std::string& project_id) = 0;
  // Replaces the redaction config if its stored version is `expected_version` (0 = none
  // stored); ABORTED otherwise. config.version is the new version.
  virtual absl::Status StoreRedactionConfig(const std::string& project_id,
                                            const v1::RedactionConfig& config,
                                            int64_t expected_version) = 0;

  // Creates a relabel job, or returns the job already created with the same request_id.
  // FAILED_PRECONDITION when another job of the project is pending or running.
  virtual absl::StatusOr<StoredRelabelJob> CreateRelabelJob(const StoredRelabelJob& job) = 0;
  virtual absl::StatusOr<std::optional<v1::RelabelJob>> GetRelabelJob(
      const std::string& project_id, const std::string& job_id) = 0;
  // Advances one pending or running job by up to `limit` traces (in start_time order from its
  // checkpoint), relabeling them with the job's rule set unless it is a dry run. Returns false
  // when there was no job to work on.
  virtual absl::StatusOr<bool> RelabelStep(int limit, const v1::LabelRuleSet& default_rules,
                                           absl::Time now, const LabelFunction& label) = 0;

  // Preference pairs, oldest first.
  virtual absl::StatusOr<std::vector<v1::PreferencePair>> ListPreferencePairs(
      const std::string& project_id, const PairFilter& filter,
      const std::optional<PairCursor>& after, int limit) = 0;

  // Aggregates for a survivorship audit of traces starting in [start, end).
  virtual absl::StatusOr<AuditData> AuditWindow(const std::string& project_id, absl::Time start,
                                                absl::Time end,
                                                const std::string& feature_area) = 0;

  // Queues the last trace of sessions idle for their project's abandonment timeout
  // (`default_timeout` without stored rules) and forgets those sessions. Returns how many.
  virtual absl::StatusOr<int> SweepIdleSessions(absl::Duration default_timeout, int limit) = 0;
};

}  // namespace flywheel::capture
