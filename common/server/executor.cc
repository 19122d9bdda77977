#include "common/server/executor.h"

namespace flywheel {

BoundedExecutor::BoundedExecutor(int threads, int max_queue)
    : max_queue_(static_cast<size_t>(max_queue)) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

BoundedExecutor::~BoundedExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  has_work_.notify_all();
  has_room_.notify_all();
  for (auto& thread : threads_) thread.join();
}

bool BoundedExecutor::TrySubmit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queue_.size() >= max_queue_) return false;
    queue_.push_back(std::move(task));
  }
  has_work_.notify_one();
  return true;
}

bool BoundedExecutor::Submit(std::function<void()> task) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    has_room_.wait(lock, [this] { return stopping_ || queue_.size() < max_queue_; });
    if (stopping_) return false;
    queue_.push_back(std::move(task));
  }
  has_work_.notify_one();
  return true;
}

size_t BoundedExecutor::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void BoundedExecutor::Work() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      has_work_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    has_room_.notify_one();
    task();
  }
}

grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* context, BoundedExecutor& executor,
                                   std::function<grpc::Status()> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const bool queued =
      executor.TrySubmit([reactor, work = std::move(work)] { reactor->Finish(work()); });
  if (!queued) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "server busy; retry"));
  }
  return reactor;
}

}  // namespace flywheel
