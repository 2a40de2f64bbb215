// Waits on descriptors as the program sees them: epoll_wait, epoll_pwait,
// epoll_pwait2, poll, ppoll, select and pselect (and the fortified
// __poll_chk, __ppoll_chk), and waits on a condition variable
// (pthread_cond_wait, pthread_cond_timedwait, pthread_cond_clockwait)
// whose variable and mutex lie outside the heap. A commit neither ends such a wait early nor
// waits for the thread to reach its safepoint: the thread sleeps as
// SafepointSleepBegin describes. Otherwise every commit would end the wait
// with EINTR (epoll_wait and select return it even for a handler installed
// with SA_RESTART), and a commit would wait for each idle thread of a
// server to be scheduled before its cut could begin.
//
// A pause counts a sleeping thread as stopped, so the kernel must not write
// the heap on its behalf while it sleeps: a commit writing the cut from the
// region would read a page the kernel is changing. Whatever the call
// returns (events, revents, descriptor sets, select's time left) is
// received in a buffer on this function's stack and copied to the caller's
// once the wait is over, past any pause in progress. A caller's array that
// does not fit that buffer makes the call as before (a commit wakes it),
// except epoll's, which is asked for fewer events at a time: the rest stay
// ready for the next call, as epoll_wait(2) allows. glibc writes a
// condition variable and its mutex around its futex waits, so a wait on one
// that lies in the heap stays as before: commits pause the thread.

#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include <algorithm>
#include <cstring>

#include "preload/libc_syms.h"
#include "preload/preload.h"

namespace pheap::preload {
namespace {

constexpr int kMaxEvents = 256;      // 3 KiB of epoll_event
constexpr nfds_t kMaxPollFds = 512;  // 4 KiB of pollfd

// epoll_pwait and epoll_pwait2 alike: `wait` makes the call into a buffer
// of at most kMaxEvents that is never in the heap.
template <class Wait>
int EpollWait(epoll_event* events, int maxevents, Wait wait) {
  epoll_event own[kMaxEvents];
  if (!SleepsListed() || maxevents <= 0 || InHeap(own, sizeof own)) return wait(events, maxevents, false);
  const bool copy = InHeap(events, sizeof(epoll_event) * static_cast<size_t>(maxevents));
  int r;
  {
    Asleep a;
    r = copy ? wait(own, std::min(maxevents, kMaxEvents), true) : wait(events, maxevents, true);
  }
  if (r > 0 && copy) std::memcpy(events, own, sizeof(epoll_event) * static_cast<size_t>(r));
  return r;
}

// poll and ppoll alike.
template <class Wait>
int PollWait(pollfd* fds, nfds_t nfds, Wait wait) {
  pollfd own[kMaxPollFds];
  if (!SleepsListed() || nfds == 0 || InHeap(own, sizeof own)) return wait(fds, false);
  const bool copy = InHeap(fds, sizeof(pollfd) * nfds);
  if (copy && nfds > kMaxPollFds) return wait(fds, false);
  if (copy) std::memcpy(own, fds, sizeof(pollfd) * nfds);
  int r;
  {
    Asleep a;
    r = wait(copy ? own : fds, true);
  }
  if (copy && r >= 0)
    for (nfds_t i = 0; i < nfds; ++i) fds[i].revents = own[i].revents;
  return r;
}

// select and pselect alike: each set received on the stack where the
// caller's lies in the heap (select's time left is its caller's, by
// SleepOutput). Only the bytes that cover nfds descriptors are the
// caller's: a program may allocate no more.
template <class Wait>
int SelectWait(int nfds, fd_set* r, fd_set* w, fd_set* e, Wait wait) {
  fd_set own[3];
  if (!SleepsListed() || nfds < 0 || nfds > FD_SETSIZE || InHeap(own, sizeof own)) return wait(r, w, e, false);
  const size_t bytes = (static_cast<size_t>(nfds) + NFDBITS - 1) / NFDBITS * sizeof(fd_mask);
  fd_set* sets[3] = {r, w, e};
  fd_set* pass[3];
  for (int i = 0; i < 3; ++i) {
    pass[i] = sets[i];
    if (InHeap(sets[i], bytes)) {
      std::memcpy(&own[i], sets[i], bytes);
      pass[i] = &own[i];
    }
  }
  int n;
  {
    Asleep a;
    n = wait(pass[0], pass[1], pass[2], true);
  }
  for (int i = 0; i < 3; ++i)
    if (pass[i] != sets[i]) std::memcpy(sets[i], &own[i], bytes);
  return n;
}

// The three condition variable waits alike.
template <class Wait>
int CondWait(pthread_cond_t* c, pthread_mutex_t* m, Wait wait) {
  if (!SleepsListed() || InHeap(c, sizeof *c) || InHeap(m, sizeof *m)) return wait();
  Asleep a;
  return wait();
}

}  // namespace
}  // namespace pheap::preload

// glibc's: reports a buffer overflow caught by a fortified call, and aborts.
extern "C" [[noreturn]] void __chk_fail();

namespace pp = pheap::preload;

extern "C" int epoll_pwait(int epfd, struct epoll_event* events, int maxevents, int timeout, const sigset_t* mask) {
  return pp::EpollWait(events, maxevents, [&](epoll_event* out, int n, bool asleep) {
    sigset_t copy;
    return pp::Libc().epoll_pwait(epfd, out, n, timeout, asleep ? pp::KeepSafepointBlocked(mask, &copy) : mask);
  });
}

extern "C" int epoll_wait(int epfd, struct epoll_event* events, int maxevents, int timeout) {
  return epoll_pwait(epfd, events, maxevents, timeout, nullptr);
}

extern "C" int epoll_pwait2(int epfd, struct epoll_event* events, int maxevents, const struct timespec* timeout,
                            const sigset_t* mask) {
  return pp::EpollWait(events, maxevents, [&](epoll_event* out, int n, bool asleep) {
    sigset_t copy;
    return pp::Libc().epoll_pwait2(epfd, out, n, timeout, asleep ? pp::KeepSafepointBlocked(mask, &copy) : mask);
  });
}

extern "C" int ppoll(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout, const sigset_t* mask) {
  return pp::PollWait(fds, nfds, [&](pollfd* pass, bool asleep) {
    sigset_t copy;
    return pp::Libc().ppoll(pass, nfds, timeout, asleep ? pp::KeepSafepointBlocked(mask, &copy) : mask);
  });
}

extern "C" int poll(struct pollfd* fds, nfds_t nfds, int timeout) {
  return pp::PollWait(fds, nfds, [&](pollfd* pass, bool) { return pp::Libc().poll(pass, nfds, timeout); });
}

extern "C" int __poll_chk(struct pollfd* fds, nfds_t nfds, int timeout, size_t fdslen) {
  if (fdslen / sizeof(*fds) < nfds) __chk_fail();
  return poll(fds, nfds, timeout);
}

extern "C" int __ppoll_chk(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout, const sigset_t* mask,
                           size_t fdslen) {
  if (fdslen / sizeof(*fds) < nfds) __chk_fail();
  return ppoll(fds, nfds, timeout, mask);
}

extern "C" int select(int nfds, fd_set* r, fd_set* w, fd_set* e, struct timeval* timeout) {
  pp::SleepOutput<timeval> left(timeout);  // Linux's select writes the time left
  return pp::SelectWait(nfds, r, w, e, [&](fd_set* pr, fd_set* pw, fd_set* pe, bool) {
    return pp::Libc().select(nfds, pr, pw, pe, left.get());
  });
}

extern "C" int pselect(int nfds, fd_set* r, fd_set* w, fd_set* e, const struct timespec* timeout,
                       const sigset_t* mask) {
  return pp::SelectWait(nfds, r, w, e, [&](fd_set* pr, fd_set* pw, fd_set* pe, bool asleep) {
    sigset_t copy;
    return pp::Libc().pselect(nfds, pr, pw, pe, timeout, asleep ? pp::KeepSafepointBlocked(mask, &copy) : mask);
  });
}

extern "C" int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m) {
  return pp::CondWait(c, m, [&] { return pp::Libc().pthread_cond_wait(c, m); });
}

extern "C" int pthread_cond_timedwait(pthread_cond_t* c, pthread_mutex_t* m, const struct timespec* at) {
  return pp::CondWait(c, m, [&] { return pp::Libc().pthread_cond_timedwait(c, m, at); });
}

extern "C" int pthread_cond_clockwait(pthread_cond_t* c, pthread_mutex_t* m, clockid_t clock,
                                      const struct timespec* at) {
  return pp::CondWait(c, m, [&] { return pp::Libc().pthread_cond_clockwait(c, m, clock, at); });
}
