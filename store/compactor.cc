#include "store/compactor.h"

#include <latch>

#include "base/log.h"
#include "base/thread.h"

namespace pheap {

void Compactor::Wakeup::Notify() {
  {
    std::lock_guard l(mu_);
    pending_ = true;
  }
  cv_.notify_all();
}

Compactor::Compactor(StoreList stores, std::shared_ptr<Wakeup> wakeup, std::chrono::milliseconds poll,
                     ThreadHooks hooks)
    : stores_(std::move(stores)), wakeup_(std::move(wakeup)), poll_(poll) {
  std::latch started(1);
  thread_ = StartThread([this, &started, hooks] {
    if (hooks.start != nullptr) hooks.start();
    started.count_down();
    Run();
    if (hooks.end != nullptr) hooks.end();
  });
  started.wait();
}

Compactor::~Compactor() {
  {
    std::lock_guard l(wakeup_->mu_);
    wakeup_->stop_ = true;
  }
  wakeup_->cv_.notify_all();
  thread_.join();
}

bool Compactor::CompactIfDue(PageStore& store, std::string* last_error) {
  if (!store.CompactionDue()) return false;
  Status s = store.Compact();
  if (s.ok()) {
    if (last_error != nullptr) last_error->clear();
    return true;
  }
  if (last_error == nullptr || *last_error != s.message())
    PHEAP_LOG_WARN("heap store {}: background compaction failed (retried later): {}", store.path(), s.ToString());
  if (last_error != nullptr) *last_error = s.message();
  return false;
}

void Compactor::Run() {
  std::string last_error;
  Wakeup& w = *wakeup_;
  std::unique_lock l(w.mu_);
  std::chrono::milliseconds rest{0};  // after a round that compacted: as long as it took
  for (;;) {
    if (rest.count() > 0) w.cv_.wait_for(l, rest, [&] { return w.stop_; });
    w.cv_.wait_for(l, poll_, [&] { return w.stop_ || w.pending_; });
    if (w.stop_) return;
    w.pending_ = false;
    l.unlock();
    const auto start = std::chrono::steady_clock::now();
    uint64_t done = 0;
    for (const auto& store : stores_())
      if (store != nullptr && CompactIfDue(*store, &last_error)) ++done;
    compactions_.fetch_add(done, std::memory_order_relaxed);
    rest = done == 0 ? std::chrono::milliseconds{0}
                     : std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    l.lock();
    // One more round at once if a file was sealed meanwhile, or this one
    // compacted (a compaction may leave another due).
    if (done != 0) w.pending_ = true;
  }
}

}  // namespace pheap
