// glibc's own allocator, reached without dlsym and without naming a symbol
// this library defines. The preload library interposes malloc and the
// __libc_* aliases alike, so an ordinary reference to either would bind
// back to it; instead the addresses are looked up in libc.so.6's dynamic
// symbol table (dl_iterate_phdr + its GNU hash table), which allocates
// nothing and so is safe from inside the first malloc call.
#pragma once

#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <cstddef>

#include "pager/safepoint.h"

namespace pheap::preload {

struct LibcAllocator {
  void* (*malloc)(size_t);
  void (*free)(void*);
  void* (*calloc)(size_t, size_t);
  void* (*realloc)(void*, size_t);
  void* (*memalign)(size_t, size_t);
  size_t (*malloc_usable_size)(void*);
  int (*mallopt)(int, int);
  int (*malloc_trim)(size_t);
  struct mallinfo2 (*mallinfo2)();
  void (*malloc_stats)();
  int (*malloc_info)(int, FILE*);
  int (*pthread_create)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  // The signal calls signal_shim.cc interposes.
  int (*sigaction)(int, const struct sigaction*, struct sigaction*);
  int (*pthread_sigmask)(int, const sigset_t*, sigset_t*);
  int (*sigprocmask)(int, const sigset_t*, sigset_t*);
  int (*nanosleep)(const struct timespec*, struct timespec*);
  int (*clock_nanosleep)(clockid_t, int, const struct timespec*, struct timespec*);
  int (*usleep)(useconds_t);
  unsigned (*sleep)(unsigned);
  int (*pause)();
  int (*sigsuspend)(const sigset_t*);
  int (*sigwait)(const sigset_t*, int*);
  int (*sigwaitinfo)(const sigset_t*, siginfo_t*);
  int (*sigtimedwait)(const sigset_t*, siginfo_t*, const struct timespec*);
  // The waits on descriptors and condition variables wait_shim.cc interposes.
  int (*epoll_pwait)(int, struct epoll_event*, int, int, const sigset_t*);
  int (*epoll_pwait2)(int, struct epoll_event*, int, const struct timespec*, const sigset_t*);
  int (*poll)(struct pollfd*, nfds_t, int);
  int (*ppoll)(struct pollfd*, nfds_t, const struct timespec*, const sigset_t*);
  int (*select)(int, fd_set*, fd_set*, fd_set*, struct timeval*);
  int (*pselect)(int, fd_set*, fd_set*, fd_set*, const struct timespec*, const sigset_t*);
  int (*pthread_cond_wait)(pthread_cond_t*, pthread_mutex_t*);
  int (*pthread_cond_timedwait)(pthread_cond_t*, pthread_mutex_t*, const struct timespec*);
  int (*pthread_cond_clockwait)(pthread_cond_t*, pthread_mutex_t*, clockid_t, const struct timespec*);
};

// glibc's entry points, resolved on first use (thread-safe, idempotent).
// Aborts with a message if libc.so.6 or one of them cannot be found: there
// is no allocator to fall back to then.
const LibcAllocator& Libc();

// Calls glibc's `fn` where a commit cannot pause the calling thread: glibc
// holds an arena lock inside, and a commit's own allocations (which go to
// glibc) take those locks while the program's threads are paused. The pause
// waits for the call to return instead (safepoint.h, deferral).
template <class R, class... P, class... A>
R InLibc(R (*LibcAllocator::*fn)(P...), A... args) {
  SafepointDeferral outside_pauses;
  return (Libc().*fn)(args...);
}

}  // namespace pheap::preload
