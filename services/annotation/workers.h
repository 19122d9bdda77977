#pragma once

// Background work of the annotation service: the lease reaper, the promotion outbox delivery and
// the auto-filler of flagged-feed queues. Each has a RunOnce (used by tests and by the periodic
// loop in main.cc); none includes gRPC or SQL (they work through the repository and upstream
// interfaces).

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/log/logger.h"
#include "services/annotation/annotation_repository.h"
#include "services/annotation/promotion.h"
#include "services/annotation/upstream.h"

namespace flywheel::annotation {

// Runs `tick` every `interval` on its own thread until destroyed (or Stop()).
class PeriodicWorker {
 public:
  // `tick` returns true when it found work: the next tick then comes after `busy_interval`
  // (work keeps coming under load), else after `interval`.
  PeriodicWorker(std::string name, absl::Duration interval, absl::Duration busy_interval,
                 std::function<bool()> tick);
  ~PeriodicWorker();
  void Stop();

 private:
  const absl::Duration interval_;
  const absl::Duration busy_interval_;
  std::function<bool()> tick_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// Returns expired leases to the pool (and wakes waiting claimers through the repository).
class LeaseReaper {
 public:
  LeaseReaper(AnnotationRepository* repository, Logger* logger)
      : repository_(repository), logger_(logger) {}
  absl::StatusOr<int64_t> RunOnce();

 private:
  AnnotationRepository* const repository_;
  Logger* const logger_;
};

// Delivers the promotion outbox to eval-set (AddCases with case_key = annotation id, or
// UpdateCase for a re-delivery), retrying with exponential backoff until acknowledged.
class PromotionDelivery {
 public:
  PromotionDelivery(AnnotationRepository* repository, EvalSetUpstream* evalset, Logger* logger,
                    BackoffOptions backoff = {})
      : repository_(repository), evalset_(evalset), logger_(logger), backoff_(backoff) {}
  // Delivers up to `limit` due entries; returns how many were acknowledged (DELIVERED).
  absl::StatusOr<int> RunOnce(int limit = 100);

 private:
  AnnotationRepository* const repository_;
  EvalSetUpstream* const evalset_;
  Logger* const logger_;
  const BackoffOptions backoff_;
};

// Fills ACTIVE flagged-feed queues: reads capture's flagged feed from each queue's cursor,
// applies the source rule and sampling, adds the random baseline, snapshots the traces and
// enqueues them while advancing the cursor in the same transaction. One replica fills a queue
// at a time (a fill lease on the queue row).
class QueueFiller {
 public:
  struct Options {
    std::string owner;  // this replica's name (fill lease owner)
    absl::Duration lease_ttl = absl::Minutes(2);
    int feed_batch = 500;
    // A queue that needs themes (cluster_ids in its source rule, or cluster-balanced sampling)
    // waits this long for clustering to see a flagged trace before taking it as unassigned, so a
    // trace flagged a moment ago is not filtered out (and skipped for good) before clustering
    // has assigned it.
    absl::Duration clustering_grace = absl::Seconds(60);
  };
  QueueFiller(AnnotationRepository* repository, CaptureUpstream* capture,
              ClusteringUpstream* clustering, EvalSetUpstream* evalset, Logger* logger,
              Options options);
  // Fills every fillable queue once; returns the number of items enqueued.
  absl::StatusOr<int64_t> RunOnce(absl::Time now);
  // Fills one queue once.
  absl::StatusOr<int64_t> FillQueue(const std::string& project_id, const QueueRecord& queue,
                                    absl::Time now);

  // The last RunOnce left a page waiting for clustering.
  bool waiting_for_clustering() const { return waiting_for_clustering_; }

 private:
  // Set by FillQueue when a page waits for clustering (the next round should come soon).
  bool waiting_for_clustering_ = false;
  AnnotationRepository* const repository_;
  CaptureUpstream* const capture_;
  ClusteringUpstream* const clustering_;
  EvalSetUpstream* const evalset_;
  Logger* const logger_;
  const Options options_;
};

}  // namespace flywheel::annotation
