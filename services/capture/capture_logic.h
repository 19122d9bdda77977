#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/capture/v1/capture.pb.h"
#include "services/capture/capture_repository.h"
#include "services/capture/redaction.h"

namespace flywheel::capture {

// One item of an ingestion request, pointing into the request (no copies).
struct ItemRef {
  const v1::Trace* trace = nullptr;
  const v1::Signal* signal = nullptr;
};

// Who is writing: the key's project and whether it is a public (browser) key.
struct Writer {
  std::string project_id;
  bool public_key = false;
};

struct CaptureOptions {
  // Per-project settings (redaction, reason categories) are re-read this often.
  absl::Duration settings_ttl = absl::Seconds(30);
  absl::Duration retention = absl::Hours(24 * 90);
  // Explicit feedback, and every signal written with a public key, per user and minute; 0 turns
  // the limit off. Enforced per replica (approximate across replicas).
  int user_signals_per_minute = 60;
};

// Capture's domain rules: validation, redaction, idempotency, paging and read shaping. No gRPC
// and no SQL: storage goes through CaptureRepository. Thread-safe.
class CaptureLogic {
 public:
  CaptureLogic(CaptureRepository* repository, CaptureOptions options = {});

  // What an ingestion call did, item by item.
  struct IngestOutcome {
    std::vector<v1::IngestResult> results;  // one per item; REJECTED ones carry code and field
    std::vector<absl::Time> receive_times;  // commit time of the stored item (if stored)
    std::vector<bool> trace_received;       // signals: whether their trace has arrived
    v1::IngestCounts counts;
  };

  // Validates, redacts and stores items (at most kMaxBatchItems) in one transaction.
  // Whole-request errors are the status (database down: UNAVAILABLE, nothing stored; empty or
  // oversized batch: INVALID_ARGUMENT / RESOURCE_EXHAUSTED).
  absl::StatusOr<IngestOutcome> Ingest(const Writer& writer, const std::vector<ItemRef>& items);

  absl::StatusOr<v1::GetTraceResponse> GetTrace(const std::string& project_id,
                                                const v1::GetTraceRequest& request);
  absl::StatusOr<v1::ListTracesResponse> ListTraces(const std::string& project_id,
                                                    const v1::ListTracesRequest& request);
  absl::StatusOr<v1::ListSignalsResponse> ListSignals(const std::string& project_id,
                                                      const v1::ListSignalsRequest& request);
  absl::StatusOr<v1::ReadFlaggedFeedResponse> ReadFlaggedFeed(
      const std::string& project_id, const v1::ReadFlaggedFeedRequest& request);
  absl::StatusOr<v1::LabelRuleSet> GetLabelRuleSet(const std::string& project_id, int64_t version);
  absl::StatusOr<v1::RedactionConfig> GetRedactionConfig(const std::string& project_id);
  absl::StatusOr<v1::LabelRuleSet> UpdateLabelRuleSet(const std::string& project_id,
                                                      const v1::UpdateLabelRuleSetRequest& request);
  absl::StatusOr<v1::ListLabelRuleSetVersionsResponse> ListLabelRuleSetVersions(
      const std::string& project_id, const v1::ListLabelRuleSetVersionsRequest& request);
  absl::StatusOr<v1::RedactionConfig> UpdateRedactionConfig(
      const std::string& project_id, const v1::UpdateRedactionConfigRequest& request);
  absl::StatusOr<v1::RelabelJob> Relabel(const std::string& project_id,
                                         const v1::RelabelRequest& request);
  absl::StatusOr<v1::RelabelJob> GetRelabelJob(const std::string& project_id,
                                               const std::string& job_id);
  absl::StatusOr<v1::ListPreferencePairsResponse> ListPreferencePairs(
      const std::string& project_id, const v1::ListPreferencePairsRequest& request);
  absl::StatusOr<v1::SurvivorshipAudit> GetSurvivorshipAudit(
      const std::string& project_id, const v1::GetSurvivorshipAuditRequest& request);

  // The skew findings and summary of an audit from per-cohort statistics (pure).
  static void DescribeSkew(v1::SurvivorshipAudit* audit);

  // The summary a feed consumer gets for a trace (input text and output head truncated).
  static v1::TraceSummary Summarize(const v1::Trace& trace,
                                    const std::vector<std::string>& comments_newest_first);

 private:
  struct ProjectSettings {
    std::shared_ptr<const Redactor> redactor;
    v1::LabelRuleSet rules;
    absl::Time loaded;
  };
  absl::StatusOr<std::shared_ptr<const ProjectSettings>> Settings(const std::string& project_id);
  void ForgetSettings(const std::string& project_id);

  // Takes one token from the user's bucket; false when the user is over the limit.
  bool AllowUserSignal(const std::string& project_id, const std::string& user_id, absl::Time now);
  // Gives a token back: retries and duplicates must not use up a user's allowance.
  void RefundUserSignal(const std::string& project_id, const std::string& user_id);

  CaptureRepository* const repository_;
  const CaptureOptions options_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const ProjectSettings>> settings_;
  struct Bucket {
    double tokens = 0;
    absl::Time refilled;
  };
  std::mutex buckets_mu_;
  std::map<std::string, Bucket> buckets_;
};

// SHA-256 (32 raw bytes) of a message's deterministic serialization.
std::string ContentHash(const google::protobuf::Message& message);

}  // namespace flywheel::capture
