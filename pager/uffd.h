// Thin wrappers over the userfaultfd and PAGEMAP_SCAN ioctls. Each keeps the
// kernel's name (UFFDIO_COPY -> uffd_copy) so it can be read against
// userfaultfd(2) and ioctl_userfaultfd(2); each returns >= 0 or -errno and
// goes through pheap::os(), so tests can take the kernel away.
#pragma once

#include <cstdint>

#include "pager/uapi_compat.h"

namespace pheap {

// A new userfaultfd (O_CLOEXEC | O_NONBLOCK, kernel-mode faults included):
// the syscall first, then /dev/userfaultfd + USERFAULTFD_IOC_NEW, which is
// how root or a member of the device's group gets one when
// vm.unprivileged_userfaultfd=0 refuses the syscall. *via_dev says which.
// Returns the fd or the syscall's -errno.
int uffd_open(bool* via_dev);

// A userfaultfd that handles faults taken in user mode only
// (UFFD_USER_MODE_ONLY): the kernel lets any user create one whatever
// vm.unprivileged_userfaultfd says. A missing fault the kernel takes on the
// program's behalf (read(2) into an absent page) fails with EFAULT there,
// so it serves only ranges that never raise one (TrackingMode::kAsyncWpUser).
// Returns the fd or -errno.
int uffd_open_user_mode_only();

// UFFDIO_API. On success *features holds what the kernel granted (with
// features = 0 requested: everything it supports) and *ioctls the ioctls.
int uffd_api(int fd, uint64_t want, uint64_t* features, uint64_t* ioctls);
int uffd_register(int fd, uint64_t start, uint64_t len, uint64_t mode, uint64_t* ioctls);
int uffd_unregister(int fd, uint64_t start, uint64_t len);
// UFFDIO_COPY: returns bytes copied (> 0), or -errno when nothing was; -EEXIST
// when the first page is already mapped, -EAGAIN when the mm is changing.
int64_t uffd_copy(int fd, uint64_t dst, const void* src, uint64_t len, uint64_t mode);
int64_t uffd_zeropage(int fd, uint64_t start, uint64_t len, uint64_t mode);
int uffd_wake(int fd, uint64_t start, uint64_t len);
int uffd_writeprotect(int fd, uint64_t start, uint64_t len, uint64_t mode);
int64_t uffd_poison(int fd, uint64_t start, uint64_t len, uint64_t mode);

// PAGEMAP_SCAN on an open /proc/self/pagemap: returns the number of regions
// written to arg->vec, or -errno. arg->walk_end says where it stopped.
int pagemap_scan(int pagemap_fd, pm_scan_arg* arg);

// The whole of [start, end) with PAGEMAP_SCAN, vec_len regions per call:
// `arg` gives the flags and the categories (start, end, vec and vec_len are
// set here), and fn(const page_region&) sees every region reported, in
// address order. A call that makes no progress ends the walk (nothing more
// to report). Returns 0, or the -errno of the call that failed (fn saw the
// regions before it). Allocates nothing, so it may run with writers paused.
template <class Fn>
int pagemap_scan_range(int pagemap_fd, pm_scan_arg arg, uint64_t start, uint64_t end, page_region* vec,
                       uint64_t vec_len, Fn&& fn) {
  while (start < end) {
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(vec);
    arg.vec_len = vec_len;
    const int n = pagemap_scan(pagemap_fd, &arg);
    if (n < 0) return n;
    for (int i = 0; i < n; ++i) fn(static_cast<const page_region&>(vec[i]));
    if (arg.walk_end <= start) break;
    start = arg.walk_end;
  }
  return 0;
}

}  // namespace pheap
