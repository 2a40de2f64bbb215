// Hybrid write-protect tracking: the region, backed by transparent huge
// pages, is cut into 2 MiB chunks (aligned to 2 MiB addresses; the first
// and last may be shorter). Each chunk is registered on exactly one of two
// userfaultfds:
//
//   hot   the async-WP userfaultfd, as in AsyncWpTracker: the kernel
//         resolves writes itself and the commit's PAGEMAP_SCAN reports and
//         re-protects them. The scan runs without PM_SCAN_CHECK_WPASYNC,
//         so it skips every other VMA whole: it costs the hot chunks only.
//   cold  a synchronous userfaultfd (missing and write-protect faults, both
//         reaching the fault service), every present page protected. A
//         fault on a cold chunk, from any thread or from the kernel itself
//         (read(2) into it), is served as sync-wp serves it: the page is
//         marked in a bitmap and unprotected, and the commit protects it
//         again (one UFFDIO_WRITEPROTECT for all the marked pages of a
//         chunk), so the chunk stays cold. A chunk that took warm_faults
//         such faults before a commit is written densely: the commit's
//         pause moves it to hot (Warm), protected whole again, so the next
//         commit reports exactly what was written. A chunk that takes
//         kWarmFaults such faults before a commit, or a missing fault (a
//         page never populated: a fresh chunk), moves at once (Heat).
//
// The rule that keeps every write seen:
//   - cold -> hot inside a pause (Warm), right after the pause's TakeDirty
//     took the chunk's marked pages: the move clears the protection bits
//     and protects the chunk on the async userfaultfd, and a write in
//     between would be lost; with every writer paused none lands.
//   - cold -> hot at any time (Heat), without protecting it again:
//     unregistering from the cold userfaultfd clears every protection bit
//     of the chunk, so from then on each of its present pages reads as
//     written until a scan re-protects it; the next TakeDirty reports the
//     whole chunk (up to 512 pages). A write in the instant between the two registrations lands
//     on such a page, and is reported too. A missing fault in that instant
//     is filled by the kernel with zeros, which is right only because a
//     cold chunk has every stored page placed (or discarded): see Cool.
//     Heat runs under the install lock held exclusively, so no TakeDirty
//     (which holds it too) sees the chunk on neither userfaultfd.
//   - hot -> cold (Cool) only inside a pause, right after the pause's
//     TakeDirty collected the chunk's written pages: unregistering clears
//     the protection bits, so a write between that and the cold
//     protection would be lost. With every writer paused none lands. A
//     chunk goes cold only after idle_cuts cuts without a write, and only
//     when every page of it below hwm is placed (installed or discarded):
//     a stored page not yet fetched would be zero-filled by the kernel in
//     Heat's instant between registrations.
//   - if a chunk cannot go hot (a registration fails: the process has run
//     out of VMAs), its faulting pages keep being tracked one by one.
//
// Writes that no pause stops (an io_uring worker or another process
// writing the heap, a thread that keeps the safepoint signal blocked)
// could land inside Warm's or Cool's window and be lost; the safepoint's
// contract already forbids them during a cut.
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <atomic>

#include <fmt/format.h>

#include "base/log.h"
#include "base/os.h"
#include "pager/dirty_tracker.h"
#include "pager/safepoint.h"
#include "pager/uffd.h"

namespace pheap {
namespace {

constexpr uint64_t kChunkShift = 21;
constexpr uint64_t kChunkBytes = uint64_t{1} << kChunkShift;
constexpr uint64_t kMissingWp = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
// Moves cost 7-40 us each inside the pause (more as VMAs multiply): at
// most this many per cut each way, and none once the pause's moves took
// kMoveBudgetNs (but at least one each way, so a backlog drains). The rest
// wait for the next cut: a chunk waiting to go hot stays tracked page by
// page meanwhile, one waiting to go cold is walked.
constexpr uint64_t kMaxMovesPerCut = 32;
constexpr uint64_t kMoveBudgetNs = 100000;
// Write faults on a cold chunk before it moves at once: past this many, the
// chunk is written widely enough that a fault per page would cost more than
// the whole chunk in the next cut.
constexpr uint16_t kWarmFaults = 64;
// Marked runs of a cold chunk at most this far apart are protected again
// in one UFFDIO_WRITEPROTECT (see TakeDirty).
constexpr uint64_t kSpanGap = uint64_t{64} << kPageShift;
alignas(4096) const uint8_t kZeros[kPageSize] = {};

uint64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// An anonymous array that becomes resident only where written: one entry
// per chunk of a region of up to 32 TiB.
template <class T>
class LazyArray {
 public:
  explicit LazyArray(uint64_t n) : bytes_(std::max<uint64_t>(n, 1) * sizeof(T)) {
    void* m = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    p_ = m == MAP_FAILED ? nullptr : static_cast<T*>(m);
  }
  ~LazyArray() {
    if (p_ != nullptr) ::munmap(p_, bytes_);
  }
  LazyArray(const LazyArray&) = delete;
  LazyArray& operator=(const LazyArray&) = delete;
  bool ok() const { return p_ != nullptr; }
  T& operator[](uint64_t i) { return p_[i]; }

 private:
  uint64_t bytes_;
  T* p_;
};

struct Chunk {
  uint8_t hot;      // on the async userfaultfd
  uint8_t written;  // reported by a TakeDirty since the last pause
  uint8_t idle;     // pauses in a row without a write (saturates)
  uint16_t warm;    // cold: pages faulted and tracked one by one since the last pause
};

class HybridWpTracker final : public DirtyTracker {
 public:
  HybridWpTracker(const Region& region, const HybridWpConfig& c)
      : region_(region),
        c_(c),
        grid_(region.base() & ~(kChunkBytes - 1)),
        nchunks_((region.base() + region.size() - grid_ + kChunkBytes - 1) >> kChunkShift),
        chunks_(nchunks_),
        hot_list_(nchunks_),
        warm_list_(nchunks_),
        singles_(region.pages()) {}
  ~HybridWpTracker() override { os().close(c_.pagemap_fd); }
  HybridWpTracker(const HybridWpTracker&) = delete;
  HybridWpTracker& operator=(const HybridWpTracker&) = delete;

  // Chunks that hold stored pages start hot (their pages arrive by
  // UFFDIO_COPY, protected, as in async-wp); the rest start cold, with
  // nothing populated, so nothing to protect.
  Status Register() {
    if (!chunks_.ok() || !hot_list_.ok() || !warm_list_.ok())
      return Status::IoError("hybrid-wp: cannot map the chunk table", ENOMEM);
    const uint64_t base = region_.base(), end = base + region_.size();
    // Huge pages: a huge entry is protected and scanned in one step, and a
    // write under async write-protect splits just the one it hits.
    if (int e = c_.huge_pages ? os().madvise(region_.data(), region_.size(), MADV_HUGEPAGE) : 0; e < 0)
      PHEAP_LOG_WARN("madvise(HUGEPAGE) of the heap region failed (errno {}): hybrid-wp on 4 KiB pages", -e);
    const uint64_t stored_end = base + (c_.hwm << kPageShift);
    const uint64_t hot_end = c_.hwm == 0 ? base : std::min(end, (stored_end + kChunkBytes - 1) & ~(kChunkBytes - 1));
    if (hot_end > base) {
      if (int r = uffd_register(c_.hot_uffd, base, hot_end - base, kMissingWp, nullptr); r < 0)
        return Status::FromErrno(
            fmt::format("UFFDIO_REGISTER of [{:#x}, {:#x}) for async write-protect", base, hot_end), -r);
      for (uint64_t ch = 0; ch < nchunks_ && ChunkStart(ch) < hot_end; ++ch) {
        chunks_[ch].hot = 1;
        hot_list_[hot_count_++] = static_cast<uint32_t>(ch);
      }
    }
    if (hot_end < end) {
      if (int r = uffd_register(c_.cold_uffd, hot_end, end - hot_end, kMissingWp, nullptr); r < 0)
        return Status::FromErrno(fmt::format("UFFDIO_REGISTER of [{:#x}, {:#x}) for sync write-protect", hot_end, end),
                                 -r);
    }
    hot_now_.store(hot_count_, std::memory_order_relaxed);
    return Status::Ok();
  }

  TrackingMode mode() const override { return TrackingMode::kHybridWp; }
  bool TakesWhileRunning() const override { return true; }
  bool ReportsUnwritten() const override { return true; }
  // Protected always: a page placed in a cold chunk must fault on its
  // first write, and one in a hot chunk reads as unwritten until then.
  uint64_t CopyMode(bool) const override { return UFFDIO_COPY_MODE_WP; }

  Status TakeDirty(RunSink* sink) override {
    MarkingSink marking(this, sink);
    int err = 0;  // no Status (it allocates) until the walk is done
    // Protected before this returns, as sync-wp does: a write racing this
    // lands before the protection, so inside the copy taken afterwards.
    // Each UFFDIO_WRITEPROTECT costs about 2 us (the ioctl and a TLB
    // flush) and each page it covers about 15 ns more, so marked runs of
    // one cold chunk at most kSpanGap apart go in a single span:
    // the pages between are protected already (a present page of a cold
    // chunk is unprotected only once marked) or absent. Never across
    // chunks: the kernel protects whatever VMA the range covers, whichever
    // userfaultfd it is registered on, and a hot page protected before the
    // scan reports it would lose its write. The runs of a hot chunk
    // (marked before it went hot) are protected exactly.
    uint64_t span_start = 0, span_end = 0;  // addresses; empty when equal
    auto protect_span = [&] {
      if (span_end == span_start) return;
      int e = uffd_writeprotect(c_.cold_uffd, span_start, span_end - span_start, UFFDIO_WRITEPROTECT_MODE_WP);
      if (e < 0 && err == 0) err = -e;
      span_start = span_end = 0;
    };
    singles_.TakeRuns([&](Run r) {
      const uint64_t a = Addr(r.first), e = Addr(r.end()), ch = ChunkOf(a);
      if (span_end != span_start && a - span_end <= kSpanGap && chunks_[ch].hot == 0 && ChunkOf(span_start) == ch &&
          ChunkOf(e - 1) == ch) {
        span_end = e;
      } else {
        protect_span();
        span_start = a;
        span_end = e;
      }
      marking.Add(r);
    });
    protect_span();
    if (err != 0) return Status::FromErrno("UFFDIO_WRITEPROTECT of pages tracked one by one", err);
    return Scan(PM_SCAN_WP_MATCHING, &marking);
  }

  uint64_t CountWritten() override {
    struct Counter final : RunSink {
      uint64_t pages = 0;
      void Add(Run r) override { pages += r.count; }
    } counter;
    return Scan(0, &counter, count_vec_).ok() ? counter.pages : 0;
  }
  bool CanCount() const override { return true; }

  Status AtPause() override {
    prepared_ = ~uint64_t{0};
    warmed_for_evict_ = 0;
    uint64_t cooled = 0;
    const uint64_t t0 = NowNs();
    auto may_move = [&](uint64_t done) {
      return done == 0 || (done < kMaxMovesPerCut && NowNs() - t0 < kMoveBudgetNs);
    };
    for (uint64_t i = 0; i < hot_count_;) {
      const uint32_t ch = hot_list_[i];
      Chunk& k = chunks_[ch];
      if (k.written != 0) {
        k.written = 0;
        k.idle = 0;
      } else if (k.idle < 255) {
        ++k.idle;
      }
      if (k.idle >= c_.idle_cuts && may_move(cooled) && Placed(ch) && Cool(ch)) {
        ++cooled;
        hot_list_[i] = hot_list_[--hot_count_];  // swap-remove; look at the moved one next
        continue;
      }
      ++i;
    }
    // Then cold chunks written densely since the last pause go hot,
    // protected whole: this pause's TakeDirty took their marked pages. A
    // move costs more inside the pause (about 30 us) than protecting a
    // few pages again at each commit, and a hot chunk is walked at every
    // commit until it idles: chunks written sparsely stay cold.
    uint64_t warmed = 0;
    for (uint64_t i = 0; i < warm_count_; ++i) {
      const uint32_t ch = warm_list_[i];
      const bool dense = chunks_[ch].warm >= c_.warm_faults;
      chunks_[ch].warm = 0;
      if (dense && chunks_[ch].hot == 0 && may_move(warmed) && Warm(ch)) ++warmed;
    }
    warm_count_ = 0;
    hot_now_.store(hot_count_, std::memory_order_relaxed);
    return Status::Ok();
  }

  // A cold chunk goes hot first (Warm, inside this pause): a cold chunk
  // must hold every stored page, since Heat's instant between the two
  // registrations would let the kernel fill an absent one with zeros. A
  // hot one is registered for missing faults again, which keeps the
  // protection of its pages. At most kMaxMovesPerCut warms per pause.
  bool PrepareEvict(Run r) override {
    if (!SafepointHeld()) {
      moves_unpaused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    const uint64_t last = ChunkOf(Addr(r.end() - 1));
    for (uint64_t ch = ChunkOf(Addr(r.first)); ch <= last; ++ch) {
      if (ch == prepared_) continue;
      if (chunks_[ch].hot == 0) {
        if (warmed_for_evict_ >= kMaxMovesPerCut || !Warm(ch)) return false;
        ++warmed_for_evict_;
      } else {
        const uint64_t a = ChunkStart(ch);
        if (uffd_register(c_.hot_uffd, a, ChunkEnd(ch) - a, kMissingWp, nullptr) < 0) return false;
      }
      prepared_ = ch;
    }
    return true;
  }

  void OnColdFault(Pgno p, bool missing) override {
    const uint64_t ch = ChunkOf(Addr(p));
    Chunk& k = chunks_[ch];
    if (k.hot == 0 && !missing && k.warm < kWarmFaults) {
      if (k.warm++ == 0) warm_list_[warm_count_++] = static_cast<uint32_t>(ch);
      TrackOne(p, false);  // wakes the faulter
      return;
    }
    if (k.hot == 0 && !Heat(ch)) {
      TrackOne(p, missing);
      return;
    }
    // The faulter (and any other on this chunk) waits on the cold
    // userfaultfd; it retries and finds the chunk hot.
    const uint64_t a = ChunkStart(ch);
    uffd_wake(c_.cold_uffd, a, ChunkEnd(ch) - a);
  }

  ChunkCounts chunk_counts() const override {
    ChunkCounts n;
    n.hot = hot_now_.load(std::memory_order_relaxed);
    n.heated = heated_.load(std::memory_order_relaxed);
    n.cooled = cooled_.load(std::memory_order_relaxed);
    n.moves_unpaused = moves_unpaused_.load(std::memory_order_relaxed);
    n.single_pages = single_pages_.load(std::memory_order_relaxed);
    return n;
  }

 private:
  static constexpr uint64_t kVecLen = 512;

  // Marks the chunks of each run written, for the idle count.
  class MarkingSink final : public RunSink {
   public:
    MarkingSink(HybridWpTracker* t, RunSink* next) : t_(t), next_(next) {}
    void Add(Run r) override {
      const uint64_t last = t_->ChunkOf(t_->Addr(r.end() - 1));
      for (uint64_t ch = t_->ChunkOf(t_->Addr(r.first)); ch <= last; ++ch) t_->chunks_[ch].written = 1;
      next_->Add(r);
    }

   private:
    HybridWpTracker* t_;
    RunSink* next_;
  };

  uint64_t Addr(Pgno p) const { return region_.base() + (p << kPageShift); }
  Pgno PageOf(uint64_t a) const { return (a - region_.base()) >> kPageShift; }
  uint64_t ChunkOf(uint64_t a) const { return (a - grid_) >> kChunkShift; }
  uint64_t ChunkStart(uint64_t ch) const { return std::max(region_.base(), grid_ + (ch << kChunkShift)); }
  uint64_t ChunkEnd(uint64_t ch) const {
    return std::min(region_.base() + region_.size(), grid_ + ((ch + 1) << kChunkShift));
  }
  // Hot registration: missing faults too where the chunk holds stored pages.
  uint64_t HotMode(uint64_t ch) const {
    if (c_.missing_everywhere) return kMissingWp;
    const Pgno served = c_.served_hwm != nullptr ? c_.served_hwm->load(std::memory_order_acquire) : c_.hwm;
    return ChunkStart(ch) < Addr(served) ? kMissingWp : UFFDIO_REGISTER_MODE_WP;
  }

  // Every page of the chunk below hwm installed or discarded, so none can
  // take a missing fault that only the store could fill.
  // And no page of it evicted (stored, and absent until refetched).
  bool Placed(uint64_t ch) const {
    const Pgno first = PageOf(ChunkStart(ch)), end = std::min(PageOf(ChunkEnd(ch)), c_.hwm);
    for (Pgno p = first; p < end; ++p)
      if (!c_.installed->Test(p) && !c_.discarded->Test(p)) return false;
    const Pgno last = PageOf(ChunkEnd(ch));
    return c_.evicted == nullptr || c_.evicted->NextSet(first, last) == last;
  }

  // The walk: written (not the zero page), present or swapped, in a VMA
  // registered for async write-protect. Without PM_SCAN_CHECK_WPASYNC the
  // kernel skips cold VMAs whole under PM_SCAN_WP_MATCHING; the
  // WPALLOWED category makes a walk that only reports skip them too.
  Status Scan(uint64_t flags, RunSink* sink, page_region* vec = nullptr) {
    if (vec == nullptr) vec = vec_;
    const uint64_t start = region_.base(), end = start + region_.size();
    pm_scan_arg arg{};
    arg.flags = flags;
    arg.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO | PAGE_IS_WPALLOWED;
    arg.category_inverted = PAGE_IS_PFNZERO;
    arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    arg.return_mask = PAGE_IS_WRITTEN;
    const int r = pagemap_scan_range(c_.pagemap_fd, arg, start, end, vec, kVecLen, [&](const page_region& v) {
      sink->Add(Run{PageOf(v.start), (v.end - v.start) >> kPageShift});
    });
    if (r < 0) return Status::FromErrno(fmt::format("PAGEMAP_SCAN of heap region [{:#x}, {:#x})", start, end), -r);
    return Status::Ok();
  }

  // Cold -> hot. False if nothing changed (the chunk is still cold).
  // REQUIRES: install lock held exclusively.
  bool Heat(uint64_t ch) {
    const uint64_t a = ChunkStart(ch), len = ChunkEnd(ch) - a;
    if (int r = uffd_unregister(c_.cold_uffd, a, len); r < 0) {
      PHEAP_LOG_WARN(
          "hybrid-wp: chunk [{:#x}, {:#x}) stays cold (unregister failed: errno {}); its pages are "
          "tracked one by one",
          a, a + len, -r);
      return false;
    }
    if (int r = uffd_register(c_.hot_uffd, a, len, HotMode(ch), nullptr); r < 0) {
      // On neither userfaultfd, every page unprotected: back to cold, and
      // every page of it goes into the next cut.
      PHEAP_LOG_WARN("hybrid-wp: chunk [{:#x}, {:#x}) cannot go hot (errno {}); its pages are tracked one by one", a,
                     a + len, -r);
      if (int r2 = uffd_register(c_.cold_uffd, a, len, kMissingWp, nullptr); r2 < 0) {
        LoseTracking(a, len, r2);
        return true;
      }
      singles_.SetRun(Run{PageOf(a), len >> kPageShift});
      single_pages_.fetch_add(len >> kPageShift, std::memory_order_relaxed);
      return true;
    }
    BecomeHot(ch);
    return true;
  }

  // Cold -> hot, protected whole. False if the chunk stays cold (or, if a
  // step failed after unregistering, went hot unprotected: then its pages
  // read as written, reported, not lost).
  // REQUIRES: writers paused; this pause's TakeDirty ran; install lock held exclusively.
  bool Warm(uint64_t ch) {
    if (!SafepointHeld()) {
      moves_unpaused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    const uint64_t a = ChunkStart(ch), len = ChunkEnd(ch) - a;
    if (uffd_unregister(c_.cold_uffd, a, len) < 0) return false;
    if (int r = uffd_register(c_.hot_uffd, a, len, HotMode(ch), nullptr); r < 0) {
      if (int r2 = uffd_register(c_.cold_uffd, a, len, kMissingWp, nullptr); r2 < 0) {
        LoseTracking(a, len, r2);
      } else {  // back on cold, unprotected: every page into the next cut
        singles_.SetRun(Run{PageOf(a), len >> kPageShift});
      }
      return false;
    }
    if (uffd_writeprotect(c_.hot_uffd, a, len, UFFDIO_WRITEPROTECT_MODE_WP) < 0) {
      BecomeHot(ch);  // unprotected: the next TakeDirty reports the whole chunk
      return true;
    }
    BecomeHot(ch);
    chunks_[ch].written = 0;  // its writes were this pause's: idle from the next on
    return true;
  }

  void BecomeHot(uint64_t ch) {
    chunks_[ch] = Chunk{1, 1, 0, 0};  // written: its pages read as such until the next scan
    hot_list_[hot_count_++] = static_cast<uint32_t>(ch);
    hot_now_.store(hot_count_, std::memory_order_relaxed);
    heated_.fetch_add(1, std::memory_order_relaxed);
  }

  // Hot -> cold. False if the chunk stays hot (its pages then read as
  // written when a step failed after unregistering: reported, not lost).
  // REQUIRES: writers paused; this pause's TakeDirty ran; install lock held exclusively.
  bool Cool(uint64_t ch) {
    if (!SafepointHeld()) {
      moves_unpaused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    const uint64_t a = ChunkStart(ch), len = ChunkEnd(ch) - a;
    if (uffd_unregister(c_.hot_uffd, a, len) < 0) return false;
    int r = uffd_register(c_.cold_uffd, a, len, kMissingWp, nullptr);
    if (r == 0) {
      r = uffd_writeprotect(c_.cold_uffd, a, len, UFFDIO_WRITEPROTECT_MODE_WP);
      if (r < 0) uffd_unregister(c_.cold_uffd, a, len);
    }
    if (r < 0) {
      PHEAP_LOG_WARN("hybrid-wp: chunk [{:#x}, {:#x}) stays hot (errno {})", a, a + len, -r);
      if (int r2 = uffd_register(c_.hot_uffd, a, len, HotMode(ch), nullptr); r2 < 0) LoseTracking(a, len, r2);
      chunks_[ch].written = 1;
      return false;
    }
    chunks_[ch] = Chunk{0, 0, 0, 0};
    cooled_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // The page is tracked as sync-wp tracks it (marked, then unprotected),
  // and the faulter woken (by the unprotect, or the copy).
  void TrackOne(Pgno p, bool missing) {
    singles_.Set(p);
    single_pages_.fetch_add(1, std::memory_order_relaxed);
    const uint64_t a = Addr(p);
    // A missing page of a cold chunk is above hwm or discarded: zeros.
    int64_t r =
        missing ? uffd_copy(c_.cold_uffd, a, kZeros, kPageSize, 0) : uffd_writeprotect(c_.cold_uffd, a, kPageSize, 0);
    if (r < 0) {
      if (r != -EEXIST) PHEAP_LOG_ERROR("hybrid-wp: page {} cannot be served (errno {})", p, -r);
      uffd_wake(c_.cold_uffd, a, kPageSize);
    }
  }

  void LoseTracking(uint64_t a, uint64_t len, int r) {
    PHEAP_LOG_ERROR(
        "hybrid-wp: chunk [{:#x}, {:#x}) is on no userfaultfd (errno {}): writes there may escape the "
        "dirty tracking, so this heap takes no more commits; reopen it to go on",
        a, a + len, -r);
    if (c_.untracked != nullptr) c_.untracked->store(true, std::memory_order_release);
  }

  const Region& region_;
  const HybridWpConfig c_;
  const uint64_t grid_;  // the 2 MiB boundary at or below base
  const uint64_t nchunks_;
  // Chunk states and the hot list: changed under the install lock held
  // exclusively (Heat on a fault thread; TakeDirty, AtPause on the cut).
  LazyArray<Chunk> chunks_;
  LazyArray<uint32_t> hot_list_;
  uint64_t hot_count_ = 0;
  LazyArray<uint32_t> warm_list_;  // cold chunks with warm != 0
  uint64_t warm_count_ = 0;
  // PrepareEvict's, reset by AtPause: the chunk it readied last, and the
  // warms it made in this pause.
  uint64_t prepared_ = ~uint64_t{0};
  uint64_t warmed_for_evict_ = 0;
  PageBitmap singles_;              // pages of cold chunks tracked one by one, written since the last take
  page_region vec_[kVecLen];        // TakeDirty's
  page_region count_vec_[kVecLen];  // CountWritten's (it may run beside TakeDirty)
  std::atomic<uint64_t> hot_now_{0}, heated_{0}, cooled_{0}, moves_unpaused_{0}, single_pages_{0};
};

}  // namespace

Result<std::unique_ptr<DirtyTracker>> NewHybridWpTracker(const Region& region, const HybridWpConfig& config) {
  auto t = std::make_unique<HybridWpTracker>(region, config);
  PHEAP_RETURN_IF_ERROR(t->Register());
  return std::unique_ptr<DirtyTracker>(std::move(t));
}

}  // namespace pheap
