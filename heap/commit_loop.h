// CommitLoop: the one committer thread, which runs a tick every period
// until it is stopped. It serves a heap's background commits (commit_ms)
// and the preload library's committer, which measures each commit, ends
// with a final one on SIGTERM and starts its thread with the C library's
// pthread_create; those differences are the hooks below, not a second loop.
// The engine's live statistics (heap/live_stats.h) tick on one too.
//
// The loop sleeps on a futex, so WakeFromSignal is async-signal-safe.
//
// Thread safety: Start, Stop and ForgetAfterFork from any one thread at a
// time (they share a lock); WakeFromSignal from anywhere, a signal handler
// included. Tick and OnSignal run on the loop's thread.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>

namespace pheap {

class CommitLoop {
 public:
  using ThreadStarter = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);

  // tick: runs every period_ms on the loop's thread (never when period_ms
  // is 0: the loop then only waits for a wake). on_signal: runs once on the
  // loop's thread after WakeFromSignal, and the loop ends; may be empty.
  CommitLoop(uint64_t period_ms, std::function<void()> tick, std::function<void()> on_signal = {});
  ~CommitLoop();  // Stop()
  CommitLoop(const CommitLoop&) = delete;
  CommitLoop& operator=(const CommitLoop&) = delete;

  // Starts the thread, with async signals blocked in it, through `start`
  // (a pthread_create). The thread is exempt from commits
  // (PersistentHeap::ExemptCurrentThread). Returns whether it started.
  bool Start(ThreadStarter start = pthread_create);
  // Wakes the loop to end and joins it; idempotent. After WakeFromSignal
  // it neither waits nor joins: the loop's on_signal has the last word.
  void Stop();
  // Ends the loop after its on_signal. Async-signal-safe.
  void WakeFromSignal();
  // In a child of fork: the thread does not exist here; forget it.
  void ForgetAfterFork();

  uint64_t period_ms() const { return period_ms_; }

 private:
  static void* Main(void* self);
  void Run();
  void Wake(uint32_t why);

  const uint64_t period_ms_;
  const std::function<void()> tick_;
  const std::function<void()> on_signal_;
  std::atomic<uint32_t> wake_{0};  // kNone, kStop or kSignal (commit_loop.cc)
  std::mutex mu_;
  pthread_t thread_{};
  bool started_ = false;  // and not yet joined; under mu_
};

}  // namespace pheap
