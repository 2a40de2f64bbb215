// A program the preload tests run under libpheap_preload.so. It uses the C
// interface only through pheap_default() (NULL when not preloaded), as any
// program could, and prints what it saw; the test compares.
//
//   preload_worker threads          threads allocate; others free it
//   preload_worker thread-exit      a thread frees whole segments, exits
//   preload_worker fork             fork without exec (see Fork below)
//   preload_worker forkexec PROG    fork, exec PROG, wait
//   preload_worker sleep            set a root, print "ready", sleep
//   preload_worker underscore-exit  set a root, end with _exit(0)
//   preload_worker exit-in-commit   set and commit a root, write 96 MiB, exit;
//                                   SIGALRM's handler calls _exit(3) 2 ms later,
//                                   inside the final commit
//   preload_worker read NAME DIR    open heap NAME (not preloaded), print
//                                   its "worker.data" root
//   preload_worker api              the malloc family's edge cases
//   preload_worker fill             write 96 MiB of blocks, root them (when
//                                   preloaded), print their checksum, exit
//   preload_worker fill-wait MS     the same, then sleep MS before printing
//   preload_worker readfill NAME DIR  the same checksum, from heap NAME
//   preload_worker churn            allocate about 4 MiB in blocks of varied
//                                   sizes, free a third, root none, exit
//   preload_worker exit-while-libc-busy  set a root, exit while threads keep
//                                   glibc's arenas locked (realloc, fork)
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <pheap/pheap.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr char kRoot[] = "worker.data";
constexpr char kParentText[] = "written by the parent";

// Each thread allocates strings and hands half of them to the next thread,
// which frees them: frees from threads that did not allocate.
int Threads() {
  constexpr int kThreads = 4, kRounds = 20000;
  std::vector<std::vector<std::string*>> handoff(kThreads);
  std::vector<std::mutex> mu(kThreads);
  std::atomic<uint64_t> sum{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t local = 0;
      for (int i = 0; i < kRounds; ++i) {
        auto* s = new std::string(static_cast<size_t>(16 + (i * 7 + t) % 300), static_cast<char>('a' + t));
        local += s->size();
        if (i % 2 == 0) {
          std::lock_guard<std::mutex> l(mu[(t + 1) % kThreads]);
          handoff[(t + 1) % kThreads].push_back(s);
        } else {
          delete s;
        }
        std::vector<std::string*> mine;
        {
          std::lock_guard<std::mutex> l(mu[t]);
          mine.swap(handoff[t]);
        }
        for (std::string* p : mine) {
          local += p->size();
          delete p;
        }
      }
      sum += local;
    });
  }
  for (auto& th : ts) th.join();
  for (auto& v : handoff)
    for (std::string* p : v) {
      sum += p->size();
      delete p;
    }
  std::printf("threads done: %llu\n", static_cast<unsigned long long>(sum.load()));
  return 0;
}

// A thread fills several allocator segments with small blocks, frees them
// all and exits: its exit gives the empty segments back to the OS under the
// allocator's lock, from glibc's thread-exit code rather than from a malloc
// call, and the engine's bookkeeping on that path must not re-enter the
// allocator. Done twice, with a commit between, so the second exit also
// finds the first's discards pending.
int ThreadExit() {
  pheap* h = pheap_default();
  size_t total = 0;
  for (int round = 0; round < 2; ++round) {
    std::thread t([&] {
      std::vector<void*> blocks;
      for (size_t bytes = 0; bytes < (size_t{24} << 20); bytes += 256) blocks.push_back(std::malloc(256));
      for (void* p : blocks) std::free(p);
      total += blocks.size();
    });
    t.join();
    if (h != nullptr && pheap_commit(h) < 0) return 10;
  }
  std::printf("thread-exit done: %zu blocks\n", total);
  return 0;
}

// The parent's buffer, rooted when preloaded. A previous run's buffer, if
// any, is left untouched before fork: it may not be resident yet, and the
// child must still read it.
int Fork() {
  pheap* h = pheap_default();
  auto* old = static_cast<char*>(h != nullptr ? pheap_root(h, kRoot) : nullptr);
  char* mine = static_cast<char*>(std::malloc(64));
  std::strcpy(mine, kParentText);
  if (h != nullptr && pheap_set_root(h, kRoot, mine) != 0) return 10;
  std::vector<std::string> parent_strings(1000, std::string(100, 'p'));
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return 11;
  if (pid == 0) {
    if (old != nullptr && std::strcmp(old, kParentText) != 0) _exit(20);  // a stored page read as zeros
    if (pheap_default() != nullptr) _exit(21);  // a child must not commit
    std::strcpy(mine, "written by the child");   // must never reach the image
    parent_strings.clear();                      // frees the parent's blocks
    std::vector<std::string> child(5000, std::string(50, 'c'));
    std::thread t([&] { child.clear(); });      // another thread frees them
    t.join();
    std::printf("child ok\n");
    std::exit(0);  // runs exit handlers: they must not commit either
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return 12;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::printf("child failed: status %d\n", status);
    return 13;
  }
  if (std::strcmp(mine, kParentText) != 0) return 14;
  if (h != nullptr && pheap_commit(h) < 0) return 15;
  std::printf("parent ok, old %s\n", old != nullptr ? "seen" : "absent");
  return 0;
}

int ForkExec(char** argv) {
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return 11;
  if (pid == 0) {
    execvp(argv[0], argv);
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return 12;
  std::printf("exec child status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}

// Points the root at a heap copy of `text`: 0, else the exit status to fail with.
int SetRoot(const char* text) {
  pheap* h = pheap_default();
  if (h == nullptr) return 10;
  char* p = static_cast<char*>(std::malloc(std::strlen(text) + 1));
  std::strcpy(p, text);
  return pheap_set_root(h, kRoot, p) == 0 ? 0 : 11;
}

int Sleep() {
  if (int r = SetRoot("set before SIGTERM"); r != 0) return r;
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) pause();
}

// Started with stdin, stdout and stderr closed, as daemons are: those
// numbers stay closed (pheap's own descriptors are elsewhere), so what the
// program writes to them fails instead of landing in pheap's files. Reports
// into `report`.
int StdioClosed(const char* report) {
  if (int r = SetRoot("set with stdio closed"); r != 0) return r;
  static const char kText[] = "text written to the closed stdout and stderr\n";
  const bool wrote = write(1, kText, sizeof(kText) - 1) > 0 || write(2, kText, sizeof(kText) - 1) > 0;
  char in = 0;
  const bool read_in = read(0, &in, 1) >= 0;
  // Opened after the writes: the lowest free number, 0 if stdin stayed closed.
  int fd = open(report, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return 30;
  char line[128];
  int n = std::snprintf(line, sizeof(line), "report fd %d, wrote %d, read %d\n", fd, wrote, read_in);
  if (write(fd, line, static_cast<size_t>(n)) != n) return 31;
  close(fd);
  return 0;
}

// Closes every descriptor above 2 three ways, as daemons and process
// libraries do (a close loop, closefrom, close_range), then keeps writing
// the heap across periodic commits and opens a file, which gets number 3.
// Reports "closed N, report fd F" into `report`: N numbers closed without
// EBADF (as many as natively: none of pheap's), F the report's number.
int CloseAll(const char* report) {
  int closed = 0;
  const int limit = static_cast<int>(sysconf(_SC_OPEN_MAX));
  for (int fd = 3; fd < limit; ++fd) closed += close(fd) == 0;
  closefrom(3);
  if (close_range(3, ~0U, 0) != 0) return 20;
  std::vector<char*> blocks;
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 64; ++i) {
      blocks.push_back(static_cast<char*>(std::malloc(4096)));
      std::memset(blocks.back(), round + 1, 4096);
    }
    usleep(20 * 1000);  // periodic commits run in between
  }
  if (pheap_default() != nullptr)  // natively there is no heap: the report alone counts
    if (int r = SetRoot("set after closing every descriptor"); r != 0) return r;
  int fd = open(report, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return 30;
  char line[128];
  int n = std::snprintf(line, sizeof(line), "closed %d, report fd %d\n", closed, fd);
  if (write(fd, line, static_cast<size_t>(n)) != n) return 31;
  close(fd);
  return 0;
}

// A request no heap or machine can serve fails with ENOMEM, silently; then
// blocks past a small heap's end come from glibc. Prints what it saw.
int Overfill() {
  errno = 0;
  void* absurd = std::malloc(size_t{842105263157894744});
  std::printf("absurd null %d enomem %d\n", absurd == nullptr, errno == ENOMEM);
  int outside = 0;
  for (int i = 0; i < 4096 && outside < 3; ++i) {
    void* p = std::malloc(size_t{1} << 20);
    if (p == nullptr) return 40;
    if (pheap_of(p) == nullptr) ++outside;
  }
  std::printf("blocks outside the heap %d\n", outside);
  return 0;
}

// Children SIGTERMed at once after fork, as multiprocessing's terminate()
// does: each must die of it. Prints how many did.
int ForkTerm() {
  int died = 0;
  for (int i = 0; i < 20; ++i) {
    pid_t pid = fork();
    if (pid < 0) return 50;
    if (pid == 0) {
      for (;;) pause();
    }
    kill(pid, SIGTERM);
    int status = 0;
    for (int ms = 0; ms < 5000; ++ms) {
      if (waitpid(pid, &status, WNOHANG) == pid) break;
      usleep(1000);
    }
    if (waitpid(pid, &status, WNOHANG) == 0) {  // still there
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      continue;
    }
    died += WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM;
  }
  std::printf("children killed by SIGTERM %d\n", died);
  return 0;
}

// A worker thread blocks the real-time signals ("rt"), then every signal
// ("all"), and writes the heap until told to stop (20 s at most), while
// the main thread commits. Prints, for each: whether the worker's mask
// reads back as it set it, whether the kernel holds the worker's mask
// without pheap's signal, and whether the commit returned while the worker
// still wrote (it may not wait for the mask to go, nor leave the worker
// running through the cut).
int Masks() {
  if (int r = SetRoot("set before the masks"); r != 0) return r;
  auto* pages = static_cast<volatile uint64_t*>(std::aligned_alloc(4096, 2 * 4096));
  if (pages == nullptr) return 61;
  for (const char* kind : {"rt", "all"}) {
    std::atomic<bool> stop{false}, blocked{false}, running{true};
    std::atomic<int> view{-1}, kernel{-1};
    std::thread worker([&] {
      sigset_t set;
      sigemptyset(&set);
      if (std::strcmp(kind, "all") == 0) sigfillset(&set);
      for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) sigaddset(&set, sig);
      pthread_sigmask(SIG_BLOCK, &set, nullptr);
      sigset_t now;
      pthread_sigmask(SIG_BLOCK, nullptr, &now);
      int all = 1;
      for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) all &= sigismember(&now, sig);
      view = all;
      // SigBlk in /proc: the kernel's mask, one bit per signal from 1.
      FILE* f = std::fopen("/proc/thread-self/status", "r");
      char line[256];
      while (f != nullptr && std::fgets(line, sizeof(line), f) != nullptr) {
        if (std::strncmp(line, "SigBlk:", 7) != 0) continue;
        const unsigned long long mask = std::strtoull(line + 7, nullptr, 16);
        int missing = 0;
        for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) missing += ((mask >> (sig - 1)) & 1) == 0;
        kernel = missing;
      }
      if (f != nullptr) std::fclose(f);
      blocked = true;
      const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() < end; ++i) {
        pages[0] = i;
        pages[512] = i;
      }
      running = false;
    });
    while (!blocked) std::this_thread::yield();
    const int64_t e = pheap_commit(pheap_default());
    const bool during = running.load();
    stop = true;
    worker.join();
    std::printf("%s: mask reads back %d, signals the kernel lets through %d, commit %s while the worker wrote %d\n",
                kind, view.load(), kernel.load(), e > 0 ? "ok" : "failed", during);
  }
  std::free(const_cast<uint64_t*>(pages));
  return 0;
}

// SIGTERM's disposition as the program reads and sets it: SIG_DFL at
// first, then its own handler, which a SIGTERM then runs.
volatile sig_atomic_t g_term_seen = 0;

int SigtermView() {
  struct sigaction sa {};
  sigaction(SIGTERM, nullptr, &sa);
  std::printf("SIGTERM at start: %s\n", sa.sa_handler == SIG_DFL ? "default" : "a handler");
  signal(SIGTERM, SIG_DFL);
  sigaction(SIGTERM, nullptr, &sa);
  std::printf("after SIG_DFL: %s\n", sa.sa_handler == SIG_DFL ? "default" : "a handler");
  sighandler_t before = signal(SIGTERM, [](int) { g_term_seen = 1; });
  std::printf("signal() returned %s\n", before == SIG_DFL ? "default" : "a handler");
  raise(SIGTERM);
  std::printf("the program's handler ran %d\n", static_cast<int>(g_term_seen));
  return 0;
}

// The System V and BSD names for setting a disposition, as the program
// reads them back: sysv_signal's handler runs once and resets, sigset
// holds and releases a signal, and SIGTERM set with sigset reads back as
// set (pheap's own handler for it does not show).
volatile sig_atomic_t g_usr_seen = 0;

const char* Disposition(int sig) {
  struct sigaction sa {};
  sigaction(sig, nullptr, &sa);
  return sa.sa_handler == SIG_DFL ? "default" : sa.sa_handler == SIG_IGN ? "ignored" : "a handler";
}

// Old programs call sigset, which glibc marks deprecated, and bsd_signal,
// which it exports without declaring.
extern "C" sighandler_t bsd_signal(int sig, sighandler_t handler);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
int SysvSignals() {
  auto seen = [](int) { g_usr_seen = g_usr_seen + 1; };
  std::printf("sysv_signal returned %s\n", sysv_signal(SIGUSR1, seen) == SIG_DFL ? "default" : "other");
  raise(SIGUSR1);
  std::printf("after one SIGUSR1: ran %d, now %s\n", static_cast<int>(g_usr_seen), Disposition(SIGUSR1));
  std::printf("sigset returned %s\n", sigset(SIGUSR2, seen) == SIG_DFL ? "default" : "other");
  std::printf("sigset(SIG_HOLD) returned %s\n", sigset(SIGUSR2, SIG_HOLD) == SIG_HOLD ? "hold" : "the handler");
  raise(SIGUSR2);
  std::printf("held: ran %d\n", static_cast<int>(g_usr_seen));
  std::printf("sigset again returned %s\n", sigset(SIGUSR2, seen) == SIG_HOLD ? "hold" : "other");
  std::printf("released: ran %d, now %s\n", static_cast<int>(g_usr_seen), Disposition(SIGUSR2));
  std::printf("SIGTERM at start: %s\n", Disposition(SIGTERM));
  sighandler_t before = sigset(SIGTERM, seen);
  std::printf("sigset(SIGTERM) returned %s, now %s\n", before == SIG_DFL ? "default" : "other", Disposition(SIGTERM));
  raise(SIGTERM);
  std::printf("SIGTERM ran the program's handler: %d\n", static_cast<int>(g_usr_seen));
  before = bsd_signal(SIGTERM, SIG_IGN);
  std::printf("bsd_signal returned %s, now %s\n", before == SIG_DFL ? "default" : "the handler", Disposition(SIGTERM));
  return 0;
}
#pragma GCC diagnostic pop

// Sleeps of each kind while commits run every few milliseconds: each runs
// its full length, and pause() returns for the program's own SIGALRM,
// after its handler ran. Prints what each returned.
volatile sig_atomic_t g_alarms = 0;

int Sleeps() {
  std::printf("sleep(1) left %u\n", sleep(1));
  std::printf("usleep(300 ms) returned %d\n", usleep(300000));
  timespec ts{0, 300 * 1000 * 1000}, rem{};
  std::printf("nanosleep(300 ms) returned %d\n", nanosleep(&ts, &rem));
  std::printf("clock_nanosleep(300 ms) returned %d\n", clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &rem));
  signal(SIGALRM, [](int) { g_alarms = g_alarms + 1; });
  itimerval it{};
  it.it_value.tv_usec = 500000;
  setitimer(ITIMER_REAL, &it, nullptr);
  const int r = pause();
  std::printf("pause() returned %d after %d alarms\n", r, static_cast<int>(g_alarms));
  return 0;
}

const char* ErrnoName(int r) {
  if (r >= 0) return "-";
  return errno == EAGAIN ? "EAGAIN" : errno == EINTR ? "EINTR" : "another errno";
}

// Sends `sig` to the process after `ms`, from a thread of its own.
std::thread SendLater(int sig, int ms) {
  return std::thread([sig, ms] {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    kill(getpid(), sig);
  });
}

// Waits for signals in each way while commits run every few milliseconds:
// each wait ends for the program's signal or its timeout only, and a wait
// for every signal gets the program's. Prints what each returned.
int SignalWaits() {
  sigset_t usr1, all, none;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigfillset(&all);
  sigemptyset(&none);
  pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
  timespec t{0, 300 * 1000 * 1000};
  int r = sigtimedwait(&usr1, nullptr, &t);
  std::printf("sigtimedwait(300 ms) returned %d %s\n", r, ErrnoName(r));
  std::thread later = SendLater(SIGUSR1, 300);
  siginfo_t info{};
  r = sigwaitinfo(&usr1, &info);
  later.join();
  std::printf("sigwaitinfo returned %s\n", r == SIGUSR1 && info.si_signo == SIGUSR1 ? "SIGUSR1" : ErrnoName(r));
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  later = SendLater(SIGUSR2, 300);
  int sig = 0;
  r = sigwait(&all, &sig);
  later.join();
  std::printf("sigwait(every signal) returned %d, signal %s\n", r, sig == SIGUSR2 ? "SIGUSR2" : "another");
  pthread_sigmask(SIG_UNBLOCK, &all, nullptr);
  signal(SIGALRM, [](int) { g_alarms = g_alarms + 1; });
  sigset_t alrm;
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &alrm, nullptr);
  itimerval it{};
  it.it_value.tv_usec = 300000;
  setitimer(ITIMER_REAL, &it, nullptr);
  r = sigsuspend(&none);
  std::printf("sigsuspend returned %d %s after %d alarms\n", r, ErrnoName(r), static_cast<int>(g_alarms));
  return 0;
}

// Waits on descriptors of each kind while commits run every few
// milliseconds, each with what it returns in heap memory, and waits on a
// condition variable: each ends for its timeout (not EINTR) or for data or
// a signal, and reports the data. Prints what each returned.
pthread_mutex_t g_wait_mu = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_wait_cv = PTHREAD_COND_INITIALIZER;

int Waits() {
  int quiet[2], busy[2];
  if (pipe(quiet) != 0 || pipe(busy) != 0) return 20;
  auto write_later = [&] {
    return std::thread([fd = busy[1]] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      (void)!write(fd, "x", 1);
    });
  };
  auto drain = [&] {
    char c;
    (void)!read(busy[0], &c, 1);
  };
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0x1234;
  epoll_ctl(ep, EPOLL_CTL_ADD, quiet[0], &ev);
  auto* events = static_cast<epoll_event*>(std::calloc(8, sizeof(epoll_event)));
  int r = epoll_wait(ep, events, 8, 300);
  std::printf("epoll_wait(300 ms) returned %d %s\n", r, ErrnoName(r));
  sigset_t none;
  sigemptyset(&none);
  r = epoll_pwait(ep, events, 8, 300, &none);
  std::printf("epoll_pwait(300 ms) returned %d %s\n", r, ErrnoName(r));
  ev.data.u64 = 0x5678;
  epoll_ctl(ep, EPOLL_CTL_ADD, busy[0], &ev);
  std::thread later = write_later();
  r = epoll_wait(ep, events, 8, 3000);
  later.join();
  std::printf("epoll_wait(data) returned %d, event %#llx %s\n", r, static_cast<unsigned long long>(events[0].data.u64),
              events[0].events == EPOLLIN ? "EPOLLIN" : "other");
  drain();
  auto* fds = static_cast<pollfd*>(std::calloc(2, sizeof(pollfd)));
  fds[0] = {quiet[0], POLLIN, 0};
  fds[1] = {busy[0], POLLIN, 0};
  r = poll(fds, 2, 300);
  std::printf("poll(300 ms) returned %d %s\n", r, ErrnoName(r));
  timespec t{0, 300 * 1000 * 1000};
  r = ppoll(fds, 2, &t, &none);
  std::printf("ppoll(300 ms) returned %d %s\n", r, ErrnoName(r));
  later = write_later();
  r = poll(fds, 2, 3000);
  later.join();
  std::printf("poll(data) returned %d, revents %d %d\n", r, fds[0].revents, fds[1].revents);
  drain();
  auto* set = static_cast<fd_set*>(std::malloc(sizeof(fd_set)));
  auto* tv = static_cast<timeval*>(std::malloc(sizeof(timeval)));
  const int nfds = std::max(quiet[0], busy[0]) + 1;
  FD_ZERO(set);
  FD_SET(quiet[0], set);
  FD_SET(busy[0], set);
  *tv = {0, 300000};
  r = select(nfds, set, nullptr, nullptr, tv);
  std::printf("select(300 ms) returned %d %s, %ld us left\n", r, ErrnoName(r), static_cast<long>(tv->tv_usec));
  FD_SET(quiet[0], set);
  FD_SET(busy[0], set);
  r = pselect(nfds, set, nullptr, nullptr, &t, &none);
  std::printf("pselect(300 ms) returned %d %s\n", r, ErrnoName(r));
  FD_SET(quiet[0], set);
  FD_SET(busy[0], set);
  *tv = {3, 0};
  later = write_later();
  r = select(nfds, set, nullptr, nullptr, tv);
  later.join();
  std::printf("select(data) returned %d, busy %d quiet %d\n", r, FD_ISSET(busy[0], set), FD_ISSET(quiet[0], set));
  std::free(tv);
  std::free(set);
  std::free(fds);
  std::free(events);
  pthread_mutex_lock(&g_wait_mu);
  timespec at{};
  clock_gettime(CLOCK_REALTIME, &at);
  at.tv_nsec += 300 * 1000 * 1000;
  if (at.tv_nsec >= 1000000000) at = {at.tv_sec + 1, at.tv_nsec - 1000000000};
  r = pthread_cond_timedwait(&g_wait_cv, &g_wait_mu, &at);
  std::printf("pthread_cond_timedwait(300 ms) returned %s\n", r == ETIMEDOUT ? "ETIMEDOUT" : std::strerror(r));
  bool signalled = false;
  later = std::thread([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pthread_mutex_lock(&g_wait_mu);
    signalled = true;
    pthread_cond_signal(&g_wait_cv);
    pthread_mutex_unlock(&g_wait_mu);
  });
  r = 0;
  while (!signalled && r == 0) r = pthread_cond_wait(&g_wait_cv, &g_wait_mu);
  pthread_mutex_unlock(&g_wait_mu);
  later.join();
  std::printf("pthread_cond_wait returned %d, signalled %d\n", r, static_cast<int>(signalled));
  return 0;
}

// A SIGALRM handler that writes two pages 300 us apart, run every 500 us
// while the main thread sleeps in pause() and another thread keeps pages
// dirty (so each commit's cut takes a while): a commit's cut falls before
// or after a handler, never inside one, so every committed image holds
// both pages at the same count. Ends by SIGKILL; read-pair checks it.
constexpr char kPairRoot[] = "worker.pair";
constexpr size_t kPairSecond = 8192 / sizeof(uint64_t);  // two pages on
volatile uint64_t* g_pair = nullptr;

void SpinMicros(long us) {
  timespec t0{}, t{};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do clock_gettime(CLOCK_MONOTONIC, &t);
  while ((t.tv_sec - t0.tv_sec) * 1000000 + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
}

void WritePairSlowly(int) {
  const uint64_t n = g_pair[0] + 1;
  g_pair[0] = n;
  SpinMicros(300);
  g_pair[kPairSecond] = n;
}

int HandlerInSleep() {
  pheap* h = pheap_default();
  if (h == nullptr) return 10;
  g_pair = static_cast<uint64_t*>(std::calloc(kPairSecond + 1, sizeof(uint64_t)));
  if (g_pair == nullptr || pheap_set_root(h, kPairRoot, const_cast<uint64_t*>(g_pair)) != 0) return 11;
  std::atomic<bool> stop{false};
  std::thread dirtier([&stop] {
    // The handler runs on the sleeping thread only. The timer's signal goes
    // to any thread that does not block it: while the main thread runs one
    // handler, the next would run here, and two handlers whose writes
    // interleave leave the pair two apart without any commit.
    sigset_t alrm;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alrm, nullptr);
    constexpr size_t kBytes = size_t{8} << 20;
    auto* p = static_cast<char*>(std::malloc(kBytes));
    for (char v = 1; !stop.load(); ++v) {
      for (size_t i = 0; i < kBytes; i += 4096) p[i] = v;
      usleep(1000);
    }
    std::free(p);
  });
  signal(SIGALRM, WritePairSlowly);
  itimerval it{{0, 500}, {0, 500}};
  setitimer(ITIMER_REAL, &it, nullptr);
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  while (std::chrono::steady_clock::now() < end) pause();
  raise(SIGKILL);  // the heap as last committed: no final commit
  return 12;
}

// The safepoint signal (SIGRTMIN+5) as the program sees it: it reads as
// SIG_DFL, setting it is refused, and commits go on. Prints what it saw.
volatile sig_atomic_t g_rt_seen = 0;

int SafepointSignalView() {
  const int sig = SIGRTMIN + 5;
  struct sigaction sa {};
  sigaction(sig, nullptr, &sa);
  std::printf("SIGRTMIN+5 at start: %s\n", sa.sa_handler == SIG_DFL ? "default" : "a handler");
  struct sigaction mine {};
  mine.sa_handler = [](int) { g_rt_seen = g_rt_seen + 1; };
  sigemptyset(&mine.sa_mask);
  const int r = sigaction(sig, &mine, nullptr);
  std::printf("setting a handler returned %d%s\n", r, r != 0 && errno == EINVAL ? " EINVAL" : "");
  std::vector<char*> blocks;
  for (int round = 0; round < 10; ++round) {
    blocks.push_back(static_cast<char*>(std::malloc(4096)));
    std::memset(blocks.back(), round + 1, 4096);
    usleep(20 * 1000);  // periodic commits run in between
  }
  std::printf("the handler ran %d times\n", static_cast<int>(g_rt_seen));
  if (pheap_default() != nullptr)
    if (int rr = SetRoot("set after SIGRTMIN+5 was asked for"); rr != 0) return rr;
  return 0;
}

// dup2 of /dev/null onto every descriptor above 2, as a careless daemon's
// redirection might, while commits run; then closes them. Prints how many
// dup2 made.
int DupOntoAll() {
  const int null_fd = open("/dev/null", O_RDWR);
  if (null_fd < 0) return 50;
  int made = 0;
  const int limit = static_cast<int>(std::min<long>(sysconf(_SC_OPEN_MAX), 4096));
  for (int fd = 3; fd < limit; ++fd) made += fd == null_fd || dup2(null_fd, fd) == fd;
  std::vector<char*> blocks;
  for (int round = 0; round < 10; ++round) {
    blocks.push_back(static_cast<char*>(std::malloc(4096)));
    std::memset(blocks.back(), round + 1, 4096);
    usleep(20 * 1000);
  }
  for (int fd = 3; fd < limit; ++fd) close(fd);
  std::printf("dup2 made %d descriptors\n", made);
  if (pheap_default() != nullptr)
    if (int r = SetRoot("set after dup2 onto every descriptor"); r != 0) return r;
  return 0;
}

// Prints the descriptors the process holds, as /proc/self/fd lists them.
int Fds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 60;
  std::vector<int> fds;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.' && std::atoi(e->d_name) != dirfd(d)) fds.push_back(std::atoi(e->d_name));
  closedir(d);
  std::sort(fds.begin(), fds.end());
  for (int fd : fds) std::printf("fd %d\n", fd);
  return 0;
}

int UnderscoreExit() {
  if (int r = SetRoot("set before _exit"); r != 0) return r;
  _exit(0);
}

// Threads resize blocks of glibc's own (the preload library passes them to
// glibc, which locks the main arena for each), and one forks, while the
// main thread exits.
// The final commit pauses them, possibly inside glibc, and then allocates
// from that arena itself on the exiting thread: it must not wait for a lock
// a paused thread holds.
int ExitWhileLibcBusy() {
  if (int r = SetRoot("set before exit"); r != 0) return r;
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  auto* libc_malloc = libc == nullptr ? nullptr : reinterpret_cast<void* (*)(size_t)>(dlsym(libc, "malloc"));
  if (libc_malloc == nullptr) return 20;
  constexpr int kThreads = 3;
  static std::atomic<uint64_t> rounds{0};
  for (int t = 0; t < kThreads; ++t) {
    void* p = libc_malloc(64);  // the main thread's: glibc's main arena
    if (p == nullptr) return 21;
    std::thread([p]() mutable {
      static constexpr size_t kSizes[] = {24, 3000, 200, 40000, 1100, 9000};
      for (uint64_t i = 0;; ++i) {
        p = std::realloc(p, kSizes[i % 6]);
        if (p == nullptr) std::abort();
        rounds.fetch_add(1, std::memory_order_relaxed);
      }
    }).detach();
  }
  // fork() holds every arena lock around the fork itself.
  std::thread([] {
    for (;;) {
      pid_t child = fork();
      if (child == 0) _exit(0);
      if (child < 0) std::abort();
      waitpid(child, nullptr, 0);
      rounds.fetch_add(1, std::memory_order_relaxed);
    }
  }).detach();
  while (rounds.load(std::memory_order_relaxed) < 20000) std::this_thread::yield();
  std::exit(0);
}

// A signal sent to the process while the program's one thread blocks it
// must wait for that thread: pheap's threads (the periodic committer, the
// pager's) block it too, so the program's handler never runs on them.
std::atomic<int> g_usr1_count{0};
std::atomic<pid_t> g_usr1_tid{0};

int SignalWhileBlocked() {
  if (int r = SetRoot("set before the signal"); r != 0) return r;
  if (pheap_commit(pheap_default()) < 0) return 12;
  struct sigaction sa {};
  sa.sa_handler = [](int) {
    g_usr1_count.fetch_add(1);
    g_usr1_tid.store(gettid());
  };
  sigaction(SIGUSR1, &sa, nullptr);
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
  kill(getpid(), SIGUSR1);
  for (int i = 0; i < 100 && g_usr1_count.load() == 0; ++i) usleep(2000);  // across periodic commits
  if (g_usr1_count.load() != 0) {
    std::fprintf(stderr, "SIGUSR1 ran on thread %d, not the program's %d\n", g_usr1_tid.load(), gettid());
    return 13;
  }
  pthread_sigmask(SIG_UNBLOCK, &usr1, nullptr);
  return g_usr1_count.load() == 1 && g_usr1_tid.load() == gettid() ? 0 : 14;
}

constexpr char kFillRoot[] = "worker.fill";
constexpr size_t kFillBlocks = 96, kFillBlockBytes = size_t{1} << 20;

char** FillBlocks() {
  auto** blocks = static_cast<char**>(std::malloc(kFillBlocks * sizeof(char*)));
  for (size_t b = 0; b < kFillBlocks; ++b) {
    blocks[b] = static_cast<char*>(std::malloc(kFillBlockBytes));
    for (size_t i = 0; i < kFillBlockBytes; ++i) blocks[b][i] = static_cast<char>((i * 31 + b * 7) >> 3);
  }
  return blocks;
}

// Sets the root to `text`, commits, writes 96 MiB more and arms an alarm
// whose handler ends the process with _exit(3) after `delay_us`.
int FillAndArmExitAlarm(const char* text, long delay_us) {
  if (int r = SetRoot(text); r != 0) return r;
  if (pheap_commit(pheap_default()) < 0) return 12;
  FillBlocks();
  struct sigaction sa {};
  sa.sa_handler = [](int) { _exit(3); };
  sigaction(SIGALRM, &sa, nullptr);
  itimerval t{};
  t.it_value.tv_usec = delay_us;
  setitimer(ITIMER_REAL, &t, nullptr);
  return 0;
}

// A program whose signal handler ends it with _exit while exit() is still
// writing the final commit (a long one: 96 MiB written since the last).
int ExitInCommit() {
  if (int r = FillAndArmExitAlarm("set before exit", 2000); r != 0) return r;
  std::exit(0);
}

// The same with the program's own pheap_commit: the handler's _exit may
// land inside the cut, where this thread holds the commit's locks.
int ExitInApiCommit(const char* delay_us) {
  if (int r = FillAndArmExitAlarm("set before pheap_commit", std::atol(delay_us)); r != 0) return r;
  if (pheap_commit(pheap_default()) < 0) return 13;
  for (;;) pause();
}

// FNV-1a over the blocks' bytes, in order.
uint64_t FillSum(char* const* blocks) {
  uint64_t h = 1469598103934665603ull;
  for (size_t b = 0; b < kFillBlocks; ++b)
    for (size_t i = 0; i < kFillBlockBytes; i += 64) h = (h ^ static_cast<unsigned char>(blocks[b][i])) * 1099511628211ull;
  return h;
}

// A program whose whole heap is written after its last periodic commit:
// the final commit must not need a second copy of it in memory.
// With `wait_ms`, it then sleeps so that periodic commits find the whole
// heap written since the last one.
int Fill(long wait_ms) {
  char** blocks = FillBlocks();
  pheap* h = pheap_default();
  if (h != nullptr && pheap_set_root(h, kFillRoot, blocks) != 0) return 10;
  timespec left{wait_ms / 1000, (wait_ms % 1000) * 1000000};
  while (wait_ms > 0 && nanosleep(&left, &left) != 0 && errno == EINTR) {
  }  // a commit's safepoint signal interrupts the sleep
  std::printf("fill %llx\n", static_cast<unsigned long long>(FillSum(blocks)));
  return 0;
}

// A short program that knows nothing of pheap: its blocks are reachable
// from nowhere once it ends.
int Churn() {
  constexpr size_t kBlocks = 4000;
  static char* blocks[kBlocks];
  uint64_t x = 88172645463325252ull, sum = 0;
  for (size_t i = 0; i < kBlocks; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const size_t n = size_t{16} << (x % 8) << (i % 3 == 0 ? 3 : 0);  // 16 B to 16 KiB
    blocks[i] = static_cast<char*>(std::malloc(n));
    if (blocks[i] == nullptr) return 10;
    std::memset(blocks[i], static_cast<int>(i), n);
    sum += n;
  }
  for (size_t i = 0; i < kBlocks; i += 3) std::free(blocks[i]);
  std::printf("churn %llu bytes\n", static_cast<unsigned long long>(sum));
  return 0;
}

// Heap `name` in `dir`, opened as a program that is not preloaded would;
// prints why not on failure.
pheap* OpenNamed(const char* name, const char* dir) {
  std::string config = std::string("dir=") + dir;
  pheap* h = pheap_open(name, config.c_str());
  if (h == nullptr) std::printf("open failed: %s\n", pheap_last_error());
  return h;
}

int ReadFill(const char* name, const char* dir) {
  pheap* h = OpenNamed(name, dir);
  if (h == nullptr) return 10;
  auto* blocks = static_cast<char**>(pheap_root(h, kFillRoot));
  if (blocks == nullptr) {
    std::printf("no root %s\n", kFillRoot);
    return 11;
  }
  std::printf("fill %llx\n", static_cast<unsigned long long>(FillSum(blocks)));
  std::fflush(stdout);
  return pheap_close(h) == 0 ? 0 : 12;
}

int Read(const char* name, const char* dir) {
  pheap* h = OpenNamed(name, dir);
  if (h == nullptr) return 10;
  auto* p = static_cast<const char*>(pheap_root(h, kRoot));
  std::printf("root: %s\n", p != nullptr ? p : "(unset)");
  std::fflush(stdout);
  return pheap_close(h) == 0 ? 0 : 11;
}

int ReadPair(const char* name, const char* dir) {
  pheap* h = OpenNamed(name, dir);
  if (h == nullptr) return 10;
  auto* pair = static_cast<const uint64_t*>(pheap_root(h, kPairRoot));
  if (pair == nullptr) std::printf("no root %s\n", kPairRoot);
  else if (pair[0] == 0) std::printf("pair unwritten\n");
  else if (pair[0] == pair[kPairSecond] || pair[0] == pair[kPairSecond] + 1) std::printf("pair consistent\n");
  else
    std::printf("pair torn: %llu and %llu\n", static_cast<unsigned long long>(pair[0]),
                static_cast<unsigned long long>(pair[kPairSecond]));
  std::fflush(stdout);
  return pheap_close(h) == 0 ? 0 : 11;
}

// Prints what glibc's semantics promise, so a preloaded run must print the
// same; and, when preloaded, that the blocks came from the heap.
int Api() {
  pheap* h = pheap_default();
  auto from_heap = [h](const void* p) { return h == nullptr || pheap_of(p) == h; };
  auto aligned = [](const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; };
  void* z = std::malloc(0);
  std::printf("malloc(0) non-null %d heap %d\n", z != nullptr, from_heap(z));
  std::free(z);
  std::free(nullptr);
  void* r = std::realloc(nullptr, 100);
  std::printf("realloc(NULL, 100) usable %d heap %d\n", malloc_usable_size(r) >= 100, from_heap(r));
  std::memset(r, 7, 100);
  r = std::realloc(r, 100000);
  std::printf("realloc grow kept %d\n", static_cast<unsigned char*>(r)[99] == 7);
  std::printf("realloc(p, 0) null %d\n", std::realloc(r, 0) == nullptr);
  void* c = std::calloc(1000, 1000);
  bool zero = true;
  for (size_t i = 0; i < 1000000; i += 4096) zero &= static_cast<char*>(c)[i] == 0;
  std::printf("calloc zeroed %d heap %d\n", zero, from_heap(c));
  std::free(c);
  errno = 0;
  volatile size_t huge = SIZE_MAX / 2;  // hidden from the compiler's size check
  const bool overflow_null = std::calloc(huge, 4) == nullptr;
  std::printf("calloc overflow null %d enomem %d\n", overflow_null, errno == ENOMEM);
  void* m = nullptr;
  const bool ok = posix_memalign(&m, 4096, 10) == 0;
  std::printf("posix_memalign(4096) %d aligned %d\n", ok, aligned(m, 4096));
  std::free(m);
  std::printf("posix_memalign(3) EINVAL %d\n", posix_memalign(&m, 3, 10) == EINVAL);
  void* a = aligned_alloc(256, 512);
  void* v = valloc(10);
  void* pv = pvalloc(10);
  void* mm = memalign(64, 10);
  std::printf("aligned %d %d %d %d\n", aligned(a, 256), aligned(v, 4096), aligned(pv, 4096), aligned(mm, 64));
  std::free(a);
  std::free(v);
  std::free(pv);
  std::free(mm);
  struct alignas(128) Wide { char c[128]; };
  auto* w = new Wide[3];
  std::printf("aligned new %d heap %d\n", aligned(w, 128), from_heap(w));
  delete[] w;
  auto* n = new (std::nothrow) int[10];
  std::printf("nothrow new %d\n", n != nullptr);
  delete[] n;
  std::printf("mallopt %d malloc_trim ok %d\n", mallopt(M_TRIM_THRESHOLD, 1 << 20), malloc_trim(0) >= 0);
  auto* volatile big = static_cast<char*>(std::malloc(1 << 20));
  big[0] = 1;  // used, so the pair is not elided
  struct mallinfo2 mi = mallinfo2();
  std::printf("mallinfo2 counts a live MiB %d\n", mi.uordblks + mi.hblkhd >= (1u << 20));
  std::free(big);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "threads") return Threads();
  if (mode == "api") return Api();
  if (mode == "thread-exit") return ThreadExit();
  if (mode == "fork") return Fork();
  if (mode == "forkexec" && argc > 2) return ForkExec(argv + 2);
  if (mode == "sleep") return Sleep();
  if (mode == "underscore-exit") return UnderscoreExit();
  if (mode == "overfill") return Overfill();
  if (mode == "fork-term") return ForkTerm();
  if (mode == "fds") return Fds();
  if (mode == "masks") return Masks();
  if (mode == "sleeps") return Sleeps();
  if (mode == "signal-waits") return SignalWaits();
  if (mode == "waits") return Waits();
  if (mode == "handler-in-sleep") return HandlerInSleep();
  if (mode == "read-pair" && argc == 4) return ReadPair(argv[2], argv[3]);
  if (mode == "safepoint-signal") return SafepointSignalView();
  if (mode == "dup-onto-all") return DupOntoAll();
  if (mode == "sigterm-view") return SigtermView();
  if (mode == "sysv-signals") return SysvSignals();
  if (mode == "stdio-closed" && argc == 3) return StdioClosed(argv[2]);
  if (mode == "close-all" && argc == 3) return CloseAll(argv[2]);
  if (mode == "exit-while-libc-busy") return ExitWhileLibcBusy();
  if (mode == "exit-in-commit") return ExitInCommit();
  if (mode == "signal-while-blocked") return SignalWhileBlocked();
  if (mode == "exit-in-api-commit" && argc == 3) return ExitInApiCommit(argv[2]);
  if (mode == "read" && argc == 4) return Read(argv[2], argv[3]);
  if (mode == "fill") return Fill(0);
  if (mode == "churn") return Churn();
  if (mode == "fill-wait" && argc == 3) return Fill(std::atol(argv[2]));
  if (mode == "readfill" && argc == 4) return ReadFill(argv[2], argv[3]);
  std::fprintf(stderr, "usage: preload_worker threads|thread-exit|fork|forkexec PROG...|sleep|read NAME DIR|\n"
                       "fill|fill-wait MS|readfill NAME DIR|underscore-exit|exit-in-commit|signal-while-blocked\n");
  return 2;
}
