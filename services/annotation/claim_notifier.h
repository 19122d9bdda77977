#pragma once

// Wakes claimers waiting for an item (ClaimItem with wait_timeout) when a queue may have a
// claimable slot again. Fed by one LISTEN connection per process (PgClaimListener) that
// forwards the repository's pg_notify messages, so waiting is event-driven, never a spin.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace flywheel::annotation {

class ClaimNotifier {
 public:
  using Callback = std::function<void()>;

  // Registers a one-shot callback for a queue; returns its token. The callback runs on the
  // notifying thread, outside the notifier's lock, and must be quick (hand work to an executor).
  uint64_t Subscribe(const std::string& project_id, const std::string& queue_id, Callback callback);
  // Removes a subscription; false when it already fired (or never existed).
  bool Unsubscribe(uint64_t token);
  // Fires (and removes) every subscription of the queue.
  void Notify(const std::string& project_id, const std::string& queue_id);
  // Fires every subscription (e.g. after the listener reconnected and may have missed messages).
  void NotifyAll();
  size_t waiting() const;

 private:
  using Key = std::pair<std::string, std::string>;
  mutable std::mutex mu_;
  uint64_t next_token_ = 1;
  std::map<uint64_t, std::pair<Key, Callback>> subscriptions_;
  std::multimap<Key, uint64_t> by_queue_;
};

}  // namespace flywheel::annotation
