// What a user writes to spec: JSON document parsing (depth and size bounded)
// and acc_specs validation. Property: a valid spec renders to a document that
// parses back to the same value.
#include "cyborgfs/values.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cyborgfs;
  const ParsedDocument parsed = ParseJsonDocument(AsText(data, size));
  if (parsed.state != DocumentState::kComplete) return 0;
  if (!ValidateSpec(parsed.value).ok()) return 0;
  const ParsedDocument again = ParseJsonDocument(RenderJson(parsed.value));
  FUZZ_CHECK(again.state == DocumentState::kComplete);
  FUZZ_CHECK(again.value == parsed.value);
  return 0;
}
