// The config file (/etc/cyborgfs/cyborgfs.conf), parsed by the daemon's own
// ParseOptions through a memfd. Property: it either yields options or exits
// with a code, and a config it accepts keeps the mountpoint it was given on
// the command line.
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "fuzz.h"
#include "options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("cyborgfs.conf", 0);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(write(fd, data, size) == static_cast<ssize_t>(size));
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const char* argv[] = {"cyborgfs", "--config", path.c_str(), "/mnt/given"};
  int exit_code = -1;
  const cyborgfs::app::Options options = cyborgfs::app::ParseOptions(4, const_cast<char**>(argv), exit_code);
  close(fd);
  if (exit_code < 0) FUZZ_CHECK(options.mountpoint == "/mnt/given");
  return 0;
}
