#pragma once

// Follows capture's flagged feed for each project: reads after the stored cursor, embeds and
// assigns each flagged trace with the latest clustering's model, and stores traces, assignments
// and the new cursor in one transaction (at-least-once in, idempotent upserts). One replica at a
// time follows a project (a lease row with expiry plus a compare-and-set on the cursor).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/capture/v1/capture.pb.h"
#include "services/clustering/clustering_repository.h"
#include "services/clustering/theme_index.h"

namespace flywheel::clustering {

// One page of capture's flagged feed.
struct FeedPage {
  std::vector<capture::v1::FlaggedFeedEntry> entries;
  int64_t next_after_sequence = 0;
  int64_t high_water_mark = 0;
};

// Capture's flagged feed, per project. Implemented over gRPC (capture_feed_client.h) and by
// fakes in tests.
class FeedSource {
 public:
  virtual ~FeedSource() = default;
  // Entries after `after_sequence`, at most `max_items`. UNAVAILABLE when capture is down.
  virtual absl::StatusOr<FeedPage> Read(const std::string& project, int64_t after_sequence,
                                        int max_items) = 0;
};

struct FollowerOptions {
  int batch_size = 500;
  absl::Duration lease_ttl = absl::Seconds(30);
  // Pages per SyncProject call (so one busy project does not starve the others).
  int max_pages_per_sync = 20;
  double default_assignment_threshold = 0.3;
};

// Converts a FLAGGED feed entry to the stored record (signal classes from the label reasons).
TraceRecord TraceFromFeedEntry(const capture::v1::FlaggedFeedEntry& entry);

class FeedFollower {
 public:
  FeedFollower(ClusteringRepository* repository, FeedSource* source, ThemeIndexCache* cache,
               std::string owner, FollowerOptions options = {});

  struct SyncResult {
    int64_t entries = 0;  // feed entries committed
    bool leased = false;  // this replica held the project's lease
    int64_t cursor = 0;   // cursor after the sync
  };
  // Catches up on one project (up to max_pages_per_sync pages).
  absl::StatusOr<SyncResult> SyncProject(const std::string& project);
  // Gives up the project's lease (shutdown).
  absl::Status Release(const std::string& project);

  const std::string& owner() const { return owner_; }

 private:
  absl::StatusOr<double> AssignmentThreshold(const std::string& project);

  ClusteringRepository* const repository_;
  FeedSource* const source_;
  ThemeIndexCache* const cache_;
  const std::string owner_;
  const FollowerOptions options_;
};

}  // namespace flywheel::clustering
