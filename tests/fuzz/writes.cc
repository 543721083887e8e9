// What write(2) and truncate(2) calls at any offsets make of a spec: the
// input is a sequence of operations (1 byte: write or truncate; 2 bytes:
// offset or size; 1 byte: length; then the bytes). Property: a completed
// document is a valid JSON document of at most kMaxDocumentBytes.
#include <string>

#include "cyborgfs/values.h"
#include "document_buffer.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cyborgfs;
  DocumentBuffer buffer;
  std::string value = "{}\n";
  size_t at = 0;
  while (at + 4 <= size) {
    const bool write = data[at] % 2 == 0;
    const uint64_t offset = data[at + 1] | (uint64_t{data[at + 2]} << 8);
    const size_t length = std::min<size_t>(data[at + 3], size - at - 4);
    const std::string_view bytes = AsText(data + at + 4, length);
    at += 4 + length;
    auto outcome = write ? buffer.Add(offset, bytes, value) : buffer.Truncate(offset, value);
    if (!outcome.ok() || !*outcome) continue;
    FUZZ_CHECK((*outcome)->bytes.size() <= kMaxDocumentBytes);
    FUZZ_CHECK(ParseJsonDocument((*outcome)->bytes).state == DocumentState::kComplete);
    value = (*outcome)->bytes;
  }
  return 0;
}
