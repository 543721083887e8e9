// LD_PRELOAD shim for the mount tests: socket(2) of an AF_NETLINK socket
// fails with EACCES, as where uevents are not allowed; the rest is libc's.
#include <dlfcn.h>
#include <sys/socket.h>

#include <cerrno>

extern "C" int socket(int domain, int type, int protocol) {
  if (domain == AF_NETLINK) {
    errno = EACCES;
    return -1;
  }
  using Socket = int (*)(int, int, int);
  static const Socket real = reinterpret_cast<Socket>(dlsym(RTLD_NEXT, "socket"));
  return real(domain, type, protocol);
}
