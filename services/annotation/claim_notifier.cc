#include "services/annotation/claim_notifier.h"

#include <vector>

namespace flywheel::annotation {

uint64_t ClaimNotifier::Subscribe(const std::string& project_id, const std::string& queue_id,
                                  Callback callback) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t token = next_token_++;
  Key key{project_id, queue_id};
  subscriptions_.emplace(token, std::make_pair(key, std::move(callback)));
  by_queue_.emplace(std::move(key), token);
  return token;
}

bool ClaimNotifier::Unsubscribe(uint64_t token) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subscriptions_.find(token);
  if (it == subscriptions_.end()) return false;
  auto [first, last] = by_queue_.equal_range(it->second.first);
  for (auto q = first; q != last; ++q) {
    if (q->second == token) {
      by_queue_.erase(q);
      break;
    }
  }
  subscriptions_.erase(it);
  return true;
}

void ClaimNotifier::Notify(const std::string& project_id, const std::string& queue_id) {
  std::vector<Callback> fire;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto [first, last] = by_queue_.equal_range(Key{project_id, queue_id});
    for (auto q = first; q != last; ++q) {
      auto it = subscriptions_.find(q->second);
      if (it == subscriptions_.end()) continue;
      fire.push_back(std::move(it->second.second));
      subscriptions_.erase(it);
    }
    by_queue_.erase(first, last);
  }
  for (Callback& callback : fire) callback();
}

void ClaimNotifier::NotifyAll() {
  std::vector<Callback> fire;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [token, entry] : subscriptions_) fire.push_back(std::move(entry.second));
    subscriptions_.clear();
    by_queue_.clear();
  }
  for (Callback& callback : fire) callback();
}

size_t ClaimNotifier::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return subscriptions_.size();
}

}  // namespace flywheel::annotation
