#include "common/server/scheduler.h"

#include "absl/time/clock.h"

namespace flywheel {

Scheduler::Scheduler() : thread_([this] { Loop(); }) {}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void Scheduler::RunAfter(absl::Duration delay, std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.emplace(absl::Now() + delay, std::move(callback));
  }
  changed_.notify_all();
}

void Scheduler::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (pending_.empty()) {
      changed_.wait(lock);
      continue;
    }
    const absl::Time due = pending_.begin()->first;
    const absl::Time now = absl::Now();
    if (due > now) {
      changed_.wait_for(lock, absl::ToChronoNanoseconds(due - now));
      continue;
    }
    std::function<void()> callback = std::move(pending_.begin()->second);
    pending_.erase(pending_.begin());
    lock.unlock();
    callback();
    lock.lock();
  }
}

}  // namespace flywheel
