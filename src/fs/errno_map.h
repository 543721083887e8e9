// The one mapping from a Status to the errno a syscall returns.
#pragma once

#include "cyborgfs/status.h"

namespace cyborgfs::fs {

// 0 for OK; otherwise the positive errno for status.code(), EIO by default.
int ErrnoOf(const Status& status);

}  // namespace cyborgfs::fs
