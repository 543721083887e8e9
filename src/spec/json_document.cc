// JSON documents: completeness detection, depth bound, spec and create rules.
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cyborgfs/values.h"

namespace cyborgfs {
namespace {

struct TooDeep {};

// nlohmann's parse_error::what() reads "[json.exception.parse_error.101] parse
// error at line L, column C: syntax error while parsing X - <detail>". Users
// get "line L, column C: <detail>".
std::string DescribeParseError(const std::string& what) {
  std::string message = what;
  const auto at = message.find("at line ");
  if (at != std::string::npos) message = message.substr(at + 3);
  const auto dash = message.find(" - ");
  const auto colon = message.find(": ");
  if (dash != std::string::npos && colon != std::string::npos && colon < dash) {
    message = message.substr(0, colon + 2) + message.substr(dash + 3);
  }
  return message;
}

// A prefix that a later write may complete: the parser ran out of input
// (its error position lies past the end), between tokens or inside one,
// unless it had finished the value and only wanted the end of input.
bool RanOutOfInput(const nlohmann::json::parse_error& error, size_t size) {
  // A NUL byte ends nlohmann's input too: an end within the bytes is invalid.
  if (error.byte <= size) return false;
  return std::string(error.what()).find("; expected end of input") == std::string::npos;
}

// "line L, column C" of byte `offset` of `text`, as nlohmann counts them.
std::string Position(std::string_view text, size_t offset) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

bool IsPositiveInteger(const Json& v) {
  return v.is_number_unsigned() ? v.get<uint64_t>() > 0 : v.is_number_integer() && v.get<int64_t>() > 0;
}

}  // namespace

ParsedDocument ParseJsonDocument(std::string_view text, DuplicateKeys keys) {
  ParsedDocument result;
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    result.error = Status::Invalid("no JSON value: the document is empty or only whitespace");
    return result;
  }
  // The keys of each object being parsed, innermost last (kRefused only).
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  auto guard = [&](int depth, Json::parse_event_t event, Json& parsed) {
    const bool opens = event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start;
    if (opens && depth >= kMaxJsonDepth) throw TooDeep{};
    if (keys == DuplicateKeys::kRefused) {
      if (event == Json::parse_event_t::object_start) open_objects.emplace_back();
      if (event == Json::parse_event_t::object_end) open_objects.pop_back();
      if (event == Json::parse_event_t::key && !open_objects.back().insert(parsed.get<std::string>()).second &&
          !duplicate) {
        duplicate = parsed.get<std::string>();
      }
    }
    return true;
  };
  try {
    result.value = Json::parse(text.begin(), text.end(), guard);
    result.state = DocumentState::kComplete;
    // nlohmann takes a NUL byte for the end of the input: bytes after it are unseen.
    if (const size_t nul = text.find('\0'); nul != std::string_view::npos) {
      result.state = DocumentState::kInvalid;
      result.error = Status::Invalid(Position(text, nul) + ": a NUL byte (a value is text, without NUL bytes)");
    } else if (duplicate) {
      result.state = DocumentState::kInvalid;
      result.error = Status::Invalid("the key \"" + *duplicate + "\" is given twice");
    }
  } catch (const TooDeep&) {
    result.error = Status::Invalid("nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  } catch (const nlohmann::json::parse_error& e) {
    result.state = RanOutOfInput(e, text.size()) ? DocumentState::kIncomplete : DocumentState::kInvalid;
    result.error = Status::Invalid(DescribeParseError(e.what()));
  } catch (const nlohmann::json::exception& e) {  // e.g. out_of_range: a number like 1e999
    const std::string what = e.what();
    result.error = Status::Invalid(what.substr(what.find(']') + 2));
  }
  return result;
}

Status ValidateSpec(const Json& spec) {
  if (!spec.is_object()) return Status::Invalid(std::string("must be a JSON object, not ") + spec.type_name());
  if (spec.contains("acc_specs")) {
    return Status::Invalid("the file holds acc_specs itself: write the value of \"acc_specs\", not the whole body");
  }
  if (auto it = spec.find("remote"); it != spec.end()) {
    if (!it->is_number_integer() || (it->get<int64_t>() != 0 && it->get<int64_t>() != 1)) {
      return Status::Invalid("\"remote\" must be 0 or 1, not " + it->dump());
    }
  }
  if (auto it = spec.find("num"); it != spec.end() && !IsPositiveInteger(*it)) {
    return Status::Invalid("\"num\" must be a positive integer, not " + it->dump());
  }
  if (auto it = spec.find("device_type"); it != spec.end()) {
    if (!it->is_string() || it->get<std::string>().empty()) {
      return Status::Invalid("\"device_type\" must be a non-empty string, not " + it->dump());
    }
  }
  if (auto it = spec.find("vgpu_type"); it != spec.end()) {
    if (!it->is_string() || it->get<std::string>().empty()) {
      return Status::Invalid("\"vgpu_type\" must be a non-empty string (a type of mdev_types), not " + it->dump());
    }
  }
  if (auto it = spec.find("acc_capability"); it != spec.end() && !it->is_object()) {
    return Status::Invalid("\"acc_capability\" must be an object, not " + it->dump());
  }
  return Status::Ok();
}

Result<CreateRequest> ParseCreateRequest(const Json& body) {
  if (!body.is_object()) return Status::Invalid(std::string("must be a JSON object, not ") + body.type_name());
  CreateRequest request;
  bool has_name = false;
  for (const auto& [key, value] : body.items()) {
    if (key == "name") {
      if (!value.is_string()) return Status::Invalid("\"name\" must be a string, not " + value.dump());
      request.name = value.get<std::string>();
      if (Status s = ValidateName(request.name); !s.ok()) return s.Prefixed("\"name\"");
      has_name = true;
    } else if (key == "uuid") {
      auto uuid = value.is_string() ? NormalizeUuid(value.get<std::string>()) : std::nullopt;
      if (!uuid) return Status::Invalid("\"uuid\" must be a uuid, not " + value.dump());
      request.uuid = *uuid;
    } else {
      return Status::Invalid("unknown key \"" + key + "\" (allowed: name, uuid)");
    }
  }
  if (!has_name) return Status::Invalid("\"name\" is required");
  return request;
}

std::string RenderJson(const Json& value) { return value.dump(2) + "\n"; }

}  // namespace cyborgfs
