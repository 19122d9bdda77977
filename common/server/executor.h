#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace flywheel {

// A fixed pool of threads with a bounded queue. gRPC callback reactors must never block, so
// handlers hand their database work to one of these; a full queue is refused at once (the
// handler answers RESOURCE_EXHAUSTED) instead of piling up unbounded latency.
class BoundedExecutor {
 public:
  BoundedExecutor(int threads, int max_queue);
  // Runs every queued task, then joins the threads.
  ~BoundedExecutor();
  BoundedExecutor(const BoundedExecutor&) = delete;
  BoundedExecutor& operator=(const BoundedExecutor&) = delete;

  // False when the queue is full or the executor is shutting down.
  bool TrySubmit(std::function<void()> task);
  // Like TrySubmit, but waits for room (for background work that must not be dropped).
  bool Submit(std::function<void()> task);
  size_t queued() const;

 private:
  void Work();

  const size_t max_queue_;
  mutable std::mutex mu_;
  std::condition_variable has_work_;
  std::condition_variable has_room_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Runs `work` on `executor` and finishes the unary call with the status it returns. When the
// executor is full the call fails at once with RESOURCE_EXHAUSTED ("server busy; retry").
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* context, BoundedExecutor& executor,
                                   std::function<grpc::Status()> work);

}  // namespace flywheel
