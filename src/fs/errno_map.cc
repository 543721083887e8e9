#include "errno_map.h"

#include <cerrno>

namespace cyborgfs::fs {

int ErrnoOf(const Status& status) {
  switch (status.code()) {
    case Code::kOk:
      return 0;
    case Code::kInvalid:
      return EINVAL;
    case Code::kNotFound:
      return ENOENT;
    case Code::kExists:
      return EEXIST;
    case Code::kBusy:
      return EBUSY;
    case Code::kNoDevice:
      return ENODEV;
    case Code::kTooLarge:
      return EFBIG;
    case Code::kAccessDenied:
      return EACCES;
    case Code::kNotPermitted:
      return EPERM;
    case Code::kIoError:
      return EIO;
    case Code::kNoSpace:
      return ENOSPC;
    case Code::kIsFolder:
      return EISDIR;
    case Code::kNotFolder:
      return ENOTDIR;
    case Code::kNotEmpty:
      return ENOTEMPTY;
    case Code::kReadOnly:
      return EROFS;
    case Code::kUnavailable:
      return EAGAIN;
  }
  return EIO;
}

}  // namespace cyborgfs::fs
