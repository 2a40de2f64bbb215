// Pager: the fixed-address region of one heap, its fault service and its
// dirty tracking, and the commit cut.
//
//   - The region is mapped at image.base with MAP_FIXED_NOREPLACE.
//   - Missing faults are registered over [base, base + hwm pages) only; the
//     kernel's zero-fill serves everything above. Several fault-service
//     threads install runs with one UFFDIO_COPY each and grow a sequential
//     prefetch window.
//   - Writes are tracked by the best mode the kernel offers (TrackingMode;
//     pager/dirty_tracker.h). Known limit of kMprotect: a write the kernel
//     makes on the program's behalf (read(2), recv(2) into heap memory) to a
//     page not yet written since the last commit fails with EFAULT instead
//     of being tracked. Without any userfaultfd, kMprotect loads the whole
//     stored image at open. kAsyncWpUser (a user-mode-only userfaultfd, when
//     the full one is refused) loads it at open too, mapping stored runs
//     from the store's sealed files, and registers no missing faults: no
//     fault ever reaches user space, so the kernel's own accesses work.
//   - Commit() pauses every other thread of the process that is not the
//     pager's own, takes the written pages (a point-in-time cut), copies them
//     to a staging buffer, resumes the threads, and hands the SealedEpoch to
//     the EpochSink. The pause grows with the dirty set, not the region
//     (kAsyncWp adds the kernel's walk of the populated page tables, about
//     1 ms per populated GiB). The threads are paused with a real-time
//     signal (pager/safepoint.h); a commit waits for every thread. A thread
//     that blocks every signal for over 50 ms is taken for a service thread
//     that does not write the region, and the commit proceeds without it
//     (and says so in the log).
//
// Thread safety: base(), size(), mode() and stats() from any thread.
// Commit(), CommitAsync() and Discard() from any thread; commits are
// serialised. The destructor must not race with any other call.
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <optional>

#include "base/page_io.h"
#include "base/status.h"
#include "base/types.h"

namespace pheap {

struct PagerOptions {
  TrackingMode mode = TrackingMode::kAuto;  // a forced mode fails if absent
  int fault_threads = 2;                    // >= 1
  uint64_t prefetch_max = uint64_t{4} << 20;
  // Bound on staging memory held by commits not yet durable (CommitAsync).
  // A commit past it waits for older epochs to become durable; it fails at
  // once, with their error, when the oldest fails again (a full disk), and
  // after staging_wait_ms when they are only slow.
  uint64_t staging_max = uint64_t{256} << 20;
  uint64_t staging_wait_ms = 30000;
  // Staging that stays faulted in between commits, per buffer, so the next
  // cut copies into warm memory; the rest goes back to the OS.
  uint64_t staging_keep = uint64_t{256} << 20;
  // Copy the written pages once before pausing, then re-copy inside the
  // pause only those written again meanwhile (async and sync WP; mprotect
  // always copies inside the pause). Shortens the pause for big dirty sets.
  bool precopy = true;
  // Map runs of stored pages that lie back to back in the store's files
  // instead of copying them (async write-protect on a kernel that allows it
  // on a file's pages; see FaultService). Reopening a large image then
  // costs page-cache faults, not copies.
  bool map_stored = true;
  // Whether kAuto may settle on kMprotect, under which a system call that
  // writes into the heap (read(2) into a page not yet written this epoch)
  // fails with EFAULT. When false, such an open fails with kUnsupported
  // saying why and how to allow userfaultfd, for a caller that cannot vouch
  // for the program it runs (the preload library).
  bool auto_mprotect = true;
  // hybrid-wp: a 2 MiB chunk unwritten for this many commits goes back to
  // the cold userfaultfd (>= 1). Lower keeps the commit's walk smaller;
  // higher saves the fault and the whole-chunk report of a chunk that is
  // written again soon after.
  uint32_t hybrid_idle_cuts = 8;
  // hybrid-wp: a cold chunk that took this many write faults since the
  // last commit goes hot in the commit's pause (>= 1). Below it the chunk
  // stays cold and its pages are protected again at the commit: each
  // move costs the pause tens of microseconds, and every hot chunk is
  // walked in each pause until it idles, so sparse writes are cheaper
  // cold (a fault each); dense ones cheaper hot (no fault).
  uint32_t hybrid_warm_faults = 16;
  // hybrid-wp: back the region with transparent huge pages (MADV_HUGEPAGE),
  // so a hot chunk is walked and protected as one entry until written. The
  // cost: the first touch of a fresh chunk allocates and zeroes 2 MiB, and
  // under the kernel's default defrag=madvise may compact memory first
  // (0.2 ms, and milliseconds on a fragmented machine, against 17 us on
  // 4 KiB pages).
  bool hybrid_huge_pages = true;
  // A budget for the region's resident pages, in bytes (0: none). Past the
  // high watermark (7/8 of it) the pager gives back pages that are durable
  // and unwritten since the last commit, coldest first, down to the low
  // watermark (5/8), inside a commit's pause or a pause of its own
  // (docs/design.md, "Eviction"). Only where a missing fault brings such a
  // page back: not under kAsyncWpUser, nor kMprotect without a userfaultfd
  // (the open logs that). With a budget, stored runs are copied, never
  // mapped from the store's files.
  uint64_t memory_max = 0;
  // When the budget cannot be met from such pages (most resident pages are
  // written and not yet committed), commit early: an epoch at an instant
  // the program did not choose. When false, or when the commit fails, the
  // log says so once.
  bool memory_early_commit = true;
};

// What the kernel offers, probed once per process (pager/kernel_probe.h).
struct KernelFeatures {
  bool userfaultfd = false;      // syscall or /dev/userfaultfd
  bool via_dev = false;          // only /dev/userfaultfd works
  bool wp = false;               // UFFDIO_REGISTER_MODE_WP on anonymous memory
  bool wp_async = false;         // UFFD_FEATURE_WP_ASYNC
  bool pagemap_scan = false;     // PAGEMAP_SCAN ioctl
  bool poison = false;           // UFFDIO_POISON
  // A user-mode-only userfaultfd takes WP_ASYNC, registers WP on anonymous
  // memory and PAGEMAP_SCAN works (kAsyncWpUser); implied by full async WP.
  bool user_wp_async = false;
  std::string why_not;           // what was missing, for the log
};

struct PagerStats {
  TrackingMode mode = TrackingMode::kAuto;
  Epoch durable_epoch = 0;
  uint64_t commits = 0;
  uint64_t last_dirty_pages = 0;
  uint64_t last_pause_ns = 0;     // threads stopped, from first signal to resume
  uint64_t max_pause_ns = 0;
  uint64_t faults = 0;            // missing faults served
  uint64_t pages_fetched = 0;     // pages installed from the PageSource
  uint64_t pages_mapped = 0;      // pages mapped from its files instead
  uint64_t paused_threads = 0;    // in the last commit
  // hybrid-wp's 2 MiB chunks (docs/design.md, "Dirty tracking"): on the
  // async userfaultfd now, moves each way since open, moves that need a
  // pause asked for while writers ran (refused; never happens unless the
  // pager is wrong), and writes to cold chunks tracked one page at a time.
  uint64_t hot_chunks = 0;
  uint64_t chunks_heated = 0;
  uint64_t chunks_cooled = 0;
  uint64_t moves_unpaused = 0;
  uint64_t single_pages = 0;
  // Pages hybrid-wp reported (the rest of a chunk that moved, or of a fresh
  // huge page) that were left out of their cut: all zeros, past every
  // stored page.
  uint64_t fresh_zeros_dropped = 0;
  // Eviction (memory_max): the region's resident pages at the last count
  // (0 without a budget), pages given back, pages faulted in again after
  // that, pauses taken only to evict, and commits the budget forced.
  uint64_t resident_pages = 0;
  uint64_t evictions = 0;
  uint64_t refetches = 0;
  uint64_t eviction_pauses = 0;
  uint64_t early_commits = 0;
  // The budget in force, in bytes: memory_max where the mode can evict,
  // else 0.
  uint64_t memory_max = 0;
};

// How the program will use a range of the region (Pager::Advise), as
// madvise(2) says it of ordinary memory.
enum class Advice {
  kNormal,      // forget kSequential and kRandom: the fault service's own window
  kSequential,  // faults there start with the widest window and read ahead
  kRandom,      // faults there fill the faulting page alone, no read-ahead
  kWillNeed,    // place the range's stored pages now, in the background
  kDontNeed,    // under a budget: give back its clean durable pages now, and first
};

// The pauses of the latest cuts (Pager::pauses), for live inspection.
struct PauseSummary {
  uint64_t cuts = 0;  // every cut measured since open; the quantiles cover the latest kSamples
  uint64_t p50_ns = 0, p99_ns = 0, max_ns = 0;
  static constexpr uint64_t kSamples = 1024;
};

class Pager {
 public:
  // Probes the kernel (cached after the first call).
  static const KernelFeatures& Probe();

  // Maps the region described by `image` and starts serving it from
  // `source`. REQUIRES: source and sink outlive the Pager; image.size > 0.
  // Errors: the address range is taken (names it: use config `base=`);
  // the forced tracking mode is unavailable (says what the kernel lacks);
  // no userfaultfd while the image holds pages and mode needs it.
  static Result<std::unique_ptr<Pager>> Open(const ImageInfo& image, PageSource* source,
                                             EpochSink* sink, const PagerOptions& options);
  ~Pager();  // stops the fault service and unmaps; uncommitted writes are lost
  Pager(const Pager&) = delete;
  Pager& operator=(const Pager&) = delete;

  void* base() const;
  uint64_t size() const;
  TrackingMode mode() const;
  Epoch durable_epoch() const;
  PagerStats stats() const;
  // Quantiles of the latest cuts' pauses. Sorts a copy of the samples:
  // meant for a reader that asks a few times a second, not per commit.
  PauseSummary pauses() const;

  // Point-in-time commit of every page written since the previous one.
  // Returns the new durable epoch once the sink has made it durable. With
  // nothing written it still produces an epoch (so a caller can rely on the
  // returned number advancing).
  Result<Epoch> Commit();
  // Takes the cut now and persists it on the pager's commit thread; the
  // future resolves when the epoch is durable. Epochs complete in order.
  // A failed epoch stays queued and is persisted again, unchanged, before
  // later ones: at each commit and in the background. While earlier epochs
  // hold more than staging_max, the future is ready at once with the error
  // of the oldest one's retry, or with kTimeout after staging_wait_ms (see
  // PagerOptions); no cut is taken then, so its pages go into the next.
  std::shared_future<Result<Epoch>> CommitAsync();
  // Commit() without the staging copy: the program's threads stay paused
  // while the sink's Write reads the written pages from the region itself
  // (a local store: into the page cache), and its Sync makes the epoch
  // durable after they resume. No memory grows with the dirty set, but the
  // pause lasts the whole write: meant for a last commit (a process
  // exiting). If the Sync fails, the epoch's pages go into the next cut,
  // which takes its number.
  // Falls back to Commit() when the sink cannot read the region in place or
  // an older failed epoch waits to be persisted again.
  // REQUIRES: no thread that the pause may stop holds a lock the sink's
  // Persist takes, the C library's malloc among them (so not for a program
  // whose threads allocate from libc while it commits).
  Result<Epoch> CommitInPlace();
  // Commit() for a caller that waits for durability anyway: where the sink
  // reads the region in place and a pause would stop no thread but the
  // caller's (SafepointAlone), CommitInPlace, whose write then holds no one
  // and needs no staging copy; the pause it records is the cut alone.
  // nullopt, having done nothing, otherwise.
  std::optional<Result<Epoch>> CommitInPlaceIfAlone();

  // While an opener reads the image (its superblock, the allocator's
  // metadata), a stored page that cannot be served reads as zeros instead
  // of killing the reader with SIGBUS; EndGuardedReads returns the first
  // such failure (naming the page and why), else Ok. Pages loaded at open
  // (no userfaultfd) report theirs from Open itself.
  // REQUIRES: on an error the caller discards the heap, never commits it.
  void BeginGuardedReads();
  Status EndGuardedReads();

  // Gives [addr, addr + len) back to the OS (madvise DONTNEED): it reads as
  // zeros now and in every epoch from the next commit on. REQUIRES: page
  // aligned and inside the region.
  Status Discard(void* addr, uint64_t len);
  // Advice about [addr, addr + len), widened to whole pages (docs/design.md,
  // "Faults" and "Eviction"). kSequential and kRandom stay until other advice replaces
  // them. kWillNeed queues the range's stored pages for the fault service's
  // read-ahead threads and returns at once: they place it a prefetch_max
  // window at a time between faults, skipping pages already present, and
  // under a budget stop at its high watermark. kDontNeed, under a budget,
  // makes the range's resident pages that are durable the first to go and
  // gives back at once those not written since the last cut, in pauses of
  // at most 4096 pages; a page written since stays. Without a budget, or
  // where the mode takes no missing faults, kWillNeed and kDontNeed change
  // nothing (every page the program touched stays resident).
  // Errors: kInvalidArgument naming the range when it is not inside the
  // region. REQUIRES: not a fault-service thread.
  Status Advise(void* addr, uint64_t len, Advice advice);
  // Pages written since the last cut, by a walk of the region's page
  // tables that protects nothing, for live statistics; kUnknownPages where
  // the tracking mode cannot count without faults. Walks take at most 1%
  // of a core: after a walk of t ns the next comes no sooner than 100 t
  // later, and until then the last count is returned. REQUIRES: one caller
  // at a time; any thread but the program's (it may run beside commits).
  static constexpr uint64_t kUnknownPages = ~uint64_t{0};
  uint64_t WrittenSinceCut();
  // Ok in the process that opened the pager. In a child of fork(), which
  // has a copy of the region but none of the pager's threads: the error
  // (kBusy) its commits get. There Discard zeros the range unrecorded, and
  // the pager must be leaked, not destroyed (its threads are not there to
  // stop).
  Status ForkChildStatus() const;

  // Registers the calling thread as one that never writes the region and
  // must not be paused by commits (a pheap-internal thread). The thread
  // unregisters before it ends: its id may be reused by a program thread,
  // which commits must pause.
  static void ExemptCurrentThread();
  static void UnexemptCurrentThread();
  // How many threads are exempt now.
  static int ExemptThreads();
  // `hook` runs first in every thread exempted from now on, whether by
  // ExemptCurrentThread or by the pager for its own threads (which it may
  // start inside a commit called from any thread).
  static void OnExempt(void (*hook)());

  // Makes every stored page resident (pager/pager_fork.cc). Called before
  // fork(): a child does not inherit the userfaultfd registration, so a
  // stored page it found absent would read as zeros there. Costs a read per
  // page below the image's hwm, plus a fault for each one not yet resident.
  // Eviction (memory_max) gives nothing back from then until
  // EndPopulate, so the pages stay resident until the fork.
  // REQUIRES: not called from a fault-service thread.
  void PopulateAll();
  // After the fork, in the parent: eviction may give pages back again.
  void EndPopulate();

  class Impl;

 private:
  explicit Pager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pheap
