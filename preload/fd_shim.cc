// close, close_range and closefrom as the program sees them: pheap's own
// descriptors (base/os.h, IsOwnFd) are not the program's to close. A daemon
// that closes every descriptor above 2 at start, or a library that calls
// closefrom(3), would otherwise take the userfaultfd, the store's LOCK and
// log files and /proc/self/pagemap from under the heap; commits would then
// fail, or reach whatever file the program opened next under that number.
// To the program they look closed already: EBADF, as for any number not open.

#include <errno.h>
#include <linux/close_range.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

#include "base/os.h"

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

}  // namespace

extern "C" int close(int fd) {
  if (__builtin_expect(pheap::IsOwnFd(fd), 0)) {
    errno = EBADF;
    return -1;
  }
  return static_cast<int>(::syscall(SYS_close, fd));
}

extern "C" int close_range(unsigned first, unsigned last, int flags) {
  return CloseRangeAround(first, last, static_cast<unsigned>(flags));
}

extern "C" void closefrom(int lowfd) { CloseRangeAround(static_cast<unsigned>(std::max(lowfd, 0)), UINT_MAX, 0); }
