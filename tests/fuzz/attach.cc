// What a user writes to attach. Property: an accepted target, written back
// as the daemon renders it, parses to the same target.
#include "cyborgfs/driver.h"
#include "cyborgfs/values.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cyborgfs;
  auto parsed = ParseAttach(AsText(data, size));
  if (!parsed.ok() || !*parsed) return 0;
  const std::string rendered = (*parsed)->ToString();
  auto again = ParseAttach(rendered);
  FUZZ_CHECK(again.ok() && *again);
  FUZZ_CHECK((*again)->ToString() == rendered);
  return 0;
}
