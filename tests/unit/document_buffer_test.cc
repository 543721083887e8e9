#include "document_buffer.h"

#include <gtest/gtest.h>

namespace cyborgfs {
namespace {

TEST(DocumentBuffer, ReturnsTheDocumentWhenTheWriteCompletesIt) {
  DocumentBuffer buffer;
  auto first = buffer.Add(0, "{\"num\":", "");
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->has_value());
  ASSERT_TRUE(buffer.Pending().has_value());  // incomplete: waiting for the rest
  EXPECT_EQ(buffer.Pending()->code(), Code::kInvalid);
  auto second = buffer.Add(7, " 1}\n", "");
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(second->has_value());
  EXPECT_EQ((*second)->bytes, "{\"num\": 1}\n");
  EXPECT_EQ((*second)->document["num"], 1);
  EXPECT_FALSE(buffer.Pending().has_value());
}

TEST(DocumentBuffer, ANewlineAfterTheDocumentIsARepeat) {
  DocumentBuffer buffer;
  ASSERT_TRUE(buffer.Add(0, "{}", "").ok());
  auto again = buffer.Add(2, "\n", "{}");  // lands on the value the document became
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_TRUE((*again)->repeat);
  EXPECT_EQ((*again)->bytes, "{}\n");
}

TEST(DocumentBuffer, OffsetZeroStartsANewValue) {
  DocumentBuffer buffer;
  ASSERT_TRUE(buffer.Add(0, "{\"a\": [1, 2, 3", "").ok());
  auto fresh = buffer.Add(0, "{}", "");
  ASSERT_TRUE(fresh.ok() && fresh->has_value());
  EXPECT_EQ((*fresh)->bytes, "{}");
  EXPECT_FALSE((*fresh)->repeat);
}

TEST(DocumentBuffer, SkippedBytesKeepTheOldValueLikeARegularFile) {
  const std::string old = "{\"num\": 1, \"device_type\": \"GPU\"}\n";
  DocumentBuffer buffer;
  // rsync --inplace: the first block changed, the second is skipped as unchanged.
  ASSERT_TRUE(buffer.Add(0, "{\"num\": 2", old).ok());
  auto done = buffer.Add(26, "\"FPGA\"}\n", old);
  ASSERT_TRUE(done.ok() && done->has_value());
  EXPECT_EQ((*done)->bytes, "{\"num\": 2, \"device_type\": \"FPGA\"}\n");
}

TEST(DocumentBuffer, AppendingToTheOldValueIsParsedWhole) {
  const std::string old = "{\"num\": 1}\n";
  DocumentBuffer buffer;
  Status appended = buffer.Add(old.size(), "{\"num\": 2}\n", old).status();
  EXPECT_EQ(appended.code(), Code::kInvalid);
  EXPECT_NE(appended.message().find("line 2"), std::string::npos) << appended.message();
}

TEST(DocumentBuffer, SkippingPastTheOldValueIsRefused) {
  DocumentBuffer buffer;
  EXPECT_EQ(buffer.Add(5, "{}", "").status().code(), Code::kInvalid);
  ASSERT_TRUE(buffer.Add(0, "{", "{}").ok());
  EXPECT_EQ(buffer.Add(3, "}", "{}").status().code(), Code::kInvalid);
}

TEST(DocumentBuffer, TruncateResizesOnlyAValueBeingWritten) {
  const std::string old = "{\"num\": 1}\n";
  DocumentBuffer buffer;
  auto alone = buffer.Truncate(3, old);  // nothing being written: no change
  ASSERT_TRUE(alone.ok());
  EXPECT_FALSE(alone->has_value());
  EXPECT_FALSE(buffer.Pending().has_value());
  // rsync --inplace writing a shorter document, then cutting the file to its length.
  auto written = buffer.Add(0, "{\"a\":1}  ", old);
  ASSERT_TRUE(written.ok() && written->has_value());
  auto cut = buffer.Truncate(7, (*written)->bytes);  // the value it became
  ASSERT_TRUE(cut.ok() && cut->has_value());
  EXPECT_EQ((*cut)->bytes, "{\"a\":1}");
  // A truncate to 0 forgets what is pending; the next write starts the value.
  ASSERT_TRUE(buffer.Add(0, "{\"a\":", old).ok());
  ASSERT_TRUE(buffer.Truncate(0, old).ok());
  EXPECT_FALSE(buffer.Pending().has_value());
}

TEST(DocumentBuffer, AWriterAtAnOffsetAfterACompletedDocumentStartsFromTheValue) {
  // rsync --inplace rewriting a 20-byte value with a 12-byte one that shares its start.
  const std::string old = "{\"a\": \"xxxxxxxxxx\"}";
  DocumentBuffer buffer;
  auto first = buffer.Add(0, old, "{}");
  ASSERT_TRUE(first.ok() && first->has_value());
  auto shorter = buffer.Add(6, "\"xy\"}", old);
  ASSERT_TRUE(shorter.ok() && shorter->has_value());
  EXPECT_EQ((*shorter)->bytes, "{\"a\": \"xy\"}");
}

TEST(DocumentBuffer, WhatAWriterLeftIsForgottenOnceQuiet) {
  DocumentBuffer buffer(std::chrono::milliseconds(0));  // every write comes after a quiet spell
  ASSERT_TRUE(buffer.Add(0, "{\"a\": [", "{}").ok());
  ASSERT_TRUE(buffer.Pending().has_value());
  auto later = buffer.Add(1, "}", "{}");  // a new writer: lands on the value
  ASSERT_TRUE(later.ok() && later->has_value());
  EXPECT_EQ((*later)->bytes, "{}");
}

TEST(DocumentBuffer, ARefusedValueStaysRefusedUntilOffsetZero) {
  DocumentBuffer buffer;
  Status bad = buffer.Add(0, "{\n  \"a\": 1\n  \"b\"", "").status();
  EXPECT_EQ(bad.code(), Code::kInvalid);
  Status rest = buffer.Add(11, "}\n", "").status();  // the writer retries at the old position
  EXPECT_EQ(rest.message(), bad.message());
  EXPECT_TRUE(buffer.Add(0, "{}", "").ok());
}

TEST(DocumentBuffer, TheWriteThatCrossesTheBoundIsEfbig) {
  DocumentBuffer buffer;
  const std::string piece = "{\"blob\": \"" + std::string(60000, 'x');
  ASSERT_TRUE(buffer.Add(0, piece, "").ok());
  EXPECT_EQ(buffer.Add(piece.size(), std::string(8000, 'y'), "").status().code(), Code::kTooLarge);
  EXPECT_EQ(buffer.Add(piece.size() + 8000, "\"}", "").status().code(), Code::kTooLarge);
  EXPECT_FALSE(buffer.Pending().has_value());  // refused, not pending
}

TEST(DocumentBuffer, PendingExplainsIncompleteBytesUntilDropped) {
  DocumentBuffer buffer;
  ASSERT_TRUE(buffer.Add(0, "{", "").ok());
  auto pending = buffer.Pending();
  ASSERT_TRUE(pending.has_value());
  EXPECT_NE(pending->message().find("incomplete"), std::string::npos);
  buffer.Drop();
  EXPECT_FALSE(buffer.Pending().has_value());
}

TEST(DocumentBuffer, APatchInsideTheValueIsTheValueWithThoseBytes) {
  // dd conv=notrunc seek=8 bs=1 count=1, or a python seek(8) + write("2").
  const std::string old = "{\"num\": 1, \"device_type\": \"GPU\"}\n";
  DocumentBuffer buffer;
  auto patched = buffer.Add(8, "2", old);
  ASSERT_TRUE(patched.ok() && patched->has_value()) << patched.status().message();
  EXPECT_EQ((*patched)->bytes, "{\"num\": 2, \"device_type\": \"GPU\"}\n");
  EXPECT_FALSE(buffer.Pending().has_value());
}

TEST(DocumentBuffer, TheRestOfADocumentForgottenUnfinishedIsRefused) {
  // ( printf '{"num": 9,\n'; sleep 6; printf ' "device_type": "CRYPTO"}' ) > spec
  const std::string old = "{\"num\": 1, \"device_type\": \"GPU\"}\n";
  DocumentBuffer buffer(std::chrono::milliseconds(0));  // every write comes after a quiet spell
  ASSERT_TRUE(buffer.Add(0, "{\"num\": 9,\n", old).ok());
  Status rest = buffer.Add(11, " \"device_type\": \"CRYPTO\"}", old).status();
  EXPECT_EQ(rest.code(), Code::kInvalid);
  EXPECT_NE(rest.message().find("first 11 bytes were forgotten"), std::string::npos) << rest.message();
  EXPECT_EQ(buffer.Add(36, "\n", old).status().code(), Code::kInvalid);  // and what follows it
  auto whole = buffer.Add(0, "{\"num\": 9}", old);
  ASSERT_TRUE(whole.ok() && whole->has_value());
}

TEST(DocumentBuffer, ACreateBodyThatNamesAKeyTwiceIsRefused) {
  DocumentBuffer buffer(DocumentBuffer::kQuiet, DuplicateKeys::kRefused);
  Status twice = buffer.Add(0, "{\"name\": \"a\", \"name\": \"b\"}", "").status();
  EXPECT_EQ(twice.code(), Code::kInvalid);
  EXPECT_NE(twice.message().find("\"name\" is given twice"), std::string::npos) << twice.message();
  DocumentBuffer nested(DocumentBuffer::kQuiet, DuplicateKeys::kRefused);  // the same key in two objects is fine
  auto fine = nested.Add(0, "{\"a\": {\"x\": 1}, \"b\": {\"x\": 2}}", "");
  ASSERT_TRUE(fine.ok() && fine->has_value());
}

}  // namespace
}  // namespace cyborgfs
