// The REST API without sockets: Api::Handle on requests built here, over a
// real Service (fake driver, SQLite in a temp folder); the request framing
// of the transport (FrameRequest); the records (records.h).
#include "api.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include "cyborgfs/drivers.h"
#include "cyborgfs/records.h"
#include "test_db.h"

namespace cyborgfs::api {
namespace {

const char* kVm = "11111111-2222-4333-8444-555555555555";
constexpr gid_t kAdmins = 4242;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*Store::Open(db_.File("db")));
    std::vector<std::unique_ptr<Driver>> drivers;
    drivers.push_back(MakeFakeDriver("testhost", 2));
    service_ = std::make_unique<Service>(*store_, std::move(drivers), "testhost");
    ASSERT_TRUE(service_->Start().ok());
    api_ = std::make_unique<Api>(*service_, Api::Options{kAdmins, "a-token-of-enough-length", [this] { ++settled_; }});
    uuid_ = service_->List().at(0)->uuid;
  }

  httplib::Response Send(const std::string& method, const std::string& path, const std::string& body = "",
                         httplib::Headers headers = {}, const Peer& peer = Root()) {
    httplib::Request req;
    req.method = method;
    req.path = path;
    req.body = body;
    req.headers = std::move(headers);
    if (!body.empty() && !req.has_header("Content-Type")) req.set_header("Content-Type", "application/json");
    httplib::Response res;
    api_->Handle(peer, req, res);
    return res;
  }
  static Peer Root() { return Peer{false, Caller::Process(0, 0, 42), ""}; }
  static Peer Nobody(std::vector<gid_t> groups = {}) {
    return Peer{false, Caller::Process(65534, 65534, 43, std::move(groups)), ""};
  }
  static Peer Tcp() {
    Peer p{true, Caller{Caller::Kind::kToken}, "127.0.0.1:5555"};
    p.caller.address = p.address;
    return p;
  }
  static std::string Message(const httplib::Response& res) {
    auto body = Json::parse(res.body);
    EXPECT_EQ(body["error"]["code"], res.status);
    return body["error"]["message"].get<std::string>();
  }
  Service::Snapshot Current() const { return service_->FindByUuid(uuid_); }

  TempDir db_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<Api> api_;
  std::string uuid_;
  int settled_ = 0;
};

TEST_F(ApiTest, ReadsAreRecordsWithTheirGeneration) {
  auto res = Send("GET", "/accelerators/" + uuid_);
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(res.get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(res.get_header_value("ETag"), "\"" + std::to_string(Current()->generation) + "\"");
  EXPECT_EQ(res.body, RecordText(*Current()));
  res = Send("GET", "/accelerators");
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(Json::parse(res.body)["accelerator"].size(), 2u);
  EXPECT_EQ(res.body, service_->ListDocument()->body);
  EXPECT_EQ(Send("GET", "/accelerators", "", {{"If-None-Match", res.get_header_value("ETag")}}).status, 304);
  EXPECT_EQ(Send("GET", "/accelerators/by-name/" + Current()->name).body, RecordText(*Current()));
  EXPECT_EQ(settled_, 0);  // reads do not wait for the mount
}

TEST_F(ApiTest, EachVerbAndItsCodes) {
  auto res = Send("PUT", "/accelerators/" + uuid_, std::string("{\"instance_uuid\": \"") + kVm + "\"}");
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(Current()->state, State::kAttached);
  EXPECT_EQ(Json::parse(res.body)["attach"], std::string("vm ") + kVm);
  EXPECT_EQ(Send("PUT", "/accelerators/" + uuid_, "{\"host\": \"testhost\"}").status, 409);
  EXPECT_EQ(Send("DELETE", "/accelerators/" + uuid_).status, 204);
  EXPECT_EQ(Current()->state, State::kAvailable);
  res = Send("PUT", "/accelerators/" + uuid_ + "/acc_specs", "{\"acc_specs\": {\"num\": 2}}");
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(Current()->spec, "{\"num\":2}");
  const std::string stale = "\"" + std::to_string(Current()->generation - 1) + "\"";
  EXPECT_EQ(Send("PUT", "/accelerators/" + uuid_ + "/acc_spec", "{\"acc_specs\": {\"num\": 3}}", {{"If-Match", stale}})
                .status,
            409);
  EXPECT_EQ(Current()->spec, "{\"num\":2}");
  res = Send("POST", "/accelerators", "{\"name\": \"new\", \"uuid\": \"" + std::string(kVm) + "\"}");
  ASSERT_EQ(res.status, 201);
  EXPECT_EQ(res.get_header_value("Location"), std::string("/accelerators/") + kVm);
  EXPECT_TRUE(res.body.empty());
  EXPECT_EQ(Send("POST", "/accelerators", "{\"name\": \"new\"}").status, 409);
  EXPECT_EQ(Send("PUT", std::string("/accelerators/") + kVm + "/name", "{\"name\": \"newer\"}").status, 200);
  EXPECT_EQ(service_->FindByUuid(kVm)->name, "newer");
  EXPECT_EQ(Send("DELETE", std::string("/accelerators/") + kVm + "/record").status, 204);
  EXPECT_EQ(service_->FindByUuid(kVm), nullptr);
  EXPECT_EQ(Send("DELETE", "/accelerators/" + uuid_ + "/record").status, 409);  // a driver reports it
  EXPECT_EQ(Send("POST", "/rescan").status, 200);
  EXPECT_EQ(settled_, 11);  // after every change request, refused or not
}

TEST_F(ApiTest, RoutesMethodsAndBodies) {
  auto res = Send("GET", "/nowhere");
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(Message(res), "no such resource: /nowhere (the routes are in cyborgfs(8))");
  res = Send("PATCH", "/accelerators/" + uuid_);
  EXPECT_EQ(res.status, 405);
  EXPECT_EQ(res.get_header_value("Allow"), "GET, HEAD, POST, PUT, DELETE, OPTIONS");
  EXPECT_EQ(Send("GET", "/accelerators//acc_specs").status, 404);
  EXPECT_EQ(Send("GET", "/accelerators/").status, 200);  // one trailing slash is the same path
  res = Send("PUT", "/accelerators/" + uuid_ + "/acc_specs", "{\"acc_specs\": {}}", {{"Content-Type", "text/json"}});
  EXPECT_EQ(res.status, 415);
  EXPECT_EQ(Send("PUT", "/accelerators/" + uuid_ + "/acc_specs", "{\"acc_specs\": {}}",
                 {{"Content-Type", "Application/JSON; charset=utf-8"}})
                .status,
            200);
  res = Send("PUT", "/accelerators/" + uuid_ + "/acc_specs", "{\"acc_specs\": {\"num\": 0}}");
  EXPECT_EQ(res.status, 400);
  EXPECT_EQ(Message(res), Current()->last_error);  // the error file's words
  res = Send("PUT", "/accelerators/" + uuid_ + "/acc_specs", "{\"acc_specs\": {}, \"acc_specs\": {}}");
  EXPECT_EQ(res.status, 400);
  EXPECT_EQ(Message(res), "spec: the key \"acc_specs\" is given twice");
  EXPECT_EQ(Send("PUT", "/accelerators/" + uuid_, "{\"name\": \"x\", \"uuid\": \"" + uuid_ + "\"}").status, 400);
  EXPECT_EQ(Send("PUT", "/accelerators/" + uuid_ + "/acc_specs", "").status, 400);
  EXPECT_EQ(Send("GET", std::string("/accelerators/") + kVm).status, 404);
}

TEST_F(ApiTest, WhoMayChange) {
  const std::string attach = std::string("{\"instance_uuid\": \"") + kVm + "\"}";
  EXPECT_EQ(Send("GET", "/accelerators", "", {}, Nobody()).status, 200);
  auto res = Send("PUT", "/accelerators/" + uuid_, attach, {}, Nobody());
  EXPECT_EQ(res.status, 403);
  EXPECT_EQ(Current()->state, State::kAvailable);
  EXPECT_EQ(Send("POST", "/rescan", "", {}, Nobody()).status, 403);
  EXPECT_EQ(Send("PUT", "/accelerators/" + uuid_, attach, {}, Nobody({kAdmins})).status, 200);
  // over TCP: the token, for reads too
  EXPECT_EQ(Send("GET", "/accelerators", "", {}, Tcp()).status, 401);
  res = Send("GET", "/accelerators", "", {{"Authorization", "Bearer a-token-of-enough-lengtX"}}, Tcp());
  EXPECT_EQ(res.status, 401);
  EXPECT_EQ(res.get_header_value("WWW-Authenticate"), "Bearer realm=\"cyborgfs\", error=\"invalid_token\"");
  EXPECT_EQ(Send("GET", "/accelerators", "", {{"Authorization", "bearer a-token-of-enough-length"}}, Tcp()).status,
            200);
  EXPECT_EQ(Send("DELETE", "/accelerators/" + uuid_, "", {{"Authorization", "Bearer a-token-of-enough-length"}}, Tcp())
                .status,
            204);
}

TEST(HttpStatus, EveryCodeHasOne) {
  EXPECT_EQ(Api::HttpStatus(Code::kInvalid), 400);
  EXPECT_EQ(Api::HttpStatus(Code::kNotFound), 404);
  EXPECT_EQ(Api::HttpStatus(Code::kExists), 409);
  EXPECT_EQ(Api::HttpStatus(Code::kBusy), 409);
  EXPECT_EQ(Api::HttpStatus(Code::kNoDevice), 409);
  EXPECT_EQ(Api::HttpStatus(Code::kTooLarge), 413);
  EXPECT_EQ(Api::HttpStatus(Code::kAccessDenied), 403);
  EXPECT_EQ(Api::HttpStatus(Code::kIoError), 500);
  EXPECT_EQ(Api::HttpStatus(Code::kNoSpace), 507);
  EXPECT_EQ(Api::HttpStatus(Code::kReadOnly), 503);
  EXPECT_EQ(Api::ErrorBody(404, "gone"), "{\"error\":{\"code\":404,\"message\":\"gone\"}}\n");
}

TEST(FrameRequest, WholeRequestsOnly) {
  using S = Framing::State;
  EXPECT_EQ(FrameRequest("GET / HTTP/1.1\r\nHost: x\r\n", 1024, 64).state, S::kIncomplete);
  Framing f = FrameRequest("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next", 1024, 64);
  EXPECT_EQ(f.state, S::kComplete);
  EXPECT_EQ(f.length, 27u);
  const std::string post = "POST / HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\n";
  EXPECT_EQ(FrameRequest(post + "abc", 1024, 64).state, S::kIncomplete);
  EXPECT_EQ(FrameRequest(post + "abcde", 1024, 64).length, post.size() + 5);
  EXPECT_EQ(FrameRequest("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n", 1024, 64).state, S::kBodyTooLarge);
  EXPECT_EQ(FrameRequest("POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", 1024, 64).state, S::kMalformed);
  EXPECT_EQ(FrameRequest("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 1024, 64).state,
            S::kMalformed);
  EXPECT_EQ(FrameRequest(std::string(2000, 'a'), 1024, 64).state, S::kHeadTooLarge);
  EXPECT_EQ(FrameRequest("POST / HTTP/1.1\r\nContent-Encoding: gzip\r\n\r\n", 1024, 64).state, S::kUnsupportedEncoding);
  const std::string chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(FrameRequest(chunked + "3\r\nabc\r\n", 1024, 64).state, S::kIncomplete);
  f = FrameRequest(chunked + "3\r\nabc\r\n0\r\n\r\nNEXT", 1024, 64);
  EXPECT_EQ(f.state, S::kComplete);
  EXPECT_EQ(f.length, chunked.size() + 13);  // "3\r\nabc\r\n0\r\n\r\n"
  EXPECT_EQ(FrameRequest(chunked + "41\r\n", 1024, 64).state, S::kBodyTooLarge);
  EXPECT_EQ(FrameRequest(chunked + "zz\r\n", 1024, 64).state, S::kMalformed);
  f = FrameRequest("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", 1024, 64);
  EXPECT_EQ(f.state, S::kIncomplete);
  EXPECT_EQ(f.expect_continue, 17u);
}

TEST(Records, HaveTheFilesValuesTyped) {
  Accelerator a;
  a.uuid = kVm;
  a.name = "card \"one\"\t\x01/é";
  a.spec = "{\"num\":1,\"device_type\":\"GPU\"}";
  a.state = State::kAttached;
  a.attachment = std::string("vm ") + kVm;
  a.attach_handle = "{\"type\":\"PCI\",\"address\":\"0000:17:00.0\"}";
  a.facts.numa_node = -1;
  a.facts.sriov_totalvfs = 4;
  a.facts.virtfns = {"0000:3b:00.4", "0000:3b:00.5"};
  a.facts.mdev_types = {{"nvidia-222", {"GRID T4-1B", 16}}, {"nvidia-223", {"GRID T4-2B", 8}}};
  a.generation = 7;
  const std::string text = RecordText(a);
  ASSERT_EQ(text.back(), '\n');
  Json r = Json::parse(text);
  EXPECT_EQ(text, r.dump() + "\n");  // what a compact dump of the same object is, key for key
  EXPECT_EQ(r["name"], a.name);
  EXPECT_EQ(r["acc_specs"], Json::parse(a.spec));
  EXPECT_EQ(r["status"], "attached");
  EXPECT_EQ(r["attach_handle"]["type"], "PCI");
  EXPECT_TRUE(r["numa_node"].is_null());
  EXPECT_EQ(r["sriov_totalvfs"], 4);
  EXPECT_EQ(r["mdev_types"]["nvidia-223"]["available_instances"], 8);
  EXPECT_EQ(r["virtfns"], Json::array({"0000:3b:00.4", "0000:3b:00.5"}));
  EXPECT_EQ(r["generation"], 7);
  Accelerator plain;
  plain.uuid = kVm;
  r = Json::parse(RecordText(plain));
  EXPECT_EQ(r["acc_specs"], Json::object());
  EXPECT_TRUE(r["attach_handle"].is_null());
  EXPECT_TRUE(r["mdev_types"].is_null());
  EXPECT_EQ(r["virtfns"], Json::array());
  plain.last_error = std::string("bad \xff byte");  // not UTF-8: replaced, no throw
  EXPECT_NE(RecordText(plain).find("bad \xef\xbf\xbd byte"), std::string::npos);
  const std::string list =
      ListBody({std::make_shared<const Accelerator>(a), std::make_shared<const Accelerator>(plain)});
  EXPECT_EQ(Json::parse(list)["accelerator"].size(), 2u);
  EXPECT_EQ(list, "{\"accelerator\":[" + text.substr(0, text.size() - 1) + "," +
                      RecordText(plain).substr(0, RecordText(plain).size() - 1) + "]}\n");
}

}  // namespace
}  // namespace cyborgfs::api
