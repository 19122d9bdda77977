#include "services/annotation/pg_claim_listener.h"

#include <algorithm>
#include <chrono>
#include <pqxx/pqxx>

#include "services/annotation/pg_annotation_repository.h"

namespace flywheel::annotation {
namespace {

class Receiver final : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& connection, ClaimNotifier* notifier)
      : pqxx::notification_receiver(connection, kClaimableChannel), notifier_(notifier) {}

  void operator()(const std::string& payload, int /*backend_pid*/) override {
    const size_t tab = payload.find('\t');
    if (tab == std::string::npos) return;
    notifier_->Notify(payload.substr(0, tab), payload.substr(tab + 1));
  }

 private:
  ClaimNotifier* const notifier_;
};

}  // namespace

PgClaimListener::PgClaimListener(std::string conninfo, ClaimNotifier* notifier, Logger* logger)
    : conninfo_(std::move(conninfo)), notifier_(notifier), logger_(logger) {
  thread_ = std::thread([this] { Run(); });
}

PgClaimListener::~PgClaimListener() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void PgClaimListener::Run() {
  int failures = 0;
  while (!stopping_) {
    try {
      pqxx::connection connection(conninfo_);
      Receiver receiver(connection, notifier_);
      // LISTEN is issued by the receiver; a round trip makes sure it is in place.
      pqxx::nontransaction(connection).exec("SELECT 1");
      listening_ = true;
      if (failures > 0) {
        logger_->Info("claim listener reconnected", {});
        notifier_->NotifyAll();
      }
      failures = 0;
      while (!stopping_) {
        // Wakes at least every 200 ms to notice shutdown; notifications arrive immediately.
        connection.await_notification(0, 200000);
      }
    } catch (const std::exception& e) {
      listening_ = false;
      ++failures;
      if (failures == 1 || failures % 60 == 0) {
        logger_->Warn("claim listener connection failed; retrying", {{"error", e.what()}});
      }
      // Waiters re-check on their own deadline; wake them now so none waits on a dead channel.
      notifier_->NotifyAll();
      const int backoff_ms = std::min(5000, 100 * (1 << std::min(failures, 6)));
      for (int waited = 0; waited < backoff_ms && !stopping_; waited += 50) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }
  listening_ = false;
}

}  // namespace flywheel::annotation
