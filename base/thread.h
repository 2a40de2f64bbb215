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

// Marks the calling thread, while it lives, as inside pheap code that holds
// (or is about to take) locks a commit takes: the commit and root locks,
// the pager's cut lock. A signal handler that interrupts such a thread and
// ends the process must not commit from there, since it would wait for
// its own thread's lock forever; the preload library's exit and _exit
// check ThisThreadHoldsCommitLocks and leave the heap at its last durable
// epoch instead, as a crash would. Scopes nest.
class HoldingCommitLocks {
 public:
  HoldingCommitLocks();
  ~HoldingCommitLocks();
  HoldingCommitLocks(const HoldingCommitLocks&) = delete;
  HoldingCommitLocks& operator=(const HoldingCommitLocks&) = delete;
};
bool ThisThreadHoldsCommitLocks();

// std::thread(fn), for every thread pheap starts: its signal mask blocks
// the asynchronous signals from its first instruction.
template <class F>
std::thread StartThread(F&& fn) {
  AsyncSignalsBlocked blocked;
  return std::thread(std::forward<F>(fn));
}

}  // namespace pheap
