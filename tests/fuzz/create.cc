// What a user writes to create: a Cyborg POST body. Property: an accepted
// request has a valid name and, if any, a canonical uuid.
#include "cyborgfs/values.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cyborgfs;
  const ParsedDocument parsed = ParseJsonDocument(AsText(data, size));
  if (parsed.state != DocumentState::kComplete) return 0;
  auto request = ParseCreateRequest(parsed.value);
  if (!request.ok()) return 0;
  FUZZ_CHECK(ValidateName(request->name).ok());
  FUZZ_CHECK(!request->uuid || IsCanonicalUuid(*request->uuid));
  return 0;
}
