#include "common/server/executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

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
