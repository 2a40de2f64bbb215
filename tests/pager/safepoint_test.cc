// The safepoint's handling of service threads: threads that block every
// signal (as ZeroMQ's do) are learned once and not signalled again, even in
// a process that has seen many of them come and go, and one that arrives
// after all once excused is counted once. And deferral: a thread inside a
// deferred scope is stopped only when the scope ends. SafepointAlone tells
// whether a pause would stop any thread.
#include "pager/safepoint.h"

#include <gtest/gtest.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

namespace pheap {
namespace {

// A thread that blocks every signal until stopped, like a ZeroMQ I/O thread.
class ServiceThread {
 public:
  ServiceThread() {
    thread_ = std::thread([this] {
      sigset_t all;
      sigfillset(&all);
      pthread_sigmask(SIG_BLOCK, &all, nullptr);
      started_ = true;
      while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    while (!started_) std::this_thread::yield();
  }
  ~ServiceThread() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> started_{false}, stop_{false};
  std::thread thread_;
};

// A pause taken by a thread of its own and held until Release, so the test
// can watch it from outside (the test's thread is exempt).
class HeldPause {
 public:
  HeldPause()
      : thread_([this] {
          Safepoint sp;
          auto n = sp.Pause();
          EXPECT_TRUE(n.ok()) << n.status().ToString();
          paused_ = true;
          while (!release_) std::this_thread::yield();
          sp.Resume();
        }) {}
  ~HeldPause() {
    if (thread_.joinable()) Release();
  }
  bool paused() const { return paused_; }
  void WaitPaused() const {
    while (!paused_) std::this_thread::yield();
  }
  void Release() {
    release_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> paused_{false}, release_{false};
  std::thread thread_;
};

// The threads Pause signals (besides the caller): a learned service thread
// is not among them.
int Signalled() {
  Safepoint sp;
  auto n = sp.Pause();
  EXPECT_TRUE(n.ok()) << n.status().ToString();
  return n.ok() ? *n : -1;
}

TEST(Safepoint, ServiceThreadsAreLearnedAndNotSignalledAgain) {
  const int base = Signalled();  // the sanitizers' own threads, if any
  {
    ServiceThread s;
    Signalled();  // learns it (after waiting for it once)
    EXPECT_EQ(Signalled(), base);
  }
  EXPECT_EQ(Signalled(), base);
}

TEST(Safepoint, ManyServiceThreadsComeAndGoAndTheLiveOnesStayKnown) {
  const int base = Signalled();
  // More generations than the list holds, two threads each, as heaps with
  // peers opened and closed one after another leave behind.
  for (int gen = 0; gen < 40; ++gen) {
    ServiceThread a, b;
    Signalled();
    ASSERT_EQ(Signalled(), base) << "generation " << gen << ": a learned service thread was signalled again";
  }
  ServiceThread a, b;
  Signalled();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Signalled(), base);
}

// SafepointAlone: true while every other thread is exempt or a service
// thread known to stay out, false while one exists that a pause would stop.
TEST(Safepoint, AloneOnlyWhileNoOtherThreadWouldStop) {
  Signalled();  // learns the sanitizers' service threads, if any
  EXPECT_TRUE(SafepointAlone());
  std::atomic<bool> stop{false};
  auto spin = [&stop] {
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  std::thread exempt = StartExemptThread(spin);
  EXPECT_TRUE(SafepointAlone());
  std::thread program(spin);
  EXPECT_FALSE(SafepointAlone());
  stop = true;
  program.join();
  exempt.join();
  EXPECT_TRUE(SafepointAlone());
  {
    ServiceThread s;
    EXPECT_FALSE(SafepointAlone()) << "not yet known to stay out";
    Signalled();
    EXPECT_TRUE(SafepointAlone());
  }
  EXPECT_TRUE(SafepointAlone());
}

}  // namespace
// A pause that signals a thread inside a deferred scope waits for the scope
// to end, and the thread then stops there: the work it does after the scope
// does not happen while the others are paused.
TEST(Safepoint, ADeferredScopeIsLeftBeforeTheThreadStops) {
  SafepointExempt();  // this thread drives the test from outside the pause
  std::atomic<bool> inside{false}, leave{false}, stop{false};
  std::atomic<uint64_t> after{0};
  std::thread t([&] {
    {
      SafepointDeferral d;
      SafepointDeferral nested;  // only the outermost scope's end stops it
      inside = true;
      while (!leave) std::this_thread::yield();
    }
    while (!stop) after.fetch_add(1);
  });
  while (!inside) std::this_thread::yield();

  HeldPause pause;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(pause.paused()) << "the pause stopped a thread inside a deferred scope";
  leave = true;
  pause.WaitPaused();
  const uint64_t at_pause = after.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(after.load(), at_pause) << "the thread ran on after its scope during the pause";
  pause.Release();
  while (after.load() == at_pause) std::this_thread::yield();  // runs again
  stop = true;
  t.join();
  SafepointUnexempt();
}

// A thread excused for blocking every signal that unblocks them during the
// same pause arrives after all. It must count once: counted twice, it
// would stand in for a thread that has not stopped yet, here one inside a
// deferred scope, and the pause would end with that thread still running.
TEST(Safepoint, AnExcusedThreadThatArrivesLaterIsCountedOnce) {
  SafepointExempt();
  std::atomic<bool> blocking{false}, unblock{false}, stop_service{false};
  std::thread service([&] {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    blocking = true;
    while (!unblock) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    pthread_sigmask(SIG_UNBLOCK, &all, nullptr);  // the pending pause signal stops it here
    while (!stop_service) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  std::atomic<bool> inside{false}, leave{false};
  std::thread deferring([&] {
    SafepointDeferral d;
    inside = true;
    while (!leave) std::this_thread::yield();
  });
  while (!blocking || !inside) std::this_thread::yield();

  HeldPause pause;
  // The service thread is excused once the pause has waited about 50 ms.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  unblock = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const bool ended_early = pause.paused();
  EXPECT_FALSE(ended_early) << "the pause ended while a thread in a deferred scope still ran";
  if (ended_early) {  // let the pause go first, then release the late arrivals with another
    pause.Release();
    leave = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    Safepoint again;
    (void)again.Pause();
    again.Resume();
  } else {
    leave = true;
    pause.WaitPaused();
    pause.Release();
  }
  deferring.join();
  stop_service = true;
  service.join();
  SafepointUnexempt();
}

// The other sleeping system calls the preload library lists (waits on
// descriptors, and the futex of a condition variable wait): a pause
// completes while a listed thread is still inside one, without waking it.
TEST(Safepoint, AThreadListedInAWaitIsNotWaitedFor) {
  SafepointExempt();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(ep, 0);
  std::atomic<uint32_t> word{0};
  constexpr int kWaitMs = 2000;
  const timespec two_s{kWaitMs / 1000, 0};
  const std::pair<const char*, std::function<long()>> waits[] = {
      {"epoll_wait",
       [&] {
         epoll_event ev;
         return syscall(SYS_epoll_wait, ep, &ev, 1, kWaitMs);
       }},
      {"poll",
       [&] {
         pollfd p{fds[0], POLLIN, 0};
         return syscall(SYS_poll, &p, 1, kWaitMs);
       }},
      {"futex", [&] { return syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &two_s, nullptr, 0); }},
  };
  for (const auto& [name, call] : waits) {
    std::atomic<bool> asleep{false}, returned{false};
    std::thread waiter([&] {
      SafepointSleepBegin();
      asleep = true;
      call();
      returned = true;
      SafepointSleepEnd();
    });
    while (!asleep) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // inside the call
    {
      Safepoint sp;
      auto n = sp.Pause();
      ASSERT_TRUE(n.ok()) << n.status().ToString();
      EXPECT_FALSE(returned.load()) << name << ": the pause waited for the waiter, or woke it";
    }
    waiter.join();
  }
  close(ep);
  close(fds[0]);
  close(fds[1]);
  SafepointUnexempt();
}

// A thread asleep between SafepointSleepBegin and End is not woken by a
// pause (its sleep runs its full length) and not waited for (the pause
// completes while it sleeps); waking while the pause holds, it stops in
// SafepointSleepEnd and does not run on until the pause ends. Pauses while
// it sleeps signal it once. A thread that left its sleep without End (as
// after a siglongjmp) is waited for like any other.
TEST(Safepoint, ASleepingThreadIsNeitherWokenNorWaitedFor) {
  SafepointExempt();
  std::atomic<bool> asleep{false}, stop{false};
  std::atomic<long> slept_rc{-2};
  std::atomic<uint64_t> after{0};
  std::thread sleeper([&] {
    SafepointSleepBegin();
    asleep = true;
    timespec ts{0, 400 * 1000 * 1000};
    slept_rc = syscall(SYS_nanosleep, &ts, nullptr);
    SafepointSleepEnd();
    while (!stop) after.fetch_add(1);
  });
  while (!asleep) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // inside nanosleep
  for (int i = 0; i < 20; ++i) {  // short pauses while it sleeps: none waits, none wakes it
    Safepoint sp;
    auto n = sp.Pause();
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    sp.Resume();
  }
  HeldPause pause;
  pause.WaitPaused();
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // it woke 400 ms in, during the pause
  EXPECT_EQ(slept_rc.load(), 0) << "the sleep was cut short";
  EXPECT_EQ(after.load(), 0u) << "the sleeper ran on during the pause";
  pause.Release();
  while (after.load() == 0) std::this_thread::yield();
  stop = true;
  sleeper.join();

  // Listed as asleep but running, End never called: it blocks the signal,
  // so the pause waits for it (and excuses it only as a thread blocking
  // every signal would be), rather than counting it asleep.
  std::atomic<bool> running{false}, release{false};
  std::atomic<uint64_t> spins{0};
  std::thread jumped([&] {
    SafepointSleepBegin();
    running = true;
    while (!release) spins.fetch_add(1);
    SafepointSleepEnd();
  });
  while (!running) std::this_thread::yield();
  HeldPause held;
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(held.paused()) << "a running thread was counted as asleep";
  release = true;
  held.WaitPaused();
  held.Release();
  jumped.join();
  SafepointUnexempt();
}

std::atomic<int> g_handler_wrote{0};

// A handler of the program's, run in a thread that a held pause counted
// as asleep, stops at its entry until the pause ends: it cannot write the
// heap inside the cut. The interrupted sleep then ends as it would without
// pheap (EINTR), and the thread is listed asleep again while in the call.
void WritingHandler(int) {
  const bool asleep = SafepointHandlerEnter();
  g_handler_wrote.store(1);
  SafepointHandlerLeave(asleep);
}

// A signal of the program's that reaches a thread held by a pause runs
// its handler only after the pause: the thread is stopped.
TEST(Safepoint, AHeldThreadRunsNoHandlerUntilThePauseEnds) {
  SafepointExempt();
  g_handler_wrote = 0;
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_handler_wrote.store(1); };
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  std::atomic<bool> stop{false}, started{false};
  std::thread worker([&] {
    started = true;
    while (!stop) std::this_thread::yield();
  });
  while (!started) std::this_thread::yield();
  HeldPause pause;
  pause.WaitPaused();
  pthread_kill(worker.native_handle(), SIGUSR1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(g_handler_wrote.load(), 0) << "a held thread ran the program's handler inside the pause";
  pause.Release();
  while (g_handler_wrote.load() == 0) std::this_thread::yield();
  stop = true;
  worker.join();
  signal(SIGUSR1, SIG_DFL);
  SafepointUnexempt();
}

TEST(Safepoint, AHandlerInterruptingASleepWaitsForThePauseToEnd) {
  g_handler_wrote = 0;
  SafepointExempt();
  struct sigaction sa {};
  sa.sa_handler = WritingHandler;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  std::atomic<bool> asleep{false};
  std::atomic<long> slept_rc{-2};
  std::thread sleeper([&] {
    SafepointSleepBegin();
    asleep = true;
    timespec ts{2, 0};
    slept_rc = syscall(SYS_nanosleep, &ts, nullptr);
    SafepointSleepEnd();
  });
  while (!asleep) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // inside nanosleep
  HeldPause pause;
  pause.WaitPaused();
  pthread_kill(sleeper.native_handle(), SIGUSR1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(g_handler_wrote.load(), 0) << "the handler ran inside the pause";
  pause.Release();
  sleeper.join();
  EXPECT_EQ(g_handler_wrote.load(), 1);
  EXPECT_EQ(slept_rc.load(), -1) << "the handler interrupts the sleep, as without pheap";
  signal(SIGUSR1, SIG_DFL);
  SafepointUnexempt();
}

}  // namespace pheap
