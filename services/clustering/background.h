#pragma once

// The service's background threads: the flagged-feed follower and the re-clustering workers
// (scheduler, stale-job reaper, job runners). Stopped (and joined) by Stop() or destruction.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/log/logger.h"
#include "services/clustering/feed_follower.h"
#include "services/clustering/recluster.h"

namespace flywheel::clustering {

struct BackgroundOptions {
  absl::Duration follow_poll_interval = absl::Seconds(1);
  // After a round that consumed entries: traffic is flowing, so the next poll comes sooner
  // (freshness of the loop under load) while idle projects cost one read per interval.
  absl::Duration busy_poll_interval = absl::Milliseconds(200);
  absl::Duration job_poll_interval = absl::Seconds(2);
  absl::Duration schedule_check_interval = absl::Seconds(30);
  int worker_threads = 1;
};

class BackgroundWorkers {
 public:
  using ProjectLister = std::function<absl::StatusOr<std::vector<std::string>>()>;

  // `follower` may be null (no capture configured): then only re-clustering runs.
  BackgroundWorkers(ProjectLister projects, FeedFollower* follower, Reclusterer* reclusterer,
                    Logger* logger, BackgroundOptions options);
  ~BackgroundWorkers();

  void Start();
  void Stop();

 private:
  void FollowLoop();
  void JobLoop(int index);
  // Sleeps up to `d`; false when stopping.
  bool Sleep(absl::Duration d);

  const ProjectLister projects_;
  FeedFollower* const follower_;
  Reclusterer* const reclusterer_;
  Logger* const logger_;
  const BackgroundOptions options_;
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace flywheel::clustering
