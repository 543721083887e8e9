#include "renderings.h"

#include <gtest/gtest.h>

#include <functional>
#include <set>

namespace cyborgfs::fs {
namespace {

using std::chrono::milliseconds;
constexpr auto kLook = Renderings::Ask::kAttributes;
constexpr auto kBytes = Renderings::Ask::kBytes;

// Renders "v1", "v2", ...: a file that changes at every look.
struct Changing {
  int renders = 0;
  Result<Renderings::Rendering> operator()() {
    Renderings::Rendering r;
    r.text = std::make_shared<const std::string>("v" + std::to_string(++renders));
    r.mode = 0100444;
    return r;
  }
};

std::string Text(const Result<Renderings::Held>& held) { return *(*held)->text; }

TEST(Renderings, AReaderWhoseRequestsFollowEachOtherReadsOneRendering) {
  Renderings renderings;
  Changing file;
  const auto t = Renderings::Clock::now();
  EXPECT_EQ(Text(renderings.For(7, 100, kLook, t, std::ref(file))), "v1");                     // GETATTR
  EXPECT_EQ(Text(renderings.For(7, 100, kBytes, t + milliseconds(1), std::ref(file))), "v1");  // READ
  EXPECT_EQ(Text(renderings.For(7, 100, kLook, t + milliseconds(2), std::ref(file))), "v1");   // GETATTR at the end
  EXPECT_EQ(file.renders, 1);
}

TEST(Renderings, EachRenderingHasAnMtimeOfItsOwn) {
  Renderings renderings;
  Changing file;
  const auto t = Renderings::Clock::now();
  auto first = renderings.For(7, 100, kLook, t, std::ref(file));
  auto second = renderings.For(7, 200, kLook, t, std::ref(file));
  EXPECT_NE((*first)->mtime.tv_nsec, (*second)->mtime.tv_nsec);  // the kernel drops the other's pages
}

TEST(Renderings, AnotherReaderAndAnotherFileGetTheirOwn) {
  Renderings renderings;
  Changing file;
  const auto t = Renderings::Clock::now();
  EXPECT_EQ(Text(renderings.For(7, 100, kLook, t, std::ref(file))), "v1");
  EXPECT_EQ(Text(renderings.For(7, 200, kLook, t, std::ref(file))), "v2");
  EXPECT_EQ(Text(renderings.For(8, 100, kLook, t, std::ref(file))), "v3");
  EXPECT_EQ(Text(renderings.For(7, 100, kLook, t, std::ref(file))), "v1");
}

TEST(Renderings, TheLookAfterTheLastByteEndsTheLoopAndTheNextRendersAnew) {
  Renderings renderings;
  Changing file;
  const auto t = Renderings::Clock::now();
  auto first = renderings.For(7, 100, kLook, t, std::ref(file));
  const auto late = t + Renderings::kAtMost - milliseconds(1);
  for (auto at = t; at < late; at += milliseconds(1))
    ASSERT_EQ(Text(renderings.For(7, 100, kLook, at, std::ref(file))), "v1");
  ASSERT_EQ(Text(renderings.For(7, 100, kBytes, late, std::ref(file))), "v1");
  renderings.ReadToEnd(7, 100, *first);
  // The end-of-file check of the loop, past kAtMost too:
  EXPECT_EQ(Text(renderings.For(7, 100, kLook, late + milliseconds(2), std::ref(file))), "v1");
  // The next read(2) loop of the same thread, at once:
  EXPECT_EQ(Text(renderings.For(7, 100, kLook, late + milliseconds(2), std::ref(file))), "v2");
}

TEST(Renderings, AReadToTheEndOfAnotherRenderingEndsNothing) {
  Renderings renderings;
  Changing file;
  const auto t = Renderings::Clock::now();
  auto first = renderings.For(7, 100, kLook, t, std::ref(file));
  auto other = renderings.For(7, 200, kLook, t, std::ref(file));
  renderings.ReadToEnd(7, 100, *other);
  renderings.ReadToEnd(8, 100, *first);
  EXPECT_EQ(Text(renderings.For(7, 100, kLook, t, std::ref(file))), "v1");
  EXPECT_EQ(Text(renderings.For(7, 100, kLook, t, std::ref(file))), "v1");
}

TEST(Renderings, AReaderThatComesBackLaterReadsAfresh) {
  Renderings renderings;
  Changing file;
  const auto t = Renderings::Clock::now();
  EXPECT_EQ(Text(renderings.For(7, 100, kLook, t, std::ref(file))), "v1");
  EXPECT_EQ(Text(renderings.For(7, 100, kLook, t + Renderings::kIdle, std::ref(file))), "v2");
}

TEST(Renderings, AReaderThatNeverPausesReadsAValueAtMostkAtMostOld) {
  Renderings renderings;
  Changing file;
  const auto t = Renderings::Clock::now();
  const auto step = milliseconds(1);
  static_assert(milliseconds(1) < Renderings::kIdle);
  std::set<std::string> seen;
  for (auto at = t; at < t + 3 * Renderings::kAtMost; at += step) {
    seen.insert(Text(renderings.For(7, 100, kLook, at, std::ref(file))));
  }
  EXPECT_EQ(seen.size(), 3u);  // one per kAtMost
}

TEST(Renderings, AFailedRenderingIsNotKeptAndOldOnesAreForgotten) {
  Renderings renderings;
  const auto t = Renderings::Clock::now();
  auto gone = renderings.For(7, 100, kLook, t, [] { return Result<Renderings::Rendering>(Status::NotFound("gone")); });
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), Code::kNotFound);
  EXPECT_EQ(renderings.Size(), 0u);
  Changing file;
  for (pid_t reader = 1; reader <= 1000; ++reader)
    ASSERT_TRUE(renderings.For(7, reader, kLook, t, std::ref(file)).ok());
  EXPECT_EQ(renderings.Size(), 1000u);
  ASSERT_TRUE(renderings.For(8, 1, kLook, t + Renderings::kAtMost + Renderings::kIdle, std::ref(file)).ok());
  EXPECT_EQ(renderings.Size(), 1u);  // only the new one
}

}  // namespace
}  // namespace cyborgfs::fs
