// The safepoint's handling of service threads: threads that block every
// signal (as ZeroMQ's do) are learned once and not signalled again, even in
// a process that has seen many of them come and go, and one that arrives
// after all once excused is counted once. And deferral: a thread inside a
// deferred scope is stopped only when the scope ends.
#include "pager/safepoint.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <thread>
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

}  // namespace pheap
