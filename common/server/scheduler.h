#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "absl/time/time.h"

namespace flywheel {

// Runs callbacks at a later time on one background thread, for reactors that must wait without
// blocking a gRPC thread (feed watches polling for new entries, heartbeats). Callbacks must be
// quick: hand real work to a BoundedExecutor. Pending callbacks are dropped on destruction.
class Scheduler {
 public:
  Scheduler();
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void RunAfter(absl::Duration delay, std::function<void()> callback);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable changed_;
  std::multimap<absl::Time, std::function<void()>> pending_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace flywheel
