// The lifecycle table of cyborgfs/lifecycle.h, row by row: every event in
// every state, what it makes of the record, and that the result keeps the
// invariants.
#include "cyborgfs/lifecycle.h"

#include <gtest/gtest.h>

#include <vector>

namespace cyborgfs {
namespace {

const AttachTarget kVm{AttachTarget::Kind::kVm, "11111111-2222-4333-8444-555555555555"};
const AttachTarget kOtherVm{AttachTarget::Kind::kVm, "66666666-7777-4888-9999-aaaaaaaaaaaa"};

// A record of the fake driver in `state`.
Accelerator InState(State state, bool attached, bool detaching = false) {
  Accelerator a;
  a.uuid = "8e45a2ea-5364-4b0d-a252-bf8becaa606e";
  a.driver = "fake";
  a.state = state;
  if (attached) {
    a.attachment = kVm.ToString();
    a.attach_handle = R"({"type":"TEST_PCI"})";
  }
  a.detaching = detaching;
  return a;
}

struct Row {
  const char* name;
  Accelerator from;
  Event event;
  bool allowed;
  State to;
  bool attached;
  bool detaching;
};

TEST(Lifecycle, EveryTransitionOfTheTable) {
  const Accelerator available = InState(State::kAvailable, false);
  const Accelerator attached = InState(State::kAttached, true);
  const Accelerator detach_failed = InState(State::kError, true, true);
  const Accelerator restore_failed = InState(State::kError, true, false);
  const Accelerator offline_detached = InState(State::kOffline, false);
  const Accelerator offline_attached = InState(State::kOffline, true);
  const Accelerator offline_detaching = InState(State::kOffline, true, true);
  const std::vector<Row> rows = {
      {"available -> attached", available, Event::kAttach, true, State::kAttached, true, false},
      {"attached -> attached (again)", attached, Event::kAttach, true, State::kAttached, true, false},
      {"attached -> available", attached, Event::kDetach, true, State::kAvailable, false, false},
      {"attached -> error(detaching)", attached, Event::kDetachFailed, true, State::kError, true, true},
      {"error(detaching) -> available", detach_failed, Event::kDetach, true, State::kAvailable, false, false},
      {"error(detaching) -> error(detaching)", detach_failed, Event::kDetachFailed, true, State::kError, true, true},
      {"error(detaching) -> attached", detach_failed, Event::kAttach, true, State::kAttached, true, false},
      {"error(restore) -> attached", restore_failed, Event::kAttach, true, State::kAttached, true, false},
      {"error(restore) -> available", restore_failed, Event::kDetach, true, State::kAvailable, false, false},
      {"attached -> error(restore)", attached, Event::kRestoreFailed, true, State::kError, true, false},
      {"error(restore) -> error(restore)", restore_failed, Event::kRestoreFailed, true, State::kError, true, false},
      {"available -> offline", available, Event::kUnreported, true, State::kOffline, false, false},
      {"attached -> offline", attached, Event::kUnreported, true, State::kOffline, true, false},
      {"error(detaching) -> offline", detach_failed, Event::kUnreported, true, State::kOffline, true, true},
      {"offline -> available", offline_detached, Event::kReported, true, State::kAvailable, false, false},
      {"offline -> attached", offline_attached, Event::kReported, true, State::kAttached, true, false},
      {"offline -> error(detaching)", offline_detaching, Event::kReported, true, State::kError, true, true},
      {"offline -> offline, detached", offline_attached, Event::kDetach, true, State::kOffline, false, false},
      {"reported, not offline: unchanged", attached, Event::kReported, true, State::kAttached, true, false},
      {"available: detach is a no-op", available, Event::kDetach, true, State::kAvailable, false, false},
      // Refused: the Service says why before it would get here.
      {"offline: no attach", offline_detached, Event::kAttach, false, State::kOffline, false, false},
      {"available: no detach failure", available, Event::kDetachFailed, false, State::kAvailable, false, false},
      {"offline: no detach failure", offline_attached, Event::kDetachFailed, false, State::kOffline, true, false},
      {"available: no restore failure", available, Event::kRestoreFailed, false, State::kAvailable, false, false},
      {"detaching: no restore failure", detach_failed, Event::kRestoreFailed, false, State::kError, true, true},
      {"offline: no restore failure", offline_attached, Event::kRestoreFailed, false, State::kOffline, true, false},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    Accelerator a = row.from;
    ASSERT_TRUE(CheckInvariants(a).ok()) << CheckInvariants(a).message();
    Status s = Transition(a, row.event, &kVm, R"({"type":"TEST_PCI"})");
    EXPECT_EQ(s.ok(), row.allowed) << s.message();
    EXPECT_EQ(a.state, row.to);
    EXPECT_EQ(!a.attachment.empty(), row.attached);
    EXPECT_EQ(a.detaching, row.detaching);
    EXPECT_EQ(a.attach_handle.empty(), !row.attached);
    EXPECT_TRUE(CheckInvariants(a).ok()) << CheckInvariants(a).message();
  }
}

TEST(Lifecycle, AttachToAnotherTargetIsRefused) {
  Accelerator a = InState(State::kAttached, true);
  EXPECT_FALSE(Transition(a, Event::kAttach, &kOtherVm).ok());
  EXPECT_EQ(a.attachment, kVm.ToString());
}

TEST(Lifecycle, ARecordMadeByHandHasNoHostSide) {
  Accelerator a;
  a.uuid = "8e45a2ea-5364-4b0d-a252-bf8becaa606e";
  ASSERT_TRUE(Transition(a, Event::kAttach, &kVm).ok());
  EXPECT_EQ(a.state, State::kAttached);
  EXPECT_FALSE(Transition(a, Event::kDetachFailed).ok());
  EXPECT_FALSE(Transition(a, Event::kUnreported).ok());
  EXPECT_FALSE(Transition(a, Event::kReported).ok());
  ASSERT_TRUE(Transition(a, Event::kDetach).ok());
  EXPECT_EQ(a.state, State::kAvailable);
}

TEST(Lifecycle, InvariantsNameWhatIsBroken) {
  Accelerator a = InState(State::kAvailable, true);
  EXPECT_NE(CheckInvariants(a).message().find("1: available is detached"), std::string::npos);
  a = InState(State::kError, false);
  EXPECT_NE(CheckInvariants(a).message().find("3: error keeps the attachment"), std::string::npos);
  a = InState(State::kOffline, false);
  a.driver.clear();
  EXPECT_FALSE(CheckInvariants(a).ok());
  a = InState(State::kAvailable, false);
  a.attach_handle = "{}";
  EXPECT_NE(CheckInvariants(a).message().find("6:"), std::string::npos);
}

}  // namespace
}  // namespace cyborgfs
