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
