#include "base/thread.h"

#include <pthread.h>

namespace pheap {

namespace {
// No constructor, so reading it from a signal handler runs no TLS init.
constinit thread_local int t_commit_locks = 0;
}  // namespace

int SafepointSignal() { return SIGRTMIN + 5; }

HoldingCommitLocks::HoldingCommitLocks() { ++t_commit_locks; }
HoldingCommitLocks::~HoldingCommitLocks() { --t_commit_locks; }
bool ThisThreadHoldsCommitLocks() { return t_commit_locks > 0; }

AsyncSignalsBlocked::AsyncSignalsBlocked() {
  sigset_t async;
  sigfillset(&async);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT, SafepointSignal()}) sigdelset(&async, sig);
  pthread_sigmask(SIG_BLOCK, &async, &old_);
}

AsyncSignalsBlocked::~AsyncSignalsBlocked() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

}  // namespace pheap
