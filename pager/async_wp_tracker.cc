#include <fcntl.h>

#include <fmt/format.h>

#include "base/os.h"
#include "pager/dirty_tracker.h"
#include "pager/uffd.h"

namespace pheap {
namespace {

class AsyncWpTracker final : public DirtyTracker {
 public:
  AsyncWpTracker(const Region& region, int pagemap_fd) : region_(region), fd_(pagemap_fd) {}
  ~AsyncWpTracker() override { os().close(fd_); }
  AsyncWpTracker(const AsyncWpTracker&) = delete;
  AsyncWpTracker& operator=(const AsyncWpTracker&) = delete;

  bool TakesWhileRunning() const override { return true; }
  TrackingMode mode() const override { return TrackingMode::kAsyncWp; }
  uint64_t CopyMode(bool) const override { return UFFDIO_COPY_MODE_WP; }

  // The walk covers the whole region: the kernel skips unpopulated page
  // tables a PMD or PUD at a time, so untouched parts cost next to nothing
  // and the scan grows with the populated part, not the reserved size.
  Status TakeDirty(RunSink* sink) override {
    const uint64_t end = region_.base() + region_.size();
    uint64_t start = region_.base();
    while (start < end) {
      pm_scan_arg arg{};
      arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
      arg.start = start;
      arg.end = end;
      arg.vec = reinterpret_cast<uint64_t>(vec_);
      arg.vec_len = kVecLen;
      // Written, and backed by a page of its own: a PTE never populated in a
      // populated page table also counts as "written" (it carries no WP
      // bit), and so does a read of the shared zero page; neither holds data.
      arg.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO;
      arg.category_inverted = PAGE_IS_PFNZERO;
      arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
      arg.return_mask = PAGE_IS_WRITTEN;
      int n = pagemap_scan(fd_, &arg);
      if (n < 0)
        return Status::FromErrno(fmt::format("PAGEMAP_SCAN of heap region [{:#x}, {:#x})", start, end), -n);
      for (int i = 0; i < n; ++i)
        sink->Add(Run{(vec_[i].start - region_.base()) >> kPageShift, (vec_[i].end - vec_[i].start) >> kPageShift});
      if (arg.walk_end <= start) break;  // no progress: nothing more to report
      start = arg.walk_end;
    }
    return Status::Ok();
  }

 private:
  static constexpr uint64_t kVecLen = 512;
  const Region& region_;
  int fd_;
  page_region vec_[kVecLen];
};

}  // namespace

std::unique_ptr<DirtyTracker> NewAsyncWpTracker(const Region& region, int pagemap_fd) {
  return std::make_unique<AsyncWpTracker>(region, pagemap_fd);
}

}  // namespace pheap
