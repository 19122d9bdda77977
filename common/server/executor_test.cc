#include "common/server/executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <vector>

#include "absl/time/clock.h"

namespace flywheel {
namespace {

TEST(BoundedExecutorTest, RunsEveryAcceptedTaskBeforeDestruction) {
  std::atomic<int> ran{0};
  {
    BoundedExecutor executor(2, 100);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(executor.TrySubmit([&] { ++ran; }));
  }
  EXPECT_EQ(ran.load(), 50);
}

TEST(BoundedExecutorTest, RefusesWorkBeyondItsQueueBound) {
  BoundedExecutor executor(1, 2);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  ASSERT_TRUE(executor.TrySubmit([&, released] {
    started.set_value();
    released.wait();
  }));
  started.get_future().wait();  // the only thread is busy now
  EXPECT_TRUE(executor.TrySubmit([] {}));
  EXPECT_TRUE(executor.TrySubmit([] {}));
  EXPECT_FALSE(executor.TrySubmit([] {}));
  release.set_value();
}

}  // namespace
}  // namespace flywheel

#include "common/server/scheduler.h"

namespace flywheel {
namespace {

TEST(SchedulerTest, RunsCallbacksInDueOrderAfterTheirDelay) {
  Scheduler scheduler;
  std::mutex mu;
  std::vector<int> order;
  std::promise<void> done;
  const absl::Time start = absl::Now();
  scheduler.RunAfter(absl::Milliseconds(60), [&] {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(2);
    done.set_value();
  });
  scheduler.RunAfter(absl::Milliseconds(10), [&] {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(1);
  });
  done.get_future().wait();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(60));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace flywheel
