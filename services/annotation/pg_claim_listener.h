#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "common/log/logger.h"
#include "services/annotation/claim_notifier.h"

namespace flywheel::annotation {

// One dedicated PostgreSQL connection per process that LISTENs on the claimable channel
// (kClaimableChannel) and forwards each notification ("<project>\t<queue>") to a ClaimNotifier.
// Reconnects with backoff after a failure, then wakes every waiter (messages may have been lost
// meanwhile) so that they re-check the database.
class PgClaimListener {
 public:
  PgClaimListener(std::string conninfo, ClaimNotifier* notifier, Logger* logger);
  ~PgClaimListener();
  PgClaimListener(const PgClaimListener&) = delete;
  PgClaimListener& operator=(const PgClaimListener&) = delete;

  // True once the LISTEN is in place (for tests).
  bool listening() const { return listening_.load(); }

 private:
  void Run();

  const std::string conninfo_;
  ClaimNotifier* const notifier_;
  Logger* const logger_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> listening_{false};
  std::thread thread_;
};

}  // namespace flywheel::annotation
