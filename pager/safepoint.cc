#include "pager/safepoint.h"

#include <algorithm>
#include <cerrno>

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "base/log.h"
#include "base/os.h"

namespace pheap {
namespace {

constexpr int kMaxExempt = 256;
constexpr int kMaxThreads = 16384;

std::atomic<pid_t> g_exempt[kMaxExempt];
std::atomic<SafepointExemptHook> g_exempt_hook{nullptr};
std::atomic<uint32_t> g_generation{0};  // bumped by Resume; handlers wait on it
std::atomic<uint32_t> g_arrived{0};
std::mutex g_pause_mu;                  // one safepoint at a time
pid_t g_paused[kMaxThreads];            // tids signalled in this pause, in order
// g_came[i]: g_paused[i] arrived (kCame) or was excused (kExcused) by the
// pausing thread. Whichever sets it first counts the thread, once.
enum : uint8_t { kNotYet = 0, kCame = 1, kExcused = 2 };
std::atomic<uint8_t> g_came[kMaxThreads];
std::atomic<int> g_npaused{0};      // written by the pausing thread only
uint32_t g_excused = 0;             // pausing thread only
// Between Pause's first signal and Resume. A handler outside it is a signal
// left pending from an earlier pause (by a thread that had it blocked
// while asleep, below): it returns at once.
std::atomic<bool> g_pausing{false};
// Between Pause's return (every thread held) and Resume.
std::atomic<bool> g_held{false};

// Threads inside SafepointSleepBegin/End: the signal blocked, nothing
// written to the heap until End. A pause signals each once (the signal
// stays pending, and real-time signals queue: `pending` says one is) and
// goes on without waiting for it; on waking it takes the pending signal
// and stops there if the pause still runs.
constexpr int kMaxAsleep = 1024;
struct AsleepSlot {
  std::atomic<pid_t> tid{0};
  std::atomic<bool> pending{false};
};
AsleepSlot g_asleep[kMaxAsleep];
std::atomic<int> g_asleep_hwm{0};  // slots below it may be in use
constinit thread_local int t_asleep_slot = -1;
constinit thread_local pid_t t_tid = 0;

pid_t Gettid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

long Futex(std::atomic<uint32_t>* w, int op, uint32_t val, const timespec* ts) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), op, val, ts, nullptr, 0);
}

// The asleep slot of `tid`, or null.
AsleepSlot* AsleepSlotOf(pid_t tid) {
  const int hwm = g_asleep_hwm.load(std::memory_order_seq_cst);
  for (int i = 0; i < hwm; ++i)
    if (g_asleep[i].tid.load(std::memory_order_seq_cst) == tid) return &g_asleep[i];
  return nullptr;
}

// Stops the calling thread until Resume: it has arrived. A thread the
// pause has not listed yet goes on: it is listed, and signalled again,
// before the pause can end its wait.
void Arrive() {
  const uint32_t gen = g_generation.load(std::memory_order_seq_cst);
  if (!g_pausing.load(std::memory_order_seq_cst)) return;
  const pid_t self = Gettid();
  const int n = g_npaused.load(std::memory_order_seq_cst);
  bool listed = false, counted = false;  // counted: as excused, already
  for (int i = 0; i < n; ++i) {
    if (g_paused[i] == self) {
      listed = true;
      counted = g_came[i].exchange(kCame, std::memory_order_acq_rel) == kExcused;
      break;
    }
  }
  if (!listed) return;
  if (!counted) {
    g_arrived.fetch_add(1, std::memory_order_acq_rel);
    Futex(&g_arrived, FUTEX_WAKE_PRIVATE, 1, nullptr);
  }
  while (g_generation.load(std::memory_order_acquire) == gen)
    Futex(&g_generation, FUTEX_WAIT_PRIVATE, gen, nullptr);
}

void Handler(int, siginfo_t*, void*) {
  if (t_safepoint_defer.depth > 0) {  // arrives at SafepointDeferEnd
    t_safepoint_defer.pending = 1;
    return;
  }
  const int saved = errno;
  Arrive();
  errno = saved;
}

void InstallHandlerOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = Handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    // A thread held here is stopped: a signal of the program's waits for
    // the pause to end (or goes to another thread), as its handler would
    // otherwise write the heap during the cut.
    sigfillset(&sa.sa_mask);
    sigaction(SafepointSignal(), &sa, nullptr);
  });
}

bool IsExempt(pid_t tid) {
  for (const auto& e : g_exempt)
    if (e.load(std::memory_order_acquire) == tid) return true;
  return false;
}

bool AlreadyPaused(pid_t tid) {
  for (int i = 0; i < g_npaused; ++i)
    if (g_paused[i] == tid) return true;
  return false;
}

bool KnownToStayOut(pid_t tid);

bool ReadTaskFile(pid_t tid, const char* file, char* buf, size_t size);

// The system calls a listed sleeper makes (the sleeps and waits the
// preload library lists). None writes the heap: the library passes them
// buffers of its own, and lists a condition variable wait only when the
// variable and its mutex lie outside the heap.
bool IsSleepCall(long nr) {
  switch (nr) {
    case SYS_nanosleep:
    case SYS_clock_nanosleep:
    case SYS_pause:
    case SYS_rt_sigsuspend:
    case SYS_rt_sigtimedwait:
    case SYS_epoll_wait:
    case SYS_epoll_pwait:
    case SYS_epoll_pwait2:
    case SYS_poll:
    case SYS_ppoll:
    case SYS_select:
    case SYS_pselect6:
    case SYS_futex:  // pthread_cond_wait's, on a variable and mutex outside the heap
      return true;
    default: return false;
  }
}

// The asleep slot of `tid` if the thread sleeps now: listed, and inside
// one of the sleeping system calls as the kernel sees it. A thread that
// left its sleep without SafepointSleepEnd (a signal handler that jumped
// out with siglongjmp) stays listed but is not believed, and is waited for.
AsleepSlot* SleepingNow(pid_t tid) {
  AsleepSlot* a = AsleepSlotOf(tid);
  if (a == nullptr) return nullptr;
  char buf[256];
  if (!ReadTaskFile(tid, "syscall", buf, sizeof(buf))) return nullptr;
  const long nr = std::strtol(buf, nullptr, 10);  // "running" reads as 0, which is read(2)
  return buf[0] >= '0' && buf[0] <= '9' && IsSleepCall(nr) ? a : nullptr;
}

// g_paused[slot] sleeps with the signal blocked and pending: counted now.
void ExcuseAsleep(int slot) {
  uint8_t not_yet = kNotYet;  // it may have woken and arrived meanwhile
  if (g_came[slot].compare_exchange_strong(not_yet, kExcused, std::memory_order_acq_rel)) ++g_excused;
}

// Signals every thread in /proc/self/task not yet signalled; returns how
// many it signalled now, or -errno. Raw getdents64: opendir allocates.
int SignalNewThreads(pid_t self) {
  int fd = os().open("/proc/self/task", O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) return fd;
  const pid_t pid = getpid();
  int sent = 0;
  alignas(8) char buf[8192];
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + off);
      off += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
      pid_t tid = static_cast<pid_t>(strtol(d->d_name, nullptr, 10));
      if (tid == self || IsExempt(tid) || AlreadyPaused(tid) || g_npaused == kMaxThreads || KnownToStayOut(tid))
        continue;
      // Publish the slot before the signal, and before asking whether the
      // thread sleeps, so that its handler finds itself either way.
      const int slot = g_npaused.load(std::memory_order_relaxed);
      g_came[slot].store(kNotYet, std::memory_order_relaxed);
      g_paused[slot] = tid;
      g_npaused.store(slot + 1, std::memory_order_seq_cst);
      AsleepSlot* asleep = SleepingNow(tid);
      if (asleep != nullptr && asleep->pending.load(std::memory_order_seq_cst)) {
        ExcuseAsleep(slot);  // an earlier pause's signal waits for it already
        ++sent;
      } else if (syscall(SYS_tgkill, pid, tid, SafepointSignal()) == 0) {
        ++sent;
        if (asleep != nullptr) {
          asleep->pending.store(true, std::memory_order_seq_cst);
          ExcuseAsleep(slot);
        }
      } else {
        g_npaused.store(slot, std::memory_order_relaxed);  // not signalled: forget it
      }
    }
  }
  os().close(fd);
  return sent;
}

// Reads /proc/self/task/TID/FILE into buf (NUL-terminated); false if the
// thread or file is gone. Raw calls: nothing may allocate during a pause.
bool ReadTaskFile(pid_t tid, const char* file, char* buf, size_t size) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/task/%d/%s", static_cast<int>(tid), file);
  int fd = os().open(path, O_RDONLY, 0);
  if (fd < 0) return false;
  ssize_t n = os().pread(fd, buf, size - 1, 0);
  os().close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  return true;
}

// True if `tid` is a kernel worker of this process (an io_uring io-wq or
// SQPOLL thread): it shows in /proc/self/task but runs no user code and
// blocks every signal, so it never arrives and need not. The kernel marks it
// PF_IO_WORKER in the flags field of its stat.
bool IsKernelWorker(pid_t tid) {
  char buf[512];
  if (!ReadTaskFile(tid, "stat", buf, sizeof(buf))) return false;
  const char* p = std::strrchr(buf, ')');  // comm may hold spaces
  // ") state ppid pgrp session tty_nr tpgid flags": flags follows the 7th space.
  for (int space = 0; space < 7 && p != nullptr; ++space) p = std::strchr(p + 1, ' ');
  if (p == nullptr) return false;
  constexpr unsigned long kPfIoWorker = 0x10;
  return (std::strtoul(p + 1, nullptr, 10) & kPfIoWorker) != 0;
}

// True if `tid` blocks (nearly) every signal: a service thread such as
// ThreadSanitizer's, which never runs program code. A thread that blocks a
// few signals (one inside the safepoint handler of the previous pause, or in
// the mprotect tracker's SIGSEGV handler) is not one and is waited for.
bool BlocksAllSignals(pid_t tid) {
  char buf[2048];
  if (!ReadTaskFile(tid, "status", buf, sizeof(buf))) return false;
  const char* p = std::strstr(buf, "SigBlk:");
  if (p == nullptr) return false;
  unsigned long long mask = std::strtoull(p + 7, nullptr, 16);
  return __builtin_popcountll(mask) >= 60;
}

// Threads seen before that never arrive: service threads (ZeroMQ's I/O
// threads block every signal for their whole life) and kernel workers
// (io_uring's). Later pauses do not signal them at all, after reading their
// mask or flags again (a tid can be reused), instead of waiting a tick or
// the long wait for them: every pause of a process with an io_uring worker
// used to wait two 1 ms ticks. Written by the pausing thread only.
// A full list takes the place of a thread that has exited, else the oldest
// entry's: a process that opens and closes many heaps (each with ZeroMQ
// threads of its own) must keep knowing the ones alive now.
constexpr int kMaxKnown = 64;
struct KnownThreads {
  pid_t tids[kMaxKnown];
  int n = 0;
  int oldest = 0;  // once full: the slot to reuse when none has exited
  bool Has(pid_t tid) const { return std::find(tids, tids + n, tid) != tids + n; }
  // Returns true when `tid` is new to the list.
  bool Remember(pid_t tid) {
    if (Has(tid)) return false;
    if (n < kMaxKnown) {
      tids[n++] = tid;
      return true;
    }
    for (pid_t& t : tids) {
      if (syscall(SYS_tgkill, getpid(), t, 0) != 0 && errno == ESRCH) {
        t = tid;
        return true;
      }
    }
    tids[oldest] = tid;
    oldest = (oldest + 1) % kMaxKnown;
    return true;
  }
};
KnownThreads g_services, g_kernel_workers;

bool IsKnownService(pid_t tid) { return g_services.Has(tid); }
bool RememberService(pid_t tid) { return g_services.Remember(tid); }

bool KnownToStayOut(pid_t tid) {
  if (g_kernel_workers.Has(tid)) return IsKernelWorker(tid);
  return g_services.Has(tid) && BlocksAllSignals(tid);
}

// Excuses the signalled threads that will not arrive: gone (exited first),
// kernel workers, and, once `long_wait` is true, service threads that block
// every signal (see pager.h). Each is counted once in g_excused, so a later
// pass of the same pause does not wait for it again. Only threads not yet
// arrived are looked at, so a pause where everyone arrives never reads /proc.
void ExcuseStayingOut(bool long_wait) {
  for (int i = 0; i < g_npaused; ++i) {
    if (g_came[i].load(std::memory_order_acquire) != kNotYet) continue;
    const pid_t tid = g_paused[i];
    bool excuse = false;
    if (syscall(SYS_tgkill, getpid(), tid, 0) != 0 && errno == ESRCH) {
      excuse = true;
    } else if (AsleepSlot* a = SleepingNow(tid); a != nullptr) {
      a->pending.store(true, std::memory_order_seq_cst);  // went to sleep with this pause's signal pending
      excuse = true;
    } else if (IsKernelWorker(tid)) {
      g_kernel_workers.Remember(tid);
      excuse = true;
    } else if ((long_wait || IsKnownService(tid)) && BlocksAllSignals(tid)) {
      if (RememberService(tid))
        PHEAP_LOG_INFO("commit safepoint: thread {} blocks every signal; commits go on without pausing it",
                       static_cast<int>(tid));
      excuse = true;
    }
    uint8_t not_yet = kNotYet;  // it may have arrived meanwhile, and counted itself
    if (excuse && g_came[i].compare_exchange_strong(not_yet, kExcused, std::memory_order_acq_rel)) ++g_excused;
  }
}

// Signalled threads neither arrived nor excused.
uint32_t Outstanding() {
  const uint32_t done = g_arrived.load(std::memory_order_acquire) + g_excused;
  const auto n = static_cast<uint32_t>(g_npaused.load(std::memory_order_relaxed));
  return done >= n ? 0 : n - done;
}

// Waits until every signalled thread has arrived or been excused. A thread
// arrives within microseconds once it has a core, so when only a few are
// outstanding the first wait is short: one that never will (an io_uring
// worker the kernel started since the last pause) is excused after 0.1 ms
// instead of a 1 ms tick. With more, the first check waits for the first
// arrival or the tick, since it reads /proc once per outstanding thread.
void WaitArrivals() {
  constexpr timespec kShort{0, 100000}, kTick{0, 1000000};  // re-check for threads that will not come
  constexpr uint32_t kFewOutstanding = 4;
  for (int ticks = 0;;) {
    const uint32_t arrived = g_arrived.load(std::memory_order_acquire);
    const uint32_t left = Outstanding();
    if (left == 0) return;
    Futex(&g_arrived, FUTEX_WAIT_PRIVATE, arrived, ticks == 0 && left <= kFewOutstanding ? &kShort : &kTick);
    if (Outstanding() == 0) return;
    ++ticks;
    if (ticks == 1 || ticks % 8 == 0) ExcuseStayingOut(ticks >= 50);
    if (ticks % 1000 == 0)
      PHEAP_LOG_WARN("commit safepoint: {} of {} threads have not paused after {} s (a thread blocking signal {}?)",
                     Outstanding(), g_npaused.load(), ticks / 1000, SafepointSignal());
  }
}

}  // namespace

constinit thread_local SafepointDeferState t_safepoint_defer{0, 0};

void SafepointTakeDeferred() {
  const int saved = errno;
  t_safepoint_defer.pending = 0;
  Arrive();
  errno = saved;
}

void SetSafepointExemptHook(SafepointExemptHook hook) { g_exempt_hook.store(hook, std::memory_order_release); }

void SafepointExempt() {
  if (SafepointExemptHook hook = g_exempt_hook.load(std::memory_order_acquire)) hook();
  pid_t tid = Gettid();
  for (auto& e : g_exempt) {
    pid_t expected = 0;
    if (e.compare_exchange_strong(expected, tid, std::memory_order_acq_rel)) return;
  }
  PHEAP_LOG_ERROR("more than {} exempt threads: thread {} will be paused by commits", kMaxExempt, tid);
}

int SafepointExemptThreads() {
  int n = 0;
  for (const auto& e : g_exempt) n += e.load(std::memory_order_relaxed) != 0;
  return n;
}

void SafepointUnexempt() {
  pid_t tid = Gettid();
  for (auto& e : g_exempt) {
    pid_t expected = tid;
    if (e.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) return;
  }
}

Result<int> Safepoint::Pause() {
  InstallHandlerOnce();
  g_pause_mu.lock();
  paused_ = true;
  g_npaused = 0;
  g_excused = 0;
  g_arrived.store(0, std::memory_order_release);
  g_pausing.store(true, std::memory_order_seq_cst);
  const pid_t self = Gettid();
  for (;;) {
    int sent = SignalNewThreads(self);
    if (sent < 0) {
      Resume();
      return Status::FromErrno("listing /proc/self/task for the commit safepoint", -sent);
    }
    WaitArrivals();
    if (sent == 0) break;  // a full pass found nobody new: everyone is held
  }
  g_held.store(true, std::memory_order_seq_cst);
  return g_npaused.load();
}

void Safepoint::Resume() {
  if (!paused_) return;
  paused_ = false;
  g_held.store(false, std::memory_order_seq_cst);
  g_pausing.store(false, std::memory_order_seq_cst);
  g_generation.fetch_add(1, std::memory_order_seq_cst);
  Futex(&g_generation, FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr);
  g_pause_mu.unlock();
}

void SafepointSleepBegin() {
  if (t_asleep_slot >= 0) return;  // nested: the outer call holds the slot
  if (t_tid == 0) t_tid = Gettid();
  int slot = -1;
  for (int i = 0; i < kMaxAsleep && slot < 0; ++i) {
    pid_t free_slot = 0;
    if (g_asleep[i].tid.compare_exchange_strong(free_slot, -1, std::memory_order_acq_rel)) slot = i;
  }
  if (slot < 0) return;  // every slot taken: this sleep is woken by pauses, as before
  for (int hwm = g_asleep_hwm.load(); hwm <= slot && !g_asleep_hwm.compare_exchange_weak(hwm, slot + 1);) {
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SafepointSignal());
  // Raw: past the preload library's pthread_sigmask, which keeps this
  // signal out of every program thread's mask.
  syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, nullptr, _NSIG / 8);
  g_asleep[slot].pending.store(false, std::memory_order_seq_cst);
  g_asleep[slot].tid.store(t_tid, std::memory_order_seq_cst);  // blocked first: a pause that sees it can count on it
  t_asleep_slot = slot;
}

void SafepointSleepEnd() {
  const int slot = t_asleep_slot;
  if (slot < 0) return;
  t_asleep_slot = -1;
  g_asleep[slot].tid.store(0, std::memory_order_seq_cst);  // before the unblock: a pause now signals it afresh
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SafepointSignal());
  // A signal pending from a pause is taken here: the thread stops until
  // that pause ends, or goes on if it ended already.
  syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &set, nullptr, _NSIG / 8);
}

bool SafepointHandlerEnter() {
  if (t_asleep_slot < 0) return false;
  const int saved = errno;
  SafepointSleepEnd();
  errno = saved;
  return true;
}

void SafepointHandlerLeave(bool was_asleep) {
  if (!was_asleep) return;
  const int saved = errno;
  SafepointSleepBegin();
  errno = saved;
}

bool SafepointHeld() { return g_held.load(std::memory_order_seq_cst); }

bool SafepointAlone() {
  std::lock_guard lk(g_pause_mu);  // the lists of threads that stay out are the pausing thread's
  int fd = os().open("/proc/self/task", O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) return false;
  const pid_t self = Gettid();
  bool alone = true;
  alignas(8) char buf[8192];
  while (alone) {
    const long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
    if (n <= 0) {
      alone = n == 0;  // the whole list was read
      break;
    }
    for (long off = 0; alone && off < n;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + off);
      off += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
      const auto tid = static_cast<pid_t>(strtol(d->d_name, nullptr, 10));
      alone = tid == self || IsExempt(tid) || (KnownToStayOut(tid) && !IsKernelWorker(tid));
    }
  }
  os().close(fd);
  return alone;
}

bool IsSafepointHandler(const struct sigaction& act) {
  return (act.sa_flags & SA_SIGINFO) != 0 && act.sa_sigaction == Handler;
}

}  // namespace pheap
