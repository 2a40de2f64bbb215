#include "heap/commit_loop.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "base/thread.h"
#include "pager/pager.h"

namespace pheap {
namespace {

constexpr uint32_t kNone = 0, kStop = 1, kSignal = 2;

long Futex(std::atomic<uint32_t>* w, int op, uint32_t val, const timespec* ts) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), op, val, ts, nullptr, 0);
}

}  // namespace

CommitLoop::CommitLoop(uint64_t period_ms, std::function<void()> tick, std::function<void()> on_signal)
    : period_ms_(period_ms), tick_(std::move(tick)), on_signal_(std::move(on_signal)) {}

CommitLoop::~CommitLoop() { Stop(); }

bool CommitLoop::Start(ThreadStarter start) {
  std::lock_guard<std::mutex> l(mu_);
  if (started_) return true;
  AsyncSignalsBlocked blocked;  // inherited by the loop's thread
  started_ = start(&thread_, nullptr, &CommitLoop::Main, this) == 0;
  return started_;
}

void CommitLoop::Wake(uint32_t why) {
  wake_.store(why, std::memory_order_release);
  Futex(&wake_, FUTEX_WAKE_PRIVATE, 1, nullptr);
}

void CommitLoop::Stop() {
  std::lock_guard<std::mutex> l(mu_);  // joined once, whoever stops first
  if (!started_ || wake_.load(std::memory_order_acquire) == kSignal) return;
  Wake(kStop);
  pthread_join(thread_, nullptr);
  started_ = false;
}

void CommitLoop::WakeFromSignal() { Wake(kSignal); }

void CommitLoop::ForgetAfterFork() { started_ = false; }

void* CommitLoop::Main(void* self) {
  auto* loop = static_cast<CommitLoop*>(self);
  Pager::ExemptCurrentThread();
  loop->Run();
  Pager::UnexemptCurrentThread();
  return nullptr;
}

void CommitLoop::Run() {
  const timespec period{static_cast<time_t>(period_ms_ / 1000), static_cast<long>(period_ms_ % 1000) * 1000000};
  for (;;) {
    const uint32_t w = wake_.load(std::memory_order_acquire);
    if (w == kStop) return;
    if (w == kSignal) {
      if (on_signal_) on_signal_();
      return;
    }
    long r = Futex(&wake_, FUTEX_WAIT_PRIVATE, kNone, period_ms_ > 0 ? &period : nullptr);
    if (r < 0 && errno == ETIMEDOUT) tick_();
  }
}

}  // namespace pheap
