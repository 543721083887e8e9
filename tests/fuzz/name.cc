// What a user gives as a name: a name file's content, a by-name link, a
// mkdir'ed folder (a uuid). Properties: an accepted name has no '/', newline
// or NUL; a normalized uuid is canonical and normalizes to itself.
#include <string>

#include "cyborgfs/values.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cyborgfs;
  const std::string_view text = AsText(data, size);
  if (ValidateName(StripNewline(text)).ok()) {
    FUZZ_CHECK(StripNewline(text).find_first_of(std::string("/\n\0", 3)) == std::string_view::npos);
  }
  if (auto uuid = NormalizeUuid(text)) {
    FUZZ_CHECK(IsCanonicalUuid(*uuid));
    FUZZ_CHECK(NormalizeUuid(*uuid) == uuid);
  }
  FUZZ_CHECK(!IsCanonicalUuid(text) || NormalizeUuid(text) == std::string(text));
  return 0;
}
