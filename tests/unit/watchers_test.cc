#include "watchers.h"

#include <gtest/gtest.h>

#include <set>

namespace cyborgfs::fs {
namespace {

std::set<pid_t> ended;  // the threads the tests say have ended
bool Alive(pid_t tid) { return !ended.count(tid); }

using Clock = Watchers::Clock;

TEST(WatchersTest, APollSaysChangedOncePerChangeSinceTheLast) {
  Watchers watchers(Alive);
  const Clock::time_point t = Clock::now();
  EXPECT_FALSE(watchers.Poll(7, 100, nullptr, t)) << "the first poll: what was read is what it is told of";
  EXPECT_FALSE(watchers.Poll(7, 100, nullptr, t));
  watchers.Changed(8);  // another file
  EXPECT_FALSE(watchers.Poll(7, 100, nullptr, t));
  watchers.Changed(7);
  watchers.Changed(7);  // two changes before it polls: one wake
  EXPECT_TRUE(watchers.Poll(7, 100, nullptr, t));
  EXPECT_FALSE(watchers.Poll(7, 100, nullptr, t));
  EXPECT_FALSE(watchers.Poll(7, 101, nullptr, t)) << "another thread's first poll";
  watchers.Changed(7);
  EXPECT_TRUE(watchers.Poll(7, 101, nullptr, t));
  EXPECT_TRUE(watchers.Poll(7, 100, nullptr, t));
  EXPECT_TRUE(watchers.Watching(7));
  EXPECT_FALSE(watchers.Watching(8));
}

TEST(WatchersTest, AnEndedWatcherIsForgottenAndSoIsOneQuietForLong) {
  Watchers watchers(Alive);
  const Clock::time_point t = Clock::now();
  for (pid_t tid = 200; tid < 210; ++tid) watchers.Poll(7, tid, nullptr, t);
  watchers.Poll(9, 300, nullptr, t);
  EXPECT_EQ(watchers.Size(t), 11u);
  for (pid_t tid = 200; tid < 210; ++tid) ended.insert(tid);
  EXPECT_EQ(watchers.Size(t), 1u) << "their threads ended";
  EXPECT_FALSE(watchers.Watching(7));
  EXPECT_EQ(watchers.Size(t + Watchers::kForgetAfter), 1u);
  EXPECT_EQ(watchers.Size(t + Watchers::kForgetAfter + std::chrono::seconds(1)), 0u) << "no poll for long";
  EXPECT_FALSE(watchers.Poll(9, 300, nullptr, t + std::chrono::seconds(60))) << "a new first poll";
}

}  // namespace
}  // namespace cyborgfs::fs
