#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include <fmt/format.h>

#include "base/os.h"
#include "pager/dirty_tracker.h"
#include "pager/safepoint.h"
#include "pager/uffd.h"

namespace pheap {
namespace {

constexpr uint64_t kHugeBytes = uint64_t{2} << 20;

class AsyncWpTracker final : public DirtyTracker {
 public:
  AsyncWpTracker(const Region& region, int pagemap_fd)
      : region_(region), fd_(pagemap_fd), populated_end_(region.base()) {}
  ~AsyncWpTracker() override {
    if (helper_.joinable()) {
      stop_.store(true, std::memory_order_release);
      job_.fetch_add(1, std::memory_order_release);
      job_.notify_one();
      helper_.join();
    }
    os().close(fd_);
  }
  AsyncWpTracker(const AsyncWpTracker&) = delete;
  AsyncWpTracker& operator=(const AsyncWpTracker&) = delete;

  bool TakesWhileRunning() const override { return true; }

  // The helper exists only once a walk is long enough to split: most heaps
  // (every short-lived preloaded process) never need it.
  void BeforePause() override {
    if (helper_.joinable() || populated_end_.load(std::memory_order_relaxed) - region_.base() < kSplitBytes) return;
    helper_ = StartExemptThread([this] { HelperLoop(); });
  }
  TrackingMode mode() const override { return TrackingMode::kAsyncWp; }
  uint64_t CopyMode(bool) const override { return UFFDIO_COPY_MODE_WP; }

  // The walk covers the whole region: the kernel skips unpopulated page
  // tables a PMD or PUD at a time, so untouched parts cost next to nothing
  // and the scan grows with the populated part, not the reserved size.
  // That part costs about 0.3-0.7 ms per GiB (see Take), inside the commit
  // pause while the program's threads wait, so a core is free: past kSplitBytes the
  // walk is cut in two at the middle of the part written so far, and a
  // helper thread takes the upper half unless the caller finishes its own
  // half first (then the caller takes both: it never waits for the helper
  // to wake, only for a half the helper has begun). Until BeforePause has
  // started the helper, the caller walks alone.
  Status TakeDirty(RunSink* sink) override {
    const uint64_t base = region_.base(), end = base + region_.size();
    const uint64_t populated = populated_end_.load(std::memory_order_relaxed);
    if (populated - base < kSplitBytes || !helper_.joinable()) return Take(base, end, &bufs_, sink);
    const uint64_t mid = base + ((populated - base) / 2 & ~(kHugeBytes - 1));
    upper_ = {mid, end};
    sink_ = sink;
    upper_status_ = Status::Ok();
    upper_done_.store(0, std::memory_order_relaxed);
    upper_claim_.store(kFree, std::memory_order_release);  // publishes upper_ and sink_
    job_.fetch_add(1, std::memory_order_release);
    job_.notify_one();
    Status st = Take(base, mid, &bufs_, sink);
    int free = kFree;
    if (upper_claim_.compare_exchange_strong(free, kByCaller, std::memory_order_acq_rel)) {
      Status up = Take(mid, end, &bufs_, sink);
      return st.ok() ? up : st;
    }
    while (upper_done_.load(std::memory_order_acquire) == 0) upper_done_.wait(0, std::memory_order_acquire);
    return st.ok() ? upper_status_ : st;
  }

  // A walk without protecting, into a buffer of its own: TakeDirty's may
  // be in use.
  uint64_t CountWritten() override {
    struct Counter final : RunSink {
      uint64_t pages = 0;
      void Add(Run r) override { pages += r.count; }
    } counter;
    const uint64_t base = region_.base();
    page_region vec[kVecLen];
    return Scan(base, base + region_.size(), vec, &counter, kReport).ok() ? counter.pages : 0;
  }
  bool CanCount() const override { return true; }

 private:
  static constexpr uint64_t kVecLen = 512;
  static constexpr uint64_t kSplitBytes = uint64_t{256} << 20;
  // kTake reports and protects again (the cut); kReport only reports.
  static constexpr uint64_t kTake = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, kReport = PM_SCAN_CHECK_WPASYNC;
  // Hint walks: see Take.
  static constexpr int kHintLen = 32;
  static constexpr uint64_t kHintMinBytes = uint64_t{64} << 20, kSpanGap = uint64_t{256} << kPageShift;
  enum : int { kFree = 0, kByHelper = 1, kByCaller = 2 };
  struct Range {
    uint64_t start, end;
  };
  struct ScanBuffers {
    page_region exact[kVecLen];
    page_region hint[kHintLen];
  };

  // Reports and protects the written runs of [start, end). The exact walk
  // (Scan) costs about 2.5 ns per populated page, most of it classifying
  // every PTE against its masks. The kernel has a faster loop for the one
  // query "written, report only the written bit", about half the cost, but
  // it counts a PTE never populated, or mapping the shared zero page, as
  // written, and with PM_SCAN_WP_MATCHING would protect (and so hide from
  // the next walk) whatever it reported. So that loop only finds where to
  // look, reporting without protecting, and the exact walk then reports
  // and protects the spans it found: a page written between the two walks
  // is either inside a span (and taken now) or outside (and taken by the
  // next cut, its PTE untouched). When the hint finds more than kHintLen
  // runs, a walk per span would cost more than one exact walk of the
  // range; the hint changed nothing, so the exact walk simply starts over.
  Status Take(uint64_t start, uint64_t end, ScanBuffers* b, RunSink* sink) {
    // A small populated part is walked exactly at once: a few dozen spans
    // would cost more than the walk. (Pages past populated_end_ count only
    // as written once reported; either walk covers the whole range.)
    if (std::min(end, populated_end_.load(std::memory_order_relaxed)) < start + kHintMinBytes)
      return Scan(start, end, b->exact, sink, kTake);
    pm_scan_arg arg{};
    arg.flags = PM_SCAN_CHECK_WPASYNC;
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(b->hint);
    arg.vec_len = kHintLen;
    arg.category_mask = PAGE_IS_WRITTEN;
    arg.return_mask = PAGE_IS_WRITTEN;
    int n = pagemap_scan(fd_, &arg);
    if (n < 0) return Status::FromErrno(fmt::format("PAGEMAP_SCAN of heap region [{:#x}, {:#x})", start, end), -n);
    if (arg.walk_end < end) return Scan(start, end, b->exact, sink, kTake);
    for (int i = 0; i < n;) {
      const uint64_t span_start = b->hint[i].start;
      uint64_t span_end = b->hint[i].end;
      while (++i < n && b->hint[i].start - span_end <= kSpanGap) span_end = b->hint[i].end;
      if (Status st = Scan(span_start, span_end, b->exact, sink, kTake); !st.ok()) return st;
    }
    return Status::Ok();
  }

  Status Scan(uint64_t start, const uint64_t end, page_region* vec, RunSink* sink, uint64_t flags) {
    uint64_t reached = 0;
    pm_scan_arg arg{};
    arg.flags = flags;
    // Written, and backed by a page of its own: a PTE never populated in a
    // populated page table also counts as "written" (it carries no WP
    // bit), and so does a read of the shared zero page; neither holds data.
    arg.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO;
    arg.category_inverted = PAGE_IS_PFNZERO;
    arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    arg.return_mask = PAGE_IS_WRITTEN;
    const int r = pagemap_scan_range(fd_, arg, start, end, vec, kVecLen, [&](const page_region& v) {
      sink->Add(Run{(v.start - region_.base()) >> kPageShift, (v.end - v.start) >> kPageShift});
      reached = std::max<uint64_t>(reached, v.end);
    });
    if (r < 0) return Status::FromErrno(fmt::format("PAGEMAP_SCAN of heap region [{:#x}, {:#x})", start, end), -r);
    uint64_t seen = populated_end_.load(std::memory_order_relaxed);
    while (reached > seen && !populated_end_.compare_exchange_weak(seen, reached, std::memory_order_relaxed)) {
    }
    return Status::Ok();
  }

  // Waits for a job and takes its upper half if the caller has not.
  void HelperLoop() {
    uint32_t seen = job_.load(std::memory_order_acquire);
    for (;;) {
      job_.wait(seen, std::memory_order_acquire);
      seen = job_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_acquire)) break;
      int free = kFree;
      if (!upper_claim_.compare_exchange_strong(free, kByHelper, std::memory_order_acq_rel)) continue;
      upper_status_ = Take(upper_.start, upper_.end, &helper_bufs_, sink_);
      upper_done_.store(1, std::memory_order_release);
      upper_done_.notify_one();
    }
  }

  const Region& region_;
  int fd_;
  std::atomic<uint64_t> populated_end_;  // end of the highest run ever reported
  ScanBuffers bufs_;  // the caller's

  // The upper half of the current walk, published by upper_claim_.
  std::thread helper_;  // started by BeforePause; read by TakeDirty after it
  std::atomic<uint32_t> job_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> upper_claim_{kByCaller};  // nothing to take before the first job
  std::atomic<uint32_t> upper_done_{0};
  Range upper_{};
  RunSink* sink_ = nullptr;
  Status upper_status_;
  ScanBuffers helper_bufs_;
};

}  // namespace

std::unique_ptr<DirtyTracker> NewAsyncWpTracker(const Region& region, int pagemap_fd) {
  return std::make_unique<AsyncWpTracker>(region, pagemap_fd);
}

}  // namespace pheap
