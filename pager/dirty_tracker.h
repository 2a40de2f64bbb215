// How the pager learns which pages the program wrote since the last commit.
// Four implementations (TrackingMode in base/types.h):
//
//   HybridWpTracker  AsyncWpTracker's mechanism for the 2 MiB chunks written
//                    lately ("hot"), on a region backed by transparent huge
//                    pages. Idle chunks ("cold") are registered on a second,
//                    synchronous userfaultfd: the first write to one faults
//                    once and moves it to the async one. The commit's walk
//                    skips cold chunks whole, so it follows the written set,
//                    not the populated region. See hybrid_wp_tracker.cc for
//                    the rule that keeps every write seen.
//
//   AsyncWpTracker   UFFD_FEATURE_WP_ASYNC: the kernel resolves write faults
//                    on write-protected pages itself and leaves the PTE
//                    "written"; PAGEMAP_SCAN with PM_SCAN_WP_MATCHING reports
//                    and re-protects written pages in one walk. No fault
//                    reaches user space.
//   SyncWpTracker    userfaultfd write-protect faults come to the fault
//                    threads, which mark the page in a bitmap and lift the
//                    protection (UFFDIO_WRITEPROTECT mode 0, which wakes).
//   MprotectTracker  the region is PROT_READ; a SIGSEGV handler marks the
//                    page and makes it writable. Known limit: a write by the
//                    kernel on the program's behalf (read(2) into a page not
//                    yet written this epoch) fails with EFAULT instead of
//                    faulting, because the kernel does not raise SIGSEGV for
//                    its own accesses. Programs in this mode must not pass
//                    heap memory to system calls that write it.
//
// Thread rules: TakeDirty runs with every writer paused (or see
// TakesWhileRunning) and the pager's install lock held exclusively; OnWriteFault and MarkWritten run on fault
// threads under the install lock held shared, so a page is never marked and
// unprotected on one side of a cut while being collected on the other.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "base/status.h"
#include "base/types.h"
#include "pager/page_bitmap.h"
#include "pager/region.h"
#include "pager/uapi_compat.h"

namespace pheap {

// Receives the runs of a collection. Must not allocate: it runs while other
// threads, which may hold the allocator's locks, are paused.
class RunSink {
 public:
  virtual void Add(Run r) = 0;

 protected:
  ~RunSink() = default;
};

class DirtyTracker {
 public:
  virtual ~DirtyTracker() = default;
  virtual TrackingMode mode() const = 0;

  // Reports every run written since the previous call (in no promised
  // order), and protects those runs again so the next write is seen.
  // REQUIRES: all writers paused; install lock held exclusively.
  virtual Status TakeDirty(RunSink* sink) = 0;

  // True if TakeDirty may also run while writers run (install lock held
  // exclusively), for a copy before the pause: a write racing it lands
  // before its page is protected again, so inside a copy taken afterwards,
  // or faults and marks the page anew. mprotect cannot: its SIGSEGV handler
  // marks and unprotects outside any lock, and is only safe against a cut
  // because the safepoint signal is blocked inside it.
  virtual bool TakesWhileRunning() const = 0;

  // How many pages TakeDirty would report now, without protecting any, so
  // a cut can fault in its staging before the pause, and live statistics
  // can show the pages written since the last cut; 0 when the tracker
  // cannot tell without a fault per page (CanCount false). May run while
  // writers run, and beside TakeDirty (the count is then of either side of
  // that cut).
  virtual uint64_t CountWritten() { return 0; }
  virtual bool CanCount() const { return false; }

  // Called by every cut before it pauses the writers: the place to start a
  // thread the coming TakeDirty may want, since a thread cannot be created
  // while the writers are paused (one may hold a lock thread creation takes).
  // REQUIRES: writers not paused; not at the same time as TakeDirty.
  virtual void BeforePause() {}

  // The UFFDIO_COPY mode for a page installed by a missing fault; a write
  // fault in the bitmap modes installs the page writable (and MarkWritten
  // records it) to save the write-protect fault that would follow.
  virtual uint64_t CopyMode(bool write_fault) const = 0;
  // A page is about to be installed writable for a write fault.
  virtual void MarkWritten(Pgno) {}
  // A userfaultfd write-protect fault on `p` (sync-WP only).
  virtual void OnWriteFault(Pgno) {}

  // True if TakeDirty may report pages nobody wrote (hybrid-wp: the rest of
  // a chunk that just moved, or of a huge page the kernel filled with
  // zeros). The cut then leaves out such pages that hold only zeros and lie
  // past every stored page.
  virtual bool ReportsUnwritten() const { return false; }

  // Called right after a TakeDirty that ran with every writer paused, in
  // the same pause and under the same exclusive install lock: the one
  // place a tracker may change how it watches pages in a way that a write
  // landing meanwhile would escape (hybrid-wp moves idle chunks to cold).
  // REQUIRES: as TakeDirty, with the writers paused.
  virtual Status AtPause() { return Status::Ok(); }
  // Readies the pages of `r` to be given back (MADV_DONTNEED) by eviction:
  // from then on a touch of any of them must raise a missing fault that
  // reaches the fault service. False: they stay resident. The pager has
  // registered missing faults below the raised hwm already (except on
  // hybrid-wp's chunks, which move here: a cold chunk goes hot first).
  // REQUIRES: as AtPause, after it.
  virtual bool PrepareEvict(Run /*r*/) { return true; }
  // A fault of any kind on the cold userfaultfd (hybrid-wp only), at `p`:
  // `missing` for a missing fault, else write-protect. The faulting thread
  // must be woken. REQUIRES: install lock held exclusively.
  virtual void OnColdFault(Pgno /*p*/, bool /*missing*/) {}

  // How the hybrid mode's chunks stand (zeros elsewhere).
  struct ChunkCounts {
    uint64_t hot = 0;             // chunks on the async userfaultfd now
    uint64_t heated = 0;          // cold -> hot moves since open
    uint64_t cooled = 0;          // hot -> cold moves since open
    uint64_t moves_unpaused = 0;  // moves that need a pause asked for with writers running (refused; a bug)
    uint64_t single_pages = 0;    // faults on cold chunks tracked one page at a time
  };
  virtual ChunkCounts chunk_counts() const { return {}; }
};

// The hybrid mode's setup. Pointers are not owned and outlive the tracker.
struct HybridWpConfig {
  int hot_uffd = -1;                       // UFFD_FEATURE_WP_ASYNC
  int cold_uffd = -1;                      // no features: sync write-protect and missing faults
  int pagemap_fd = -1;                     // /proc/self/pagemap (owned by the tracker)
  Pgno hwm = 0;                            // pages below came from the store at open
  const std::atomic<Pgno>* served_hwm = nullptr;  // pages below are served on a missing fault (null: hwm)
  const PageBitmap* installed = nullptr;          // present as far as the pager knows
  const PageBitmap* discarded = nullptr;          // zeros since a discard
  const PageBitmap* evicted = nullptr;            // given back, not placed again since
  uint32_t idle_cuts = 8;                  // a hot chunk unwritten for this many cuts goes cold
  uint32_t warm_faults = 16;               // a cold chunk with this many write faults in a cut goes hot
  bool huge_pages = true;                  // advise transparent huge pages for the region
  // Under a memory budget: hot chunks take missing faults everywhere, so
  // every fresh page reaches the fault service (and its wait for room).
  bool missing_everywhere = false;
  std::atomic<bool>* untracked = nullptr;  // set when a chunk lost its tracking
};

// Async WP: `pagemap_fd` is an open /proc/self/pagemap (owned).
std::unique_ptr<DirtyTracker> NewAsyncWpTracker(const Region& region, int pagemap_fd);
// Sync WP over `uffd` (not owned; the region registered MISSING|WP).
std::unique_ptr<DirtyTracker> NewSyncWpTracker(const Region& region, int uffd);
// Hybrid: registers the region (chunks holding stored pages hot, the
// rest cold) and advises huge pages for it when config.huge_pages. Fails if a registration does.
Result<std::unique_ptr<DirtyTracker>> NewHybridWpTracker(const Region& region, const HybridWpConfig& config);
// mprotect + SIGSEGV. Protects the whole region PROT_READ. Fails if the
// handler cannot be installed or too many regions use this mode at once.
Result<std::unique_ptr<DirtyTracker>> NewMprotectTracker(const Region& region);

}  // namespace pheap
