#include "cyborgfs/values.h"

#include <gtest/gtest.h>

#include <string>

namespace cyborgfs {
namespace {

DocumentState StateOf(const std::string& text) { return ParseJsonDocument(text).state; }

TEST(ParseJsonDocument, TellsCompleteFromIncompleteFromInvalid) {
  EXPECT_EQ(StateOf("{}"), DocumentState::kComplete);
  EXPECT_EQ(StateOf("{\"a\": [1, 2]}\n\n"), DocumentState::kComplete);
  for (const char* prefix : {"{", "{\n", "{\"a\"", "{\"a\":", "{\"a\": tru", "{\"a\": \"ab", "{\"a\": 1.5e",
                             "{\"a\": -", "[1, 2", "{\"a\": \"\xc3"}) {
    EXPECT_EQ(StateOf(prefix), DocumentState::kIncomplete) << prefix;
  }
  for (const char* bad : {"", "  \n", "\t", "{\"num\": 1e999}", "{bad", "{\"a\" 1}", "{\"a\":1} x", "{\"a\":1} tr",
                          "{\"a\":1}}", "{\"a\": tru ", "]"}) {
    EXPECT_EQ(StateOf(bad), DocumentState::kInvalid) << bad;
  }
}

TEST(ParseJsonDocument, SaysWhereTheErrorIs) {
  ParsedDocument parsed = ParseJsonDocument("{\n  \"a\": 1\n  \"b\": 2\n}\n");
  ASSERT_EQ(parsed.state, DocumentState::kInvalid);
  EXPECT_EQ(parsed.error.code(), Code::kInvalid);
  EXPECT_EQ(parsed.error.message().rfind("line 3, column ", 0), 0u) << parsed.error.message();
  EXPECT_NE(parsed.error.message().find("expected '}'"), std::string::npos) << parsed.error.message();
}

TEST(ParseJsonDocument, BoundsNestingAt32Levels) {
  auto nested = [](int levels) { return std::string(levels, '[') + std::string(levels, ']'); };
  EXPECT_EQ(StateOf(nested(32)), DocumentState::kComplete);
  ParsedDocument deep = ParseJsonDocument(nested(33));
  EXPECT_EQ(deep.state, DocumentState::kInvalid);
  EXPECT_NE(deep.error.message().find("deeper than 32"), std::string::npos);
  EXPECT_EQ(StateOf(nested(100000)), DocumentState::kInvalid);  // no stack overflow
}

TEST(ValidateSpec, AcceptsTheCyborgExampleAndOtherKeys) {
  Json spec = Json::parse(R"({"remote":0,"num":1,"device_type":"CRYPTO",
      "acc_capability":{"num":2,"ipsec":{"aes":{"3des":50,"num":1}}},"vendor_specific":[1]})");
  EXPECT_TRUE(ValidateSpec(spec).ok());
  EXPECT_TRUE(ValidateSpec(Json::object()).ok());
}

TEST(ValidateSpec, RejectsWrongTypesAndRanges) {
  for (const char* bad :
       {"[]", "1", "{\"remote\":2}", "{\"remote\":true}", "{\"num\":0}", "{\"num\":-3}", "{\"num\":1.0}",
        "{\"num\":\"1\"}", "{\"device_type\":\"\"}", "{\"device_type\":null}", "{\"acc_capability\":[]}",
        "{\"acc_specs\":{\"num\":1}}", "{\"vgpu_type\":\"\"}", "{\"vgpu_type\":5}"}) {
    Status s = ValidateSpec(Json::parse(bad));
    EXPECT_EQ(s.code(), Code::kInvalid) << bad;
    EXPECT_FALSE(s.message().empty());
  }
}

TEST(ParseCreateRequest, FollowsTheCyborgSchema) {
  auto ok = ParseCreateRequest(Json::parse(R"({"name":"IPSec Card","uuid":"8E45A2EA-5364-4B0D-A252-BF8BECAA606E"})"));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->name, "IPSec Card");
  EXPECT_EQ(*ok->uuid, "8e45a2ea-5364-4b0d-a252-bf8becaa606e");
  EXPECT_FALSE(ParseCreateRequest(Json::parse(R"({"name":"x"})"))->uuid.has_value());
  for (const char* bad : {"{}", "[]", R"({"name":1})", R"({"name":""})", R"({"name":"a/b"})",
                          R"({"name":"x","uuid":"nope"})", R"({"name":"x","uuid":5})", R"({"name":"x","y":1})"}) {
    EXPECT_EQ(ParseCreateRequest(Json::parse(bad)).status().code(), Code::kInvalid) << bad;
  }
}

TEST(ValidateName, FollowsTheFileNameRules) {
  EXPECT_TRUE(ValidateName("IPSec Card").ok());
  EXPECT_TRUE(ValidateName(std::string(255, 'x')).ok());
  for (std::string bad : {std::string(), std::string("."), std::string(".."), std::string("a/b"), std::string("a\nb"),
                          std::string("a\0b", 3), std::string(256, 'x')}) {
    EXPECT_EQ(ValidateName(bad).code(), Code::kInvalid) << bad;
  }
}

TEST(ParseAttach, ReadsVmHostAndDetach) {
  auto vm = ParseAttach("vm 8E45A2EA-5364-4B0D-A252-BF8BECAA606E\n");
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ((*vm)->ToString(), "vm 8e45a2ea-5364-4b0d-a252-bf8becaa606e");
  auto host = ParseAttach("host Compute-1.example.org");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ((*host)->kind, AttachTarget::Kind::kHost);
  EXPECT_EQ((*host)->id, "compute-1.example.org");
  for (const char* detach : {"", "\n"}) {
    auto none = ParseAttach(detach);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
  }
  for (const char* bad : {"vm", "vm x", "host", "host -bad", "host a..b", "host bad_name", "pod abc",
                          "vm 8e45a2ea-5364-4b0d-a252-bf8becaa606e extra", " \n", "\n\n"}) {
    EXPECT_EQ(ParseAttach(bad).status().code(), Code::kInvalid) << bad;
  }
}

TEST(Uuids, CanonicalFormAndNameBasedStability) {
  EXPECT_TRUE(IsCanonicalUuid("8e45a2ea-5364-4b0d-a252-bf8becaa606e"));
  EXPECT_FALSE(IsCanonicalUuid("8E45A2EA-5364-4B0D-A252-BF8BECAA606E"));
  EXPECT_FALSE(IsCanonicalUuid("8e45a2ea53644b0da252bf8becaa606e"));
  EXPECT_TRUE(IsCanonicalUuid(RandomUuid()));
  EXPECT_NE(RandomUuid(), RandomUuid());
  EXPECT_EQ(NameBasedUuid("host/fake/0000:f0:00.0"), NameBasedUuid("host/fake/0000:f0:00.0"));
  EXPECT_NE(NameBasedUuid("host/fake/0000:f0:00.0"), NameBasedUuid("other/fake/0000:f0:00.0"));
  EXPECT_EQ(NameBasedUuid("x")[14], '5');  // version 5
}

TEST(ParseJsonDocument, ANulByteAnywhereIsInvalid) {
  ParsedDocument padded = ParseJsonDocument(std::string("{\"a\":1}\0\0", 9));
  EXPECT_EQ(padded.state, DocumentState::kInvalid);
  EXPECT_NE(padded.error.message().find("line 1, column 8: a NUL byte"), std::string::npos) << padded.error.message();
  EXPECT_EQ(ParseJsonDocument(std::string("{\"a\":\0", 6)).state, DocumentState::kInvalid);
  EXPECT_EQ(ParseJsonDocument(std::string("\0", 1)).state, DocumentState::kInvalid);
}

TEST(ValidateName, TakesUtf8Only) {
  EXPECT_TRUE(ValidateName("gpu-ä-€-😀").ok());
  Status bad = ValidateName("bad\xff");
  EXPECT_EQ(bad.code(), Code::kInvalid);
  EXPECT_NE(bad.message().find("not UTF-8 (byte 3"), std::string::npos) << bad.message();
  for (const char* wrong : {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\x80"}) {
    EXPECT_TRUE(FirstNonUtf8(wrong).has_value()) << wrong;  // overlong, surrogate, past U+10FFFF, cut, stray
  }
  EXPECT_FALSE(FirstNonUtf8("plain ascii").has_value());
}

}  // namespace
}  // namespace cyborgfs
