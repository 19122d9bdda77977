#include "services/capture/labeler.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/capture/labeling.h"

namespace flywheel::capture {

Labeler::Labeler(CaptureRepository* repository, Logger* logger, LabelerOptions options)
    : repository_(repository), logger_(logger), options_(options), defaults_(DefaultRuleSet()) {}

Labeler::~Labeler() { Stop(); }

void Labeler::Start() {
  thread_ = std::thread([this] {
    if (options_.nice > 0) {
      // Best effort: a thread that keeps the process's priority still labels correctly.
      const id_t thread_id = static_cast<id_t>(syscall(SYS_gettid));
      const int current = getpriority(PRIO_PROCESS, thread_id);
      setpriority(PRIO_PROCESS, thread_id, std::min(current + options_.nice, 19));
    }
    Loop();
  });
}

void Labeler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Labeler::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
  }
  wake_.notify_one();
}

LabelFunction Labeler::Function(absl::Time now) const {
  return [now](const TraceEvidence& evidence, const v1::LabelRuleSet& rules) {
    LabelDecision decision;
    decision.derived = Derive(evidence, rules, now);
    decision.label = Score(evidence, decision.derived, rules, now);
    return decision;
  };
}

absl::Status Labeler::RunRelabelSteps(absl::Time now, int max_steps) {
  for (int step = 0; step < max_steps; ++step) {
    absl::StatusOr<bool> worked =
        repository_->RelabelStep(options_.batch, defaults_, now, Function(now));
    if (!worked.ok()) return worked.status();
    if (!*worked) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<LabelPassStats> Labeler::RunOnce(absl::Time now) {
  LabelPassStats total;
  while (true) {
    absl::StatusOr<LabelPassStats> stats =
        repository_->LabelQueued(options_.batch, defaults_, now, Function(now));
    if (!stats.ok()) return stats.status();
    total.traces_labeled += stats->traces_labeled;
    total.traces_missing += stats->traces_missing;
    total.feed_entries += stats->feed_entries;
    total.pairs_built += stats->pairs_built;
    if (stats->traces_labeled + stats->traces_missing == 0) return total;
  }
}

void Labeler::Loop() {
  absl::Time next_sweep = absl::InfinitePast();
  absl::Duration backoff = options_.poll_interval;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    bool failed = false;
    const absl::Time now = absl::Now();
    if (now >= next_sweep) {
      absl::StatusOr<int> swept =
          repository_->SweepIdleSessions(ToDuration(defaults_.abandonment_timeout()), 1000);
      if (!swept.ok()) {
        failed = true;
      } else {
        next_sweep = now + options_.sweep_interval;
      }
    }
    absl::StatusOr<LabelPassStats> stats = RunOnce(absl::Now());
    // Relabel jobs advance between live passes, a few chunks at a time, so live labels stay fresh.
    if (stats.ok()) {
      absl::Status relabel = RunRelabelSteps(absl::Now(), 4);
      if (!relabel.ok()) stats = relabel;
    }
    if (!stats.ok()) {
      failed = true;
      logger_->Warn("labeling pass failed", {{"status", stats.status().ToString()}});
    } else if (stats->feed_entries > 0) {
      logger_->Debug("labeled", {{"traces", absl::StrCat(stats->traces_labeled)},
                                 {"feed_entries", absl::StrCat(stats->feed_entries)}});
    }
    // Back off while the database is unavailable; otherwise poll at the normal pace.
    backoff = failed ? std::min(backoff * 2, absl::Seconds(5)) : options_.poll_interval;
    std::unique_lock<std::mutex> lock(mu_);
    wake_.wait_for(lock, absl::ToChronoNanoseconds(backoff),
                   [this] { return stopping_ || notified_; });
    notified_ = false;
  }
}

}  // namespace flywheel::capture
