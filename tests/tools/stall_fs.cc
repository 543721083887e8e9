// stall_fs MOUNTPOINT: a FUSE filesystem with one file, `f` (1 MiB), whose
// READ requests are never answered. A page fault on a mapping of `f` waits
// for as long as stall_fs runs: tests use it to make a reader hold a lock of
// cyborgfs's tree (a getdents64 into such a mapping holds the folder's lock)
// the way any user could. SIGTERM unmounts it, which fails the waiting reads.
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>

namespace {

constexpr fuse_ino_t kFile = 2;

void Fill(fuse_ino_t ino, struct stat& st) {
  st.st_ino = ino;
  st.st_mode = ino == kFile ? (S_IFREG | 0644) : (S_IFDIR | 0755);
  st.st_nlink = ino == kFile ? 1 : 2;
  st.st_size = ino == kFile ? (1 << 20) : 0;
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != FUSE_ROOT_ID || std::strcmp(name, "f") != 0) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param entry{};
  entry.ino = kFile;
  Fill(kFile, entry.attr);
  fuse_reply_entry(req, &entry);
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st {};
  Fill(ino, st);
  fuse_reply_attr(req, &st, 0);
}

void Open(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) { fuse_reply_open(req, fi); }

void Read(fuse_req_t, fuse_ino_t, size_t, off_t, fuse_file_info*) {}  // never answered

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: stall_fs MOUNTPOINT\n");
    return 2;
  }
  fuse_lowlevel_ops ops{};
  ops.lookup = Lookup;
  ops.getattr = GetAttr;
  ops.open = Open;
  ops.read = Read;
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  for (const char* arg : {"stall_fs", "-o", "fsname=stall_fs,allow_other"}) fuse_opt_add_arg(&args, arg);
  fuse_session* session = fuse_session_new(&args, &ops, sizeof ops, nullptr);
  fuse_opt_free_args(&args);
  if (!session || fuse_set_signal_handlers(session) != 0 || fuse_session_mount(session, argv[1]) != 0) return 1;
  std::printf("ready\n");
  std::fflush(stdout);
  fuse_session_loop(session);  // one thread: an unanswered READ holds nothing of ours
  fuse_session_unmount(session);
  fuse_remove_signal_handlers(session);
  fuse_session_destroy(session);
  return 0;
}
