#include "scratch.h"

#include <gtest/gtest.h>

namespace cyborgfs {
namespace {

ScratchSpace::Entry Make(ScratchSpace& space, int64_t folder, const std::string& name, bool is_folder = false) {
  auto made = space.Create(folder, name, is_folder, ScratchMeta{});
  EXPECT_TRUE(made.ok()) << made.status().message();
  return made.ok() ? *made : nullptr;
}

TEST(ScratchFile, BehavesLikeARegularFile) {
  ScratchSpace space;
  auto file = Make(space, 1, "sedAbc123");
  ASSERT_TRUE(file->Write(0, "hello").ok());
  ASSERT_TRUE(file->Write(7, "!").ok());  // past the end: zeros between
  EXPECT_EQ(file->content(), std::string("hello\0\0!", 8));
  EXPECT_EQ(file->Read(1, 3), "ell");
  EXPECT_EQ(file->Read(100, 3), "");
  ASSERT_TRUE(file->Truncate(2).ok());
  EXPECT_EQ(file->content(), "he");
  file->SetMode(0100640);
  file->SetOwner(5, static_cast<gid_t>(-1));
  EXPECT_EQ(file->meta().mode, 0640u);
  EXPECT_EQ(file->meta().uid, 5u);
}

TEST(ScratchFile, IsBoundedInSize) {
  ScratchSpace space;
  auto file = Make(space, 1, "big");
  EXPECT_TRUE(file->Write(0, std::string(kMaxScratchBytes, 'x')).ok());
  EXPECT_EQ(file->Write(kMaxScratchBytes, "y").code(), Code::kTooLarge);
  EXPECT_EQ(file->Truncate(kMaxScratchBytes + 1).code(), Code::kTooLarge);
  EXPECT_EQ(file->size(), kMaxScratchBytes);
}

TEST(ScratchSpace, NamesAreExclusiveAndFoldersBounded) {
  ScratchSpace space;
  Make(space, 1, "a");
  EXPECT_EQ(space.Create(1, "a", false, ScratchMeta{}).status().code(), Code::kExists);
  EXPECT_TRUE(space.Create(2, "a", false, ScratchMeta{}).ok());  // another folder
  for (size_t n = 1; n < kMaxScratchEntries; ++n) Make(space, 1, "f" + std::to_string(n));
  EXPECT_EQ(space.Create(1, "one-more", false, ScratchMeta{}).status().code(), Code::kNoSpace);
  EXPECT_EQ(space.List(1).size(), kMaxScratchEntries);
}

TEST(ScratchSpace, RemoveTellsFilesFromFolders) {
  ScratchSpace space;
  auto file = Make(space, 1, "tmp");
  Make(space, 1, "spec.lock", true);
  EXPECT_EQ(space.Remove(1, "tmp", true).code(), Code::kNotFolder);
  EXPECT_EQ(space.Remove(1, "spec.lock", false).code(), Code::kIsFolder);
  EXPECT_TRUE(space.Remove(1, "spec.lock", true).ok());
  EXPECT_TRUE(space.Remove(1, "tmp", false).ok());
  EXPECT_EQ(space.Remove(1, "tmp", false).code(), Code::kNotFound);
  EXPECT_FALSE(file->linked());
  EXPECT_TRUE(space.Empty(1));
}

TEST(ScratchSpace, MoveReplacesUnlessNoReplace) {
  ScratchSpace space;
  auto first = Make(space, 1, "a");
  auto second = Make(space, 1, "b");
  EXPECT_EQ(space.Move(1, "a", 1, "b", true).code(), Code::kExists);
  ASSERT_TRUE(space.Move(1, "a", 1, "b", false).ok());
  EXPECT_EQ(space.Find(1, "b"), first);
  EXPECT_EQ(space.Find(1, "a"), nullptr);
  EXPECT_FALSE(second->linked());
  ASSERT_TRUE(space.Move(1, "b", 2, "c", false).ok());
  EXPECT_EQ(space.Find(2, "c"), first);
  Make(space, 2, "dir", true);
  EXPECT_EQ(space.Move(2, "c", 2, "dir", false).code(), Code::kIsFolder);
}

TEST(ScratchSpace, CommitRemovesTheScratchOnlyWhenApplied) {
  ScratchSpace space;
  auto file = Make(space, 1, ".spec.XyZ");
  ASSERT_TRUE(file->Write(0, "{}\n").ok());
  std::string seen;
  Status refused = space.Commit(1, ".spec.XyZ", [&](const std::string& content) {
    seen = content;
    return Status::Invalid("no");
  });
  EXPECT_EQ(refused.code(), Code::kInvalid);
  EXPECT_EQ(seen, "{}\n");
  EXPECT_EQ(space.Find(1, ".spec.XyZ"), file);
  EXPECT_TRUE(space.Commit(1, ".spec.XyZ", [](const std::string&) { return Status::Ok(); }).ok());
  EXPECT_EQ(space.Find(1, ".spec.XyZ"), nullptr);
  EXPECT_FALSE(file->linked());
  EXPECT_EQ(space.Commit(1, ".spec.XyZ", [](const std::string&) { return Status::Ok(); }).code(), Code::kNotFound);
}

TEST(ScratchSpace, DropFolderUnlinksEverything) {
  ScratchSpace space;
  auto file = Make(space, 3, "x");
  space.DropFolder(3);
  EXPECT_TRUE(space.Empty(3));
  EXPECT_FALSE(file->linked());
}

}  // namespace
}  // namespace cyborgfs
