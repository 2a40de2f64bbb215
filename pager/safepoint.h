// A signal safepoint, as a garbage collector uses: pauses every thread of
// the process except the caller and pheap's own (exempt) threads, so a
// commit can take a point-in-time cut while the program keeps running
// around it.
//
// Each thread found in /proc/self/task gets a real-time signal (tgkill);
// its handler (SA_RESTART, errno saved) counts itself arrived and futex-
// waits on a generation word until Resume. The task list is read again
// until no new thread appears, so a thread created by a not-yet-paused one
// is caught too. A thread that exits before arriving is noticed and not
// waited for. Nothing here allocates while threads are paused: a paused
// thread may hold the allocator's lock.
//
// Limits: a thread that blocks the signal, or sits in a system call that
// does not return for signals handled with SA_RESTART (never: the handler
// runs on return), delays the pause; Pause logs a warning every second it
// waits. One safepoint at a time per process (Pause serialises).
#pragma once

#include <signal.h>

#include <cstdint>
#include <latch>
#include <thread>
#include <utility>

#include "base/status.h"
#include "base/thread.h"  // SafepointSignal, StartThread

namespace pheap {

// Registers / removes the calling thread as one the safepoint never pauses.
// At most 256 exempt threads at once.
void SafepointExempt();
void SafepointUnexempt();
int SafepointExemptThreads();

// StartThread(fn) for one of pheap's own threads: exempt from the
// safepoint before this returns (so no cut, even the next, can pause it
// or wait for it) and until fn returns.
template <class F>
std::thread StartExemptThread(F&& fn) {
  std::latch exempt(1);
  std::thread t = StartThread([&exempt, fn = std::forward<F>(fn)]() mutable {
    SafepointExempt();
    exempt.count_down();
    fn();
    SafepointUnexempt();
  });
  exempt.wait();
  return t;
}

// Runs first in every thread SafepointExempt registers. A thread no cut
// pauses must not write the heap, and the preload library uses this to send
// such a thread's allocations to glibc, whichever thread started it.
using SafepointExemptHook = void (*)();
void SetSafepointExemptHook(SafepointExemptHook hook);

// Deferral. While a thread is inside a deferred scope a pause does not stop
// it there: the signal only marks the pause pending, and the thread stops
// when its outermost scope ends (the pause waits for it). For code that
// holds a lock the pausing thread may need while the others are stopped,
// such as glibc's malloc arenas, which a commit's own allocations take.
// REQUIRES (inside a scope): no write to the region and no wait for a
// commit or for a paused thread; keep it short, since a pause waits for it.
struct SafepointDeferState {
  volatile int depth;    // nesting of deferred scopes
  volatile int pending;  // a pause signalled this thread inside one
};
extern constinit thread_local SafepointDeferState t_safepoint_defer
    __attribute__((tls_model("initial-exec")));
// Stops at the pause that was deferred. Called by SafepointDeferEnd only.
void SafepointTakeDeferred();

inline void SafepointDeferBegin() {
  t_safepoint_defer.depth = t_safepoint_defer.depth + 1;
}
inline void SafepointDeferEnd() {
  // depth reaches 0 first: a signal after that stops the thread in the
  // handler; one before it left `pending` set, and that pause cannot end
  // until this thread arrives, so no second signal can come in between.
  t_safepoint_defer.depth = t_safepoint_defer.depth - 1;
  if (t_safepoint_defer.depth == 0 && t_safepoint_defer.pending) SafepointTakeDeferred();
}
class SafepointDeferral {
 public:
  SafepointDeferral() { SafepointDeferBegin(); }
  ~SafepointDeferral() { SafepointDeferEnd(); }
  SafepointDeferral(const SafepointDeferral&) = delete;
  SafepointDeferral& operator=(const SafepointDeferral&) = delete;
};
// In the child of fork(): no pause is in progress there, so whatever the
// forking thread had deferred in the parent is forgotten.
inline void SafepointForkChild() { t_safepoint_defer = {0, 0}; }

// A thread about to sleep in a call that cannot touch the heap (nanosleep,
// pause, sigsuspend, sigtimedwait, and epoll_wait, poll or select into
// buffers outside the heap; IsSleepCall in safepoint.cc lists the system
// calls): pauses neither interrupt the call nor wait for the thread. Begin
// blocks the safepoint signal and lists the thread as asleep; a pause
// signals it (the signal stays pending) and counts it at once. End takes
// a pending signal, so a thread woken during a pause stops there before
// it can write. Without Begin, a pause's signal ends such a call early
// with EINTR (sleep, usleep, pause) on every commit.
// REQUIRES (between Begin and End): no write to the heap, outside any
// deferred scope. Nested pairs count as the outer one.
void SafepointSleepBegin();
void SafepointSleepEnd();

// A handler of the program's that interrupts such a sleep runs as if the
// thread had woken for it: otherwise it could write the heap during a
// pause that counted the thread as stopped. Enter ends the sleep (stopping
// here until a pause in progress ends) and returns whether the thread was
// asleep; Leave, given that, lists it asleep again for the rest of the
// call. A handler that never returns (siglongjmp) leaves nothing listed.
// Async-signal-safe; errno is kept.
bool SafepointHandlerEnter();
void SafepointHandlerLeave(bool was_asleep);

// Whether `act` installs the safepoint's own handler for SafepointSignal():
// the preload library lets that one through and refuses the program's.
bool IsSafepointHandler(const struct sigaction& act);

// True from the moment a Pause has every thread held until its Resume
// begins: what a caller that must not race the program's writes checks.
bool SafepointHeld();

// Whether a Pause now would stop no thread and no kernel worker could be
// writing: every thread of the process but the caller is exempt or a
// service thread known to block every signal. An io_uring worker makes it
// false: a read it completes into the heap during an in-place write would
// change a page between its checksum and its write. Lists /proc/self/task
// (a few microseconds); false if it cannot. A thread the caller starts
// later is not foreseen.
bool SafepointAlone();

class Safepoint {
 public:
  Safepoint() = default;
  ~Safepoint() { Resume(); }
  Safepoint(const Safepoint&) = delete;
  Safepoint& operator=(const Safepoint&) = delete;

  // Pauses the other threads. Returns how many were paused. On error no
  // thread stays paused.
  Result<int> Pause();
  // Releases the threads paused by Pause. Idempotent.
  void Resume();

 private:
  bool paused_ = false;
};

}  // namespace pheap
