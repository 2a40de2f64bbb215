// close, close_range, closefrom, dup2 and dup3 as the program sees them:
// pheap's own descriptors (base/os.h, IsOwnFd) are not the program's to
// close. A daemon
// that closes every descriptor above 2 at start, or a library that calls
// closefrom(3), would otherwise take the userfaultfd, the store's LOCK and
// log files and /proc/self/pagemap from under the heap; commits would then
// fail, or reach whatever file the program opened next under that number.
// To the program they look closed already: EBADF, as for any number not open.
// As dup2's target they are out of its range (EBADF): the program's file
// would otherwise replace the store's log or LOCK under the same number.
//
// The descriptors pheap's code makes through other libraries (ZeroMQ's
// sockets, mailboxes and poller, for a heap with peers) become pheap's own
// too: socket, socketpair, eventfd and epoll_create called from pheap code
// (t_bypass) place theirs with HighFd, and a close from pheap code closes
// one of pheap's own. Called by the program, they are the C library's.

#include <errno.h>
#include <linux/close_range.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

#include "base/os.h"
#include "preload/preload.h"

namespace {

// close_range(2) on [first, last] minus pheap's own descriptors.
int CloseRangeAround(unsigned first, unsigned last, unsigned flags) {
  if (first > last) {
    errno = EINVAL;
    return -1;
  }
  if ((flags & CLOSE_RANGE_UNSHARE) != 0) {  // unshare once, then close in the new table
    if (::unshare(CLONE_FILES) != 0) return -1;
    flags &= ~CLOSE_RANGE_UNSHARE;
  }
  unsigned at = first;
  while (true) {
    const int own = at < static_cast<unsigned>(pheap::kMaxOwnFd) ? pheap::NextOwnFd(static_cast<int>(at)) : -1;
    const bool beyond = own < 0 || static_cast<unsigned>(own) > last;
    if (beyond || static_cast<unsigned>(own) > at) {
      const unsigned end = beyond ? last : static_cast<unsigned>(own) - 1;
      if (::syscall(SYS_close_range, at, end, flags) != 0) return -1;
    }
    if (beyond || static_cast<unsigned>(own) == last) return 0;
    at = static_cast<unsigned>(own) + 1;
  }
}

// A descriptor made by a system call: pheap's own (placed high) when pheap
// code made it.
int Made(long fd) {
  if (fd < 0 || pheap::preload::t_bypass == 0) return static_cast<int>(fd);
  return pheap::HighFd(static_cast<int>(fd));
}

}  // namespace

extern "C" int close(int fd) {
  if (__builtin_expect(pheap::IsOwnFd(fd), 0)) {
    if (pheap::preload::t_bypass != 0) {  // ZeroMQ closing one of its own
      const int r = pheap::CloseOwnFd(fd);
      if (r == 0) return 0;
      errno = -r;
      return -1;
    }
    errno = EBADF;
    return -1;
  }
  return static_cast<int>(::syscall(SYS_close, fd));
}

extern "C" int socket(int domain, int type, int protocol) {
  return Made(::syscall(SYS_socket, domain, type, protocol));
}

extern "C" int socketpair(int domain, int type, int protocol, int sv[2]) {
  if (::syscall(SYS_socketpair, domain, type, protocol, sv) != 0) return -1;
  sv[0] = Made(sv[0]);
  sv[1] = Made(sv[1]);
  return 0;
}

extern "C" int eventfd(unsigned initval, int flags) { return Made(::syscall(SYS_eventfd2, initval, flags)); }

extern "C" int epoll_create1(int flags) { return Made(::syscall(SYS_epoll_create1, flags)); }

extern "C" int epoll_create(int size) {
  if (size <= 0) {
    errno = EINVAL;
    return -1;
  }
  return Made(::syscall(SYS_epoll_create1, 0));
}

extern "C" int close_range(unsigned first, unsigned last, int flags) {
  return CloseRangeAround(first, last, static_cast<unsigned>(flags));
}

extern "C" void closefrom(int lowfd) { CloseRangeAround(static_cast<unsigned>(std::max(lowfd, 0)), UINT_MAX, 0); }

extern "C" int dup2(int oldfd, int newfd) {
  if (__builtin_expect(pheap::IsOwnFd(oldfd) || pheap::IsOwnFd(newfd), 0) && pheap::preload::t_bypass == 0) {
    errno = EBADF;
    return -1;
  }
  return static_cast<int>(::syscall(SYS_dup2, oldfd, newfd));
}

extern "C" int dup3(int oldfd, int newfd, int flags) {
  if (__builtin_expect(pheap::IsOwnFd(oldfd) || pheap::IsOwnFd(newfd), 0) && pheap::preload::t_bypass == 0) {
    errno = EBADF;
    return -1;
  }
  return static_cast<int>(::syscall(SYS_dup3, oldfd, newfd, flags));
}
