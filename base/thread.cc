#include "base/thread.h"

#include <pthread.h>

namespace pheap {

int SafepointSignal() { return SIGRTMIN + 5; }

AsyncSignalsBlocked::AsyncSignalsBlocked() {
  sigset_t async;
  sigfillset(&async);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT, SafepointSignal()}) sigdelset(&async, sig);
  pthread_sigmask(SIG_BLOCK, &async, &old_);
}

AsyncSignalsBlocked::~AsyncSignalsBlocked() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

}  // namespace pheap
