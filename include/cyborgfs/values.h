// Parsing and validation of everything a user writes, as pure functions.
//
// Nothing here touches the store, a driver or FUSE, so each parser can be
// unit-tested and fuzzed alone. Every rejection is a Status with a message
// that says where and why ("line 3, column 5: unexpected '}'").
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "cyborgfs/driver.h"
#include "cyborgfs/status.h"

namespace cyborgfs {

using Json = nlohmann::ordered_json;  // keeps the writer's key order

inline constexpr size_t kMaxDocumentBytes = 64 * 1024;  // spec and create bodies
inline constexpr size_t kMaxTextBytes = 4 * 1024;       // name and attach
inline constexpr size_t kMaxNameBytes = 255;
inline constexpr int kMaxJsonDepth = 32;

// --- JSON documents (spec, create) ---------------------------------------

// What a buffer of JSON text amounts to so far.
enum class DocumentState {
  kComplete,    // one whole JSON value, optionally followed by whitespace
  kIncomplete,  // a valid prefix: more bytes may complete it
  kInvalid,     // no continuation can make it valid
};

struct ParsedDocument {
  DocumentState state = DocumentState::kInvalid;
  Json value;    // set when kComplete
  Status error;  // set when kInvalid or kIncomplete: where and why
};

// Whether an object may name a key twice (the last one would win).
enum class DuplicateKeys { kAllowed, kRefused };

// Parses `text` as one JSON document of at most kMaxJsonDepth nesting levels.
// Empty or whitespace-only text is kInvalid: no continuation is expected; so
// is a NUL byte anywhere (values are text), and with kRefused an object that
// names a key twice.
ParsedDocument ParseJsonDocument(std::string_view text, DuplicateKeys keys = DuplicateKeys::kAllowed);

// Checks an acc_specs object: an object, where present `remote` is 0 or 1,
// `num` a positive integer, `device_type` a non-empty string and
// `acc_capability` an object, `vgpu_type` a non-empty string. Other keys are allowed and kept, except
// `acc_specs`: that is the PUT body written where its value belongs.
Status ValidateSpec(const Json& spec);

// The body of a Cyborg POST /accelerators: {"name": ..., "uuid": ...}.
struct CreateRequest {
  std::string name;
  std::optional<std::string> uuid;  // lowercase canonical when present
};
// Validates against the Cyborg JSON schema: an object, `name` a string that
// passes ValidateName, optional `uuid` a uuid, no other keys.
Result<CreateRequest> ParseCreateRequest(const Json& body);

// Canonical rendering of a daemon-produced JSON value: pretty-printed with a
// two-space indent and one trailing newline.
std::string RenderJson(const Json& value);

// --- text values (name, attach) ------------------------------------------

// `text` without one trailing '\n', if it has one.
std::string_view StripNewline(std::string_view text);

// A name is 1..255 bytes of UTF-8, not "." or "..", without '/', '\n' or NUL.
Status ValidateName(std::string_view name);

// Where `text` is not UTF-8: the offset of its first bad byte, or nullopt.
std::optional<size_t> FirstNonUtf8(std::string_view text);

// Parses the attach file's text (one trailing newline allowed):
// "vm <instance-uuid>" or "host <hostname>" attach, "" detaches (nullopt).
Result<std::optional<AttachTarget>> ParseAttach(std::string_view text);

// A VM by its instance uuid (any case, kept lowercase), a host by its name
// (an RFC 1123 host name, kept lowercase); kInvalid otherwise.
Result<AttachTarget> VmTarget(std::string_view instance_uuid);
Result<AttachTarget> HostTarget(std::string_view host);

// --- small text helpers ----------------------------------------------------

// `text` with ASCII letters in lower case.
std::string Lowercase(std::string text);

// `text` without the spaces and tabs it starts and ends with (an HTTP
// header's value).
std::string_view TrimSpaces(std::string_view text);

// A 16-bit id as 4 lowercase hex digits ("10de"), as sysfs and lspci show it.
std::string Hex4(uint16_t value);

// --- uuids -----------------------------------------------------------------

// True for the lowercase canonical 8-4-4-4-12 form only.
bool IsCanonicalUuid(std::string_view text);

// The lowercase canonical form of a uuid in any case, or nullopt.
std::optional<std::string> NormalizeUuid(std::string_view text);

// A new random (version 4) uuid.
std::string RandomUuid();

// A name-based (version 5, SHA-1) uuid in cyborgfs' own namespace: the same
// `name` always gives the same uuid, on every host and after every rebuild.
std::string NameBasedUuid(std::string_view name);

}  // namespace cyborgfs
