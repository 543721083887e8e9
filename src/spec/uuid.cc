// Uuids, through libuuid.
#include <uuid/uuid.h>

#include <cctype>
#include <string>

#include "cyborgfs/values.h"

namespace cyborgfs {
namespace {

// cyborgfs' namespace for name-based uuids (itself uuid5(DNS, "cyborgfs")).
constexpr const char* kNamespace = "1f0e7c52-8d0c-5b6e-9a53-3a8a5e0b5c11";

std::string Unparse(const uuid_t uuid) {
  char text[37];
  uuid_unparse_lower(uuid, text);
  return text;
}

}  // namespace

bool IsCanonicalUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !(std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::optional<std::string> NormalizeUuid(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!IsCanonicalUuid(lower)) return std::nullopt;
  return lower;
}

std::string RandomUuid() {
  uuid_t uuid;
  uuid_generate_random(uuid);
  return Unparse(uuid);
}

std::string NameBasedUuid(std::string_view name) {
  uuid_t ns;
  uuid_t uuid;
  uuid_parse(kNamespace, ns);
  uuid_generate_sha1(uuid, ns, name.data(), name.size());
  return Unparse(uuid);
}

}  // namespace cyborgfs
