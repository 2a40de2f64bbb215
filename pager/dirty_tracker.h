// How the pager learns which pages the program wrote since the last commit.
// Three implementations, best first (TrackingMode in base/types.h):
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

  // Reports every run written since the previous call, in ascending order,
  // and protects those runs again so the next write is seen.
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
};

// Async WP: `pagemap_fd` is an open /proc/self/pagemap (owned).
std::unique_ptr<DirtyTracker> NewAsyncWpTracker(const Region& region, int pagemap_fd);
// Sync WP over `uffd` (not owned; the region registered MISSING|WP).
std::unique_ptr<DirtyTracker> NewSyncWpTracker(const Region& region, int uffd);
// mprotect + SIGSEGV. Protects the whole region PROT_READ. Fails if the
// handler cannot be installed or too many regions use this mode at once.
Result<std::unique_ptr<DirtyTracker>> NewMprotectTracker(const Region& region);

}  // namespace pheap
