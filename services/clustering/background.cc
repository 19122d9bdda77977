#include "services/clustering/background.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace flywheel::clustering {

BackgroundWorkers::BackgroundWorkers(ProjectLister projects, FeedFollower* follower,
                                     Reclusterer* reclusterer, Logger* logger,
                                     BackgroundOptions options)
    : projects_(std::move(projects)),
      follower_(follower),
      reclusterer_(reclusterer),
      logger_(logger),
      options_(options) {}

BackgroundWorkers::~BackgroundWorkers() { Stop(); }

void BackgroundWorkers::Start() {
  if (follower_ != nullptr) threads_.emplace_back([this] { FollowLoop(); });
  for (int i = 0; i < std::max(1, options_.worker_threads); ++i) {
    threads_.emplace_back([this, i] { JobLoop(i); });
  }
}

void BackgroundWorkers::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  stop_cv_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

bool BackgroundWorkers::Sleep(absl::Duration d) {
  std::unique_lock<std::mutex> lock(mu_);
  stop_cv_.wait_for(lock, absl::ToChronoMilliseconds(d), [this] { return stopping_; });
  return !stopping_;
}

void BackgroundWorkers::FollowLoop() {
  std::vector<std::string> followed;
  bool busy = false;  // entries were consumed last round: more are likely, poll again soon
  do {
    busy = false;
    absl::StatusOr<std::vector<std::string>> projects = projects_();
    if (!projects.ok()) {
      logger_->Warn("feed follower: cannot list projects",
                    {{"status", projects.status().ToString()}});
      continue;
    }
    followed = *projects;
    for (const std::string& project : *projects) {
      absl::StatusOr<FeedFollower::SyncResult> result = follower_->SyncProject(project);
      if (!result.ok()) {
        logger_->Warn("feed follower: sync failed",
                      {{"project", project}, {"status", result.status().ToString()}});
      } else if (result->entries > 0) {
        busy = true;
        logger_->Debug("feed follower: consumed", {{"project", project},
                                                   {"entries", absl::StrCat(result->entries)},
                                                   {"cursor", absl::StrCat(result->cursor)}});
      }
    }
  } while (Sleep(busy ? std::min(options_.follow_poll_interval, options_.busy_poll_interval)
                      : options_.follow_poll_interval));
  for (const std::string& project : followed) (void)follower_->Release(project);
}

void BackgroundWorkers::JobLoop(int index) {
  absl::Time next_schedule = absl::InfinitePast();
  do {
    if (index == 0 && absl::Now() >= next_schedule) {
      next_schedule = absl::Now() + options_.schedule_check_interval;
      if (absl::Status s = reclusterer_->FailStale(); !s.ok()) {
        logger_->Warn("re-clustering: stale check failed", {{"status", s.ToString()}});
      }
      absl::StatusOr<std::vector<std::string>> projects = projects_();
      if (projects.ok()) {
        for (const std::string& project : *projects) {
          absl::StatusOr<bool> scheduled = reclusterer_->ScheduleIfDue(project, absl::Now());
          if (!scheduled.ok()) {
            logger_->Warn("re-clustering: scheduling failed",
                          {{"project", project}, {"status", scheduled.status().ToString()}});
          }
        }
      }
    }
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
      }
      absl::StatusOr<bool> ran = reclusterer_->RunOnePending();
      if (!ran.ok()) {
        logger_->Warn("re-clustering: job failed", {{"status", ran.status().ToString()}});
        break;
      }
      if (!*ran) break;
    }
  } while (Sleep(options_.job_poll_interval));
}

}  // namespace flywheel::clustering
