#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/time/time.h"
#include "common/log/logger.h"
#include "services/capture/capture_repository.h"

namespace flywheel::capture {

struct LabelerOptions {
  // How often the queue is polled when idle (writes in this process wake it at once).
  absl::Duration poll_interval = absl::Milliseconds(200);
  // Queue rows taken per project per transaction.
  int batch = 500;
  // How often idle sessions are swept for abandonment.
  absl::Duration sweep_interval = absl::Seconds(10);
  // Nice increment of the labeler thread (Linux: per thread): labeling is background work and
  // yields the CPU to request handling when both compete; 0 keeps the process's priority.
  int nice = 10;
};

// The background labeler: drains the label queue (derived signals, labels, flagged feed) and
// sweeps idle sessions. Safe with several replicas (see CaptureRepository::LabelQueued).
class Labeler {
 public:
  Labeler(CaptureRepository* repository, Logger* logger, LabelerOptions options = {});
  ~Labeler();  // stops and joins

  void Start();
  void Stop();
  // Wakes the worker (new evidence was committed by this process).
  void Notify();
  // Runs one full pass synchronously (tests): labels until the queue is empty.
  absl::StatusOr<LabelPassStats> RunOnce(absl::Time now);
  // Advances relabel jobs until none has work left or `max_steps` steps ran (tests, loop).
  absl::Status RunRelabelSteps(absl::Time now, int max_steps);

 private:
  void Loop();
  LabelFunction Function(absl::Time now) const;

  CaptureRepository* const repository_;
  Logger* const logger_;
  const LabelerOptions options_;
  const v1::LabelRuleSet defaults_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool notified_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace flywheel::capture
