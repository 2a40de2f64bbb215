// pheap's own threads and the program's signals.
//
// A signal sent to the process (kill, a timer, a terminal's SIGINT) is
// delivered to any thread that does not block it, so without care the
// program's handler could run on one of pheap's threads: a handler that
// calls exit or _exit would then commit (the preload library commits
// there) from inside a commit, and one that touches a page not yet
// resident could wait for the very fault thread it interrupted. Every
// thread pheap starts therefore blocks every asynchronous signal except
// the safepoint's, which a thread the safepoint may pause must receive.
// Faults a thread raises itself (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP,
// SIGSYS) and SIGABRT stay unblocked.
#pragma once

#include <signal.h>

#include <thread>
#include <utility>

namespace pheap {

// The signal a commit's safepoint pauses threads with (SIGRTMIN + 5).
int SafepointSignal();

// Blocks the asynchronous signals (above) in the calling thread while it
// lives, and restores the previous mask after. A thread created meanwhile
// inherits the blocked mask, with no window in which a signal could reach it.
class AsyncSignalsBlocked {
 public:
  AsyncSignalsBlocked();
  ~AsyncSignalsBlocked();
  AsyncSignalsBlocked(const AsyncSignalsBlocked&) = delete;
  AsyncSignalsBlocked& operator=(const AsyncSignalsBlocked&) = delete;

 private:
  sigset_t old_;
};

// std::thread(fn), for every thread pheap starts: its signal mask blocks
// the asynchronous signals from its first instruction.
template <class F>
std::thread StartThread(F&& fn) {
  AsyncSignalsBlocked blocked;
  return std::thread(std::forward<F>(fn));
}

}  // namespace pheap
