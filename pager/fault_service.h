// The threads that serve the region's userfaultfd: missing faults are
// filled from the PageSource a run at a time (one ReadRun, one UFFDIO_COPY),
// with a sequential prefetch window; sync write-protect faults go to the
// dirty tracker.
//
// Prefetch: the window starts at 64 KiB, doubles while faults follow the
// previous run, up to prefetch_max, and falls back to 64 KiB on a fault
// elsewhere. A run never extends past hwm, over a page already installed
// (the `installed` bitmap), or over a discarded page. The program's advice
// (Pager::Advise) steers it: a fault on a page advised sequential starts at
// prefetch_max and reads ahead, one advised random fills its page alone.
//
// Read-ahead: a sequential fault first hands the window after its run to
// another fault thread, which installs it while this one installs the run
// the program waits for; both proceed at once, on both cores, and the
// program's next fault usually finds its pages placed. A fault inside the
// run being read ahead waits for it rather than reading it again. The
// thread that takes a read-ahead first tells the source the next few
// windows will be needed (WillNeed), so a store starts their disk reads
// while the two runs are installed.
// Prefetch (advice will-need) feeds the same threads: its runs wait in a
// queue, and one window at a time is placed whenever no fault's read-ahead
// is posted, so faults are served between windows.
//
// Mapping (async write-protect only): where the source says a run lies back
// to back in one of its files (PageSource::LocateRun), the run is mapped
// there, private, instead of copied, so the program reads the page cache
// with no copy and a write copies only the page it writes. The mapping is
// populated, then registered for async write-protect and protected, before
// the faulter wakes: populated first, since the kernel maps a file's pages
// in batches (fault-around) only where no write-protect is registered. A
// page another thread wrote between the mmap and the protection is found
// (it is no longer the file's) and left marked written. Each mapping is a
// VMA, so their number is bounded.
//
// A page the source cannot read correctly (kCorruption or any error) is
// never filled with guessed data: the error is logged with the page, and
// the page is poisoned (UFFDIO_POISON: the faulting thread gets SIGBUS)
// when the kernel offers it; otherwise the faulting thread stays blocked.
// Inside a guard (GuardReads) such a page reads as zeros instead and the
// failure is kept, so an opener can fail with an error rather than a signal.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/page_io.h"
#include "base/status.h"
#include "pager/dirty_tracker.h"
#include "pager/evictor.h"
#include "pager/page_bitmap.h"
#include "pager/region.h"
#include "pager/uapi_compat.h"

namespace pheap {

struct FaultServiceConfig {
  int uffd = -1;                      // non-blocking; not owned
  // hybrid-wp's second userfaultfd (not owned), or -1: every fault on it
  // goes to DirtyTracker::OnColdFault, under the install lock held
  // exclusively.
  int cold_uffd = -1;
  const Region* region = nullptr;
  // Pages below come from `source`: the stored image's hwm at open, raised
  // by eviction (pager/evictor.h) to cover the pages it gives back.
  const std::atomic<Pgno>* hwm = nullptr;
  PageSource* source = nullptr;
  DirtyTracker* tracker = nullptr;    // copy modes and sync-WP faults
  PageBitmap* installed = nullptr;    // present as far as the pager knows
  PageBitmap* discarded = nullptr;    // zeros since a discard: serve zeros
  PageBitmap* mapped = nullptr;       // mapped from the source's files
  // Eviction, or null: installed pages are stamped (Evictor::Touch) with
  // *fetch_stamp; a page in `evicted` that is placed again counts as a
  // refetch. *evict_gen grows with each eviction (under the install lock
  // held exclusively): a run read before it changed may hold a page given
  // back and written since, so it is read again, never installed.
  Evictor* evictor = nullptr;
  PageBitmap* evicted = nullptr;
  const std::atomic<uint32_t>* fetch_stamp = nullptr;
  const std::atomic<uint64_t>* evict_gen = nullptr;
  // With eviction: runs before a missing fault places memory, and may wait
  // (bounded) for the budget to have room. Every fresh page of the region
  // faults here then, so a program that writes new pages faster than they
  // can be committed and given back is held at its faults, not killed by
  // the kernel's OOM killer.
  std::function<void()> await_room;
  // Advice, or null: pages advised sequential, and random.
  const PageBitmap* sequential = nullptr;
  const PageBitmap* random = nullptr;
  // Under a budget (evictor set): Prefetch places pages only while the
  // evictor counts fewer resident than this (its high watermark).
  uint64_t prefetch_resident_max = 0;
  bool map_stored = false;            // map what LocateRun finds (async WP only)
  uint64_t max_mapped_runs = 0;       // bound on the mappings made
  int pagemap_fd = -1;                // /proc/self/pagemap, when map_stored
  // Set (and logged) when a mapped run could not be write-protected: its
  // writes would go untracked, so the pager refuses commits from then on.
  std::atomic<bool>* untracked = nullptr;
  std::shared_mutex* install_mu = nullptr;  // shared while marking/installing
  int threads = 2;
  uint64_t prefetch_max = uint64_t{4} << 20;  // bytes
  bool poison = false;                // UFFDIO_POISON available
};

class FaultService {
 public:
  explicit FaultService(const FaultServiceConfig& config) : c_(config) {}
  ~FaultService() { Stop(); }
  FaultService(const FaultService&) = delete;
  FaultService& operator=(const FaultService&) = delete;

  Status Start();
  // Stops and joins the threads. Idempotent.
  void Stop();

  uint64_t faults() const { return faults_.load(std::memory_order_relaxed); }
  uint64_t pages_fetched() const { return pages_fetched_.load(std::memory_order_relaxed); }
  uint64_t pages_mapped() const { return pages_mapped_.load(std::memory_order_relaxed); }
  uint64_t pages_refetched() const { return pages_refetched_.load(std::memory_order_relaxed); }
  // Pages placed for a write fault, counted before the faulter wakes.
  uint64_t written_installs() const { return written_installs_.load(std::memory_order_acquire); }

  // Queues `r` to be placed ahead of use and returns at once; pages placed
  // already, discarded or at or above hwm are skipped. Under a budget the
  // queue is dropped once prefetch_resident_max pages are resident. At
  // most kMaxPrefetches runs wait; a newer one pushes the oldest out.
  void Prefetch(Run r);
  // Drops the read-ahead and prefetch waiting to place pages of [r), and
  // waits for those placing some now: then nothing read before the call
  // is placed there after it.
  void CancelAhead(Run r);
  static constexpr size_t kMaxPrefetches = 64;

  // From GuardReads(true) to GuardReads(false), a page that cannot be served
  // is filled with zeros, and the first such failure is what Unserved()
  // returns until the next guard. REQUIRES: whoever guards discards the
  // region (never commits it) when Unserved() is an error.
  void GuardReads(bool on);
  Status Unserved() const;

  // The read of a fault that continues no sequence. Under a budget one
  // page: a heap larger than memory is mostly read at random (trees, hash
  // tables), and each neighbour read with the page would push out a page
  // in use; a sequence doubles it from there.
  static constexpr uint64_t kInitialWindow = 64 * 1024;
  static constexpr uint64_t kInitialWindowUnderBudget = 4096;
  // How far past a read-ahead its source is told the pages will be needed
  // (PageSource::WillNeed), in widest windows.
  static constexpr uint64_t kWillNeedWindows = 4;

 private:
  void Loop();
  void Serve(const uffd_msg& m, bool cold, uint8_t* buf);
  // Wakes faulters waiting on [a, a + len) on either userfaultfd: a page
  // may have been faulted on the cold one before its chunk moved.
  void Wake(uint64_t a, uint64_t len) const;
  void ServeMissing(Pgno p, bool write, uint8_t* buf);
  // The run to serve for a fault at p, and (when the faults are sequential)
  // the window after it to read ahead, else an empty run.
  Run PlanRun(Pgno p, Run* ahead);
  // The end of a run of at most `pages` from `first`: at hwm, or before the
  // first installed or discarded page after `first`.
  Pgno RunEnd(Pgno first, uint64_t pages) const;
  // Hands `ahead` to the read-ahead unless it is busy or holds one already.
  void PostAhead(Run ahead);
  // Takes the posted read-ahead, if any, and installs it; else the next
  // prefetch window.
  void ServeAhead(uint8_t* buf);
  // Places what is unplaced of prefetch window `w`, within the budget.
  void PrefetchWindow(Run w, uint8_t* buf);
  // Makes a thread look at the read-ahead and the prefetch queue.
  void KickAhead();
  // The widest window, in pages: prefetch_max, at most one read.
  uint64_t MaxWindow() const;
  // Pages that may still be placed under the budget (prefetch_resident_max
  // less what is resident), 0 when full; unbounded without a budget.
  uint64_t Room() const;
  // The part of `r` to place: from its first page not placed yet (a stored
  // run mapped whole may reach into it) to the next placed one.
  Run Unplaced(Run r) const;
  // Reads `r` and installs what is still unplaced of it, for no faulter.
  // False when an eviction ran since the read, so nothing was installed.
  bool CopyAhead(Run r, uint8_t* buf);
  // The end of the placeable part of [first, end): before the first page
  // discarded or mapped.
  Pgno PlaceableEnd(Pgno first, Pgno end) const;
  // Waits while page p is being read ahead or prefetched; drops a posted
  // run that holds p.
  void AwaitAhead(Pgno p);
  // Copies `count` pages from src to page `first`; returns pages placed.
  void Install(Pgno first, uint64_t count, const uint8_t* src, bool write, Pgno fault);
  void CopyRange(Pgno first, uint64_t count, const uint8_t* src, uint64_t mode, Pgno fault);
  void FailPage(Pgno p, const Status& why);
  // Maps what it can of [first, first + count) from the source's files, a
  // stored run at a time, past pages the read-ahead placed meanwhile;
  // returns how many pages from `first` are placed (perhaps more than
  // count: the last run is mapped whole), 0 if `first` itself was not.
  uint64_t MapStored(Pgno first, uint64_t count);
  // Maps one located run (or the part of it still unplaced), populates and
  // protects it; returns the pages mapped, whose faulters the caller wakes.
  // REQUIRES: install_mu held exclusively.
  uint64_t MapRun(Pgno first, const PageSource::StoredRun& run);
  // Marks written again the pages of [a, a + len) that are present but no
  // longer the file's. False if the check failed.
  bool UnprotectCopied(uint64_t a, uint64_t len);
  void LoseTracking(const std::string& what);
  uint64_t Addr(Pgno p) const { return c_.region->base() + (p << kPageShift); }
  Pgno Hwm() const { return c_.hwm->load(std::memory_order_acquire); }
  uint64_t Gen() const { return c_.evict_gen != nullptr ? c_.evict_gen->load(std::memory_order_acquire) : 0; }

  FaultServiceConfig c_;
  int stop_fd_ = -1;  // eventfd: readable once Stop is called
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> faults_{0};
  std::atomic<uint64_t> pages_fetched_{0};
  std::atomic<uint64_t> pages_mapped_{0};
  std::atomic<uint64_t> pages_refetched_{0};
  std::atomic<uint64_t> written_installs_{0};
  std::atomic<uint64_t> mapped_runs_{0};
  std::atomic<bool> guarded_{false};
  mutable std::mutex unserved_mu_;
  Status unserved_;  // guarded by unserved_mu_

  int ahead_fd_ = -1;     // eventfd: readable when a read-ahead is posted
  std::mutex ahead_mu_;
  std::condition_variable ahead_cv_;  // ahead_busy_ ended
  Run ahead_posted_{};    // guarded by ahead_mu_: waiting for a thread
  Run ahead_busy_{};      // guarded by ahead_mu_: being installed
  std::deque<Run> prefetch_;  // guarded by ahead_mu_: waiting, oldest first
  Run prefetch_busy_{};       // guarded by ahead_mu_: the window being placed

  std::mutex window_mu_;  // the sequential-prefetch state below
  Pgno last_first_ = 0;
  Pgno last_end_ = 0;
  uint64_t window_pages_ = kInitialWindow / 4096;
};

}  // namespace pheap
