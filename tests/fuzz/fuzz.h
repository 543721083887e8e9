// Fuzz targets: one per parser of user input, each a libFuzzer entry point
// (LLVMFuzzerTestOneInput). Built with clang and -DCYBORGFS_FUZZ=ON they are
// libFuzzer programs (scripts/fuzz.sh); otherwise each links replay.cc and
// CTest replays its checked-in corpus, tests/fuzz/corpus/<target>/, in every
// build. A target aborts (FUZZ_CHECK) when a property it states fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(condition)                                                                 \
  do {                                                                                        \
    if (!(condition)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

inline std::string_view AsText(const uint8_t* data, size_t size) { return {reinterpret_cast<const char*>(data), size}; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
