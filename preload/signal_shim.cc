// The signal calls as the program sees them. pheap pauses the program's
// threads for a commit's cut with its safepoint signal (base/thread.h) and
// commits on SIGTERM with a handler of its own; neither may show.
//
// - pthread_sigmask, sigprocmask: the program cannot block the safepoint
//   signal. A thread that blocked it (GLib's workers block every signal)
//   would either stall every commit while it lives or, excused, keep
//   writing during the cut, which would then not be point-in-time. What the
//   program asked for reads back: the signal shows blocked in the old mask
//   of a thread that asked to block it.
// - nanosleep, clock_nanosleep, usleep, sleep, pause, sigsuspend, sigwait,
//   sigwaitinfo, sigtimedwait: a commit neither ends the wait early (EINTR,
//   time left) nor waits for the sleeper (SafepointSleepBegin). The
//   program's own signals still wake it. A wait for a set of signals never
//   takes the safepoint signal, even from a full set. What such a call
//   writes (time left, the signal taken) reaches a heap address only after
//   the sleep (SleepOutput). The waits on descriptors are wait_shim.cc's.
// - sigaction, signal on the safepoint signal: it is pheap's, as SIGKILL is
//   the kernel's: setting it fails with EINVAL (said once, naming it), and
//   it reads back as SIG_DFL.
// - sigaction, signal: the program's handlers run behind a trampoline, so
//   that one interrupting a sleep above stops at a commit in progress
//   before it can write (SafepointHandlerEnter). They read back as set.
// - sigaction, signal: while SIGTERM's handler is pheap's (it commits, then
//   takes the default action), SIGTERM reads back as the program set it,
//   SIG_DFL at first. Setting SIG_DFL keeps pheap's handler; anything else
//   replaces it, and the program's exit handlers then commit.

#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "base/log.h"
#include "base/thread.h"
#include "pager/safepoint.h"
#include "preload/libc_syms.h"
#include "preload/preload.h"

namespace pheap::preload {
namespace {

// Whether the program asked this thread to block the safepoint signal.
constinit thread_local bool t_asks_safepoint_blocked = false;

// How glibc's pthread_sigmask (errors as values) or sigprocmask (-1 and
// errno) reports a result: `real` is whichever was called.
using MaskFn = int (*)(int, const sigset_t*, sigset_t*);

int Mask(MaskFn real, int how, const sigset_t* set, sigset_t* old) {
  if (t_bypass != 0 || HeapAllocator() == nullptr) return real(how, set, old);
  const int sig = SafepointSignal();
  const bool was = t_asks_safepoint_blocked;
  bool asks = was;
  sigset_t without;
  const sigset_t* pass = set;
  if (set != nullptr && sigismember(set, sig) == 1) {
    if (how == SIG_UNBLOCK) {
      asks = false;
    } else {
      asks = true;
      without = *set;
      sigdelset(&without, sig);
      pass = &without;
    }
  } else if (set != nullptr && how == SIG_SETMASK) {
    asks = false;
  }
  const int r = real(how, pass, old);
  if (r != 0) return r;
  t_asks_safepoint_blocked = asks;
  if (old != nullptr && was) sigaddset(old, sig);
  return 0;
}

// `set` without the safepoint signal, in *copy.
const sigset_t* WithoutSafepoint(const sigset_t* set, sigset_t* copy) {
  if (set == nullptr || sigismember(set, SafepointSignal()) != 1) return set;
  *copy = *set;
  sigdelset(copy, SafepointSignal());
  return copy;
}

int SafepointAction(const struct sigaction* act, struct sigaction* old) {
  if (act != nullptr) {
    static std::atomic<bool> said{false};
    if (!said.exchange(true))
      PHEAP_LOG_WARN(
          "the program set a disposition for signal {} (SIGRTMIN+{}), which pheap uses to pause threads "
          "for a commit; refused with EINVAL, as for SIGKILL",
          SafepointSignal(), SafepointSignal() - SIGRTMIN);
    errno = EINVAL;
    return -1;
  }
  if (old != nullptr) {
    *old = {};
    old->sa_handler = SIG_DFL;
  }
  return 0;
}

// The program's handlers by signal, reached through the trampolines below.
// One table per kind of handler: a signal in flight while the program
// switches kinds runs the old kind's trampoline, which still finds the old
// handler.
using InfoHandler = void (*)(int, siginfo_t*, void*);
std::atomic<InfoHandler> g_plain_handler[_NSIG];  // sa_handler, called with what the kernel passes
std::atomic<InfoHandler> g_info_handler[_NSIG];   // sa_sigaction

// A plain handler is called with the three arguments the kernel passes
// every handler on x86-64 and aarch64, as it would be without pheap.
InfoHandler AsInfo(sighandler_t h) { return reinterpret_cast<InfoHandler>(reinterpret_cast<void (*)()>(h)); }
sighandler_t AsPlain(InfoHandler h) { return reinterpret_cast<sighandler_t>(reinterpret_cast<void (*)()>(h)); }

void PlainTrampoline(int sig, siginfo_t* info, void* ctx) {
  const bool asleep = SafepointHandlerEnter();
  g_plain_handler[sig].load(std::memory_order_acquire)(sig, info, ctx);
  SafepointHandlerLeave(asleep);
}

void InfoTrampoline(int sig, siginfo_t* info, void* ctx) {
  const bool asleep = SafepointHandlerEnter();
  g_info_handler[sig].load(std::memory_order_acquire)(sig, info, ctx);
  SafepointHandlerLeave(asleep);
}

bool IsInfo(const struct sigaction& a) { return (a.sa_flags & SA_SIGINFO) != 0; }

// The program's handler where the kernel's action holds a trampoline.
void ShowProgramHandler(int sig, struct sigaction* a) {
  if (IsInfo(*a) && a->sa_sigaction == InfoTrampoline) {
    a->sa_sigaction = g_info_handler[sig].load(std::memory_order_acquire);
  } else if (!IsInfo(*a) && a->sa_handler == AsPlain(PlainTrampoline)) {
    a->sa_handler = AsPlain(g_plain_handler[sig].load(std::memory_order_acquire));
  }
}

}  // namespace

int ProgramSigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  struct sigaction via;
  const struct sigaction* pass = act;
  const bool handler = act != nullptr && sig > 0 && sig < _NSIG && act->sa_handler != SIG_DFL &&
                       act->sa_handler != SIG_IGN;  // sa_sigaction shares the field
  if (handler) {
    via = *act;
    if (IsInfo(*act)) {
      g_info_handler[sig].store(act->sa_sigaction, std::memory_order_release);
      via.sa_sigaction = InfoTrampoline;
    } else {
      g_plain_handler[sig].store(AsInfo(act->sa_handler), std::memory_order_release);
      via.sa_handler = AsPlain(PlainTrampoline);
    }
    pass = &via;
  }
  const int r = Libc().sigaction(sig, pass, old);
  if (r == 0 && old != nullptr && sig > 0 && sig < _NSIG) ShowProgramHandler(sig, old);
  return r;
}

}  // namespace pheap::preload

namespace pp = pheap::preload;

extern "C" int pthread_sigmask(int how, const sigset_t* set, sigset_t* old) {
  return pp::Mask(pp::Libc().pthread_sigmask, how, set, old);
}

extern "C" int sigprocmask(int how, const sigset_t* set, sigset_t* old) {
  return pp::Mask(pp::Libc().sigprocmask, how, set, old);
}

extern "C" int sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  if (pp::t_bypass == 0) {
    if (sig == SIGTERM && pp::SigtermAction(act, old)) return 0;
    if (sig == pheap::SafepointSignal() && pp::HeapAllocator() != nullptr &&
        (act == nullptr || !pheap::IsSafepointHandler(*act)))
      return pp::SafepointAction(act, old);
    return pp::ProgramSigaction(sig, act, old);
  }
  return pp::Libc().sigaction(sig, act, old);
}

namespace {

// `handler` with `flags` and an empty mask, through the sigaction above;
// the previous handler, or SIG_ERR. glibc's signal(), bsd_signal(),
// sysv_signal() and sigset() reach its own sigaction directly, past ours.
sighandler_t SetHandler(int sig, sighandler_t handler, int flags) {
  struct sigaction sa {
  }, old{};
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, &old) != 0) return SIG_ERR;
  return old.sa_handler;
}

}  // namespace

// BSD semantics, as glibc's signal().
extern "C" sighandler_t signal(int sig, sighandler_t handler) { return SetHandler(sig, handler, SA_RESTART); }

// signal's BSD name.
extern "C" sighandler_t bsd_signal(int sig, sighandler_t handler) { return signal(sig, handler); }

// System V's one-shot handler (SA_RESETHAND | SA_NODEFER, as glibc's).
extern "C" sighandler_t sysv_signal(int sig, sighandler_t handler) {
  return SetHandler(sig, handler, SA_RESETHAND | SA_NODEFER);
}

// System V's sigset: SIG_HOLD blocks `sig`, anything else becomes its
// disposition and unblocks it; SIG_HOLD is returned if it was blocked.
extern "C" sighandler_t sigset(int sig, sighandler_t disp) {
  sigset_t one, was;
  if (sigemptyset(&one) != 0 || sigaddset(&one, sig) != 0) return SIG_ERR;  // EINVAL for a bad number
  sighandler_t old = SIG_ERR;
  if (disp == SIG_HOLD) {
    struct sigaction now {};
    if (sigaction(sig, nullptr, &now) != 0 || sigprocmask(SIG_BLOCK, &one, &was) != 0) return SIG_ERR;
    old = now.sa_handler;
  } else {
    old = SetHandler(sig, disp, 0);
    if (old == SIG_ERR || sigprocmask(SIG_UNBLOCK, &one, &was) != 0) return SIG_ERR;
  }
  return sigismember(&was, sig) == 1 ? SIG_HOLD : old;
}

extern "C" int nanosleep(const struct timespec* req, struct timespec* rem) {
  pp::SleepOutput<timespec> left(rem);
  pp::Asleep a;
  return pp::Libc().nanosleep(req, left.get());
}

extern "C" int clock_nanosleep(clockid_t clock, int flags, const struct timespec* req, struct timespec* rem) {
  pp::SleepOutput<timespec> left(rem);
  pp::Asleep a;
  return pp::Libc().clock_nanosleep(clock, flags, req, left.get());
}

extern "C" int usleep(useconds_t us) {
  pp::Asleep a;
  return pp::Libc().usleep(us);
}

extern "C" unsigned sleep(unsigned seconds) {
  pp::Asleep a;
  return pp::Libc().sleep(seconds);
}

extern "C" int pause() {
  pp::Asleep a;
  return pp::Libc().pause();
}

extern "C" int sigsuspend(const sigset_t* mask) {
  pp::Asleep a;
  if (pp::t_bypass != 0) return pp::Libc().sigsuspend(mask);
  sigset_t with;
  return pp::Libc().sigsuspend(pp::KeepSafepointBlocked(mask, &with));
}

extern "C" int sigwait(const sigset_t* set, int* sig) {
  pp::SleepOutput<int> taken(sig);
  pp::Asleep a;
  sigset_t copy;
  return pp::Libc().sigwait(pp::WithoutSafepoint(set, &copy), taken.get());
}

extern "C" int sigwaitinfo(const sigset_t* set, siginfo_t* info) {
  pp::SleepOutput<siginfo_t> taken(info);
  pp::Asleep a;
  sigset_t copy;
  return pp::Libc().sigwaitinfo(pp::WithoutSafepoint(set, &copy), taken.get());
}

extern "C" int sigtimedwait(const sigset_t* set, siginfo_t* info, const struct timespec* timeout) {
  pp::SleepOutput<siginfo_t> taken(info);
  pp::Asleep a;
  sigset_t copy;
  return pp::Libc().sigtimedwait(pp::WithoutSafepoint(set, &copy), taken.get(), timeout);
}
