#pragma once

// A server-streaming reactor that writes the messages of a MessageSource. Database work (opening
// the source, which authenticates, and fetching each batch) runs on the BoundedExecutor, never on
// a gRPC thread; writes happen one at a time while the next batch is already being fetched, and
// each message carries many cases, so a large snapshot costs few syscalls and no reactor blocks.

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "common/log/logger.h"
#include "common/server/executor.h"
#include "common/status/grpc_status.h"
#include "services/evalset/evalset_logic.h"

namespace flywheel::evalset {

template <typename Message>
class SourceWriteReactor final : public grpc::ServerWriteReactor<Message> {
 public:
  using Opener = std::function<absl::StatusOr<std::unique_ptr<MessageSource<Message>>>()>;

  SourceWriteReactor(BoundedExecutor* executor, Logger* logger, const char* method, Opener opener)
      : executor_(executor), logger_(logger), method_(method), opener_(std::move(opener)) {
    fetching_ = true;
    ScheduleFetch();
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;  // the stream broke: the client went away
    }
    Pump();
  }

  void OnCancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
    }
    Pump();
  }

  void OnDone() override {
    bool remove = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      remove = !fetching_;
    }
    // A fetch still running deletes the reactor when it returns.
    if (remove) delete this;
  }

 private:
  // Batches of messages queued beyond the one being written before prefetching stops.
  static constexpr size_t kPrefetchMessages = 32;

  void ScheduleFetch() {
    if (executor_->TrySubmit([this] { Fetch(); })) return;
    bool remove = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      fetching_ = false;
      status_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "server busy; retry");
      remove = done_;
    }
    if (remove) {
      delete this;
      return;
    }
    Pump();
  }

  void Fetch() {
    absl::Status status;
    std::vector<Message> batch;
    bool more = false;
    if (!source_) {
      absl::StatusOr<std::unique_ptr<MessageSource<Message>>> opened = opener_();
      if (opened.ok()) {
        source_ = std::move(*opened);
      } else {
        status = opened.status();
      }
    }
    if (status.ok()) {
      absl::StatusOr<bool> next = source_->Next(&batch);
      if (next.ok()) {
        more = *next;
      } else {
        status = next.status();
      }
    }
    if (!status.ok() && (status.code() == absl::StatusCode::kInternal ||
                         status.code() == absl::StatusCode::kUnknown)) {
      logger_->Error("stream failed", {{"method", method_}, {"status", status.ToString()}});
    }
    bool remove = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      fetching_ = false;
      if (!status.ok()) {
        status_ = ToGrpcStatus(status);
      } else {
        for (Message& m : batch) pending_.push_back(std::move(m));
        more_ = more;
      }
      remove = done_;
    }
    if (remove) {
      delete this;
      return;
    }
    Pump();
  }

  // Decides the next step under the lock and performs it outside (reactions may run inline).
  void Pump() {
    bool write = false, fetch = false, finish = false, more_queued = false;
    grpc::Status finish_status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      const bool failed = !status_.ok() || cancelled_;
      if (writing_) {
        // Nothing to do until the write completes, except keeping the next batch coming.
      } else if (failed) {
        finished_ = true;
        finish = true;
        finish_status =
            cancelled_ ? grpc::Status(grpc::StatusCode::CANCELLED, "cancelled") : status_;
      } else if (!pending_.empty()) {
        current_ = std::move(pending_.front());
        pending_.pop_front();
        writing_ = true;
        write = true;
        more_queued = !pending_.empty();
      } else if (!more_ && !fetching_) {
        finished_ = true;
        finish = true;
        finish_status = grpc::Status::OK;
      }
      if (!finish && !failed && more_ && !fetching_ && pending_.size() < kPrefetchMessages) {
        fetching_ = true;
        fetch = true;
      }
    }
    // With more messages queued, let gRPC coalesce this one with the next into fewer frames and
    // syscalls; the last queued message goes out unhinted, which flushes the buffer.
    if (write) {
      this->StartWrite(&current_,
                       more_queued ? grpc::WriteOptions().set_buffer_hint() : grpc::WriteOptions());
    }
    if (finish) this->Finish(finish_status);
    if (fetch) ScheduleFetch();
  }

  BoundedExecutor* const executor_;
  Logger* const logger_;
  const char* const method_;
  Opener opener_;
  std::unique_ptr<MessageSource<Message>> source_;  // used by one fetch at a time

  std::mutex mu_;
  std::deque<Message> pending_;
  Message current_;
  bool writing_ = false;
  bool fetching_ = false;
  bool more_ = true;
  bool finished_ = false;
  bool done_ = false;
  bool cancelled_ = false;
  grpc::Status status_;
};

}  // namespace flywheel::evalset
