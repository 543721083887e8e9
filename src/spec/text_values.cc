// Text values: names and attach targets.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <sstream>
#include <vector>

#include "cyborgfs/values.h"

namespace cyborgfs {
namespace {

// RFC 1123 host name: dot-separated labels of letters, digits and '-', each
// 1..63 bytes and not starting or ending with '-'; 253 bytes in all.
bool IsHostName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
    start = end + 1;
  }
  return true;
}

std::vector<std::string> SplitWords(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

}  // namespace

std::string Lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

std::string_view TrimSpaces(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::string Hex4(uint16_t value) {
  char text[8];
  std::snprintf(text, sizeof text, "%04x", value);
  return text;
}

std::string_view StripNewline(std::string_view text) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return text;
}

Status ValidateName(std::string_view name) {
  if (name.empty()) return Status::Invalid("must not be empty");
  if (name.size() > kMaxNameBytes) {
    return Status::Invalid("is " + std::to_string(name.size()) + " bytes, at most " + std::to_string(kMaxNameBytes) +
                           " are allowed");
  }
  if (name == "." || name == "..") return Status::Invalid("must not be \".\" or \"..\"");
  if (name.find('/') != std::string_view::npos) return Status::Invalid("must not contain '/'");
  if (name.find('\n') != std::string_view::npos) return Status::Invalid("must not contain a newline");
  if (name.find('\0') != std::string_view::npos) return Status::Invalid("must not contain a NUL byte");
  if (auto bad = FirstNonUtf8(name)) {
    return Status::Invalid("is not UTF-8 (byte " + std::to_string(*bad) + " is not part of a character)");
  }
  return Status::Ok();
}

std::optional<size_t> FirstNonUtf8(std::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = bytes[i];
    size_t length = 0;
    uint32_t code = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2, code = lead & 0x1f;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3, code = lead & 0x0f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4, code = lead & 0x07;
    } else {
      return i;
    }
    if (i + length > text.size()) return i;
    for (size_t k = 1; k < length; ++k) {
      if ((bytes[i + k] & 0xc0) != 0x80) return i;
      code = code << 6 | (bytes[i + k] & 0x3f);
    }
    // Overlong forms, surrogates and code points past U+10FFFF.
    const uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < smallest[length] || (code >= 0xd800 && code <= 0xdfff) || code > 0x10ffff) return i;
    i += length;
  }
  return std::nullopt;
}

Result<std::optional<AttachTarget>> ParseAttach(std::string_view text) {
  text = StripNewline(text);
  if (text.empty()) return std::optional<AttachTarget>();
  if (text.find('\0') != std::string_view::npos || text.find('\n') != std::string_view::npos) {
    return Status::Invalid("expected one line \"vm <instance-uuid>\" or \"host <hostname>\"");
  }
  const std::vector<std::string> words = SplitWords(text);
  if (words.size() != 2 || (words[0] != "vm" && words[0] != "host")) {
    return Status::Invalid("expected \"vm <instance-uuid>\", \"host <hostname>\" or an empty line, got \"" +
                           std::string(text) + "\"");
  }
  auto target = words[0] == "vm" ? VmTarget(words[1]) : HostTarget(words[1]);
  if (!target.ok()) return target.status();
  return std::optional<AttachTarget>(*target);
}

Result<AttachTarget> VmTarget(std::string_view instance_uuid) {
  auto uuid = NormalizeUuid(instance_uuid);
  if (!uuid) return Status::Invalid("\"" + std::string(instance_uuid) + "\" is not an instance uuid");
  return AttachTarget{AttachTarget::Kind::kVm, *uuid};
}

Result<AttachTarget> HostTarget(std::string_view host) {
  if (!IsHostName(host)) return Status::Invalid("\"" + std::string(host) + "\" is not a host name");
  return AttachTarget{AttachTarget::Kind::kHost, Lowercase(std::string(host))};
}

}  // namespace cyborgfs
