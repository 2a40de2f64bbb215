// Compactor: compacts page stores in the background, so a heap or a peer
// that commits small epochs for a long time keeps its log files within
// about 1/compact_live_ratio of its live image plus one log file
// (PageStore::CompactionDue).
//
// One thread. It looks at the stores `stores` lists when woken (Wakeup,
// which a store's on_log_file_sealed calls: only a sealed file can make a
// compaction due) and at least every poll interval, and compacts each that
// is due. After a round that compacted it pauses at least as long as the
// round took, so compaction has at most half of the disk's time.
//
// Thread safety: the constructor starts the thread, the destructor stops it
// (waiting for a compaction under way, bounded by the store's size) and
// joins it. `stores` is called on the compactor's thread; Wakeup::Notify
// from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/page_store.h"

namespace pheap {

class Compactor {
 public:
  using StoreList = std::function<std::vector<std::shared_ptr<PageStore>>()>;
  static constexpr std::chrono::milliseconds kDefaultPoll{1000};

  // Made before the stores, whose options.on_log_file_sealed calls Notify.
  class Wakeup {
   public:
    void Notify();
    // A hook for PageStoreOptions::on_log_file_sealed.
    static std::function<void()> Hook(const std::shared_ptr<Wakeup>& w) {
      return [w] { w->Notify(); };
    }

   private:
    friend class Compactor;
    std::mutex mu_;
    std::condition_variable cv_;
    bool pending_ = false, stop_ = false;
  };

  // Run on the compactor's thread: `start` before the constructor returns,
  // `end` as the thread ends (a heap's engine exempts the thread from
  // commit pauses, since it never writes the region).
  struct ThreadHooks {
    void (*start)();
    void (*end)();
  };

  Compactor(StoreList stores, std::shared_ptr<Wakeup> wakeup = std::make_shared<Wakeup>(),
            std::chrono::milliseconds poll = kDefaultPoll, ThreadHooks hooks = {});
  ~Compactor();
  Compactor(const Compactor&) = delete;
  Compactor& operator=(const Compactor&) = delete;

  // Compactions done, for tests and statistics.
  uint64_t compactions() const { return compactions_.load(std::memory_order_relaxed); }
  // Compacts `store` if it is due; a failure is logged (once per distinct
  // message in *last_error) and left for the next round. True if it compacted.
  static bool CompactIfDue(PageStore& store, std::string* last_error = nullptr);

 private:
  void Run();

  const StoreList stores_;
  const std::shared_ptr<Wakeup> wakeup_;
  const std::chrono::milliseconds poll_;
  std::atomic<uint64_t> compactions_{0};
  std::thread thread_;
};

}  // namespace pheap
