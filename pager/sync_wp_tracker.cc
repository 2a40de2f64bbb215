#include "base/log.h"
#include "pager/dirty_tracker.h"
#include "pager/uffd.h"

namespace pheap {
namespace {

class SyncWpTracker final : public DirtyTracker {
 public:
  SyncWpTracker(const Region& region, int uffd) : region_(region), uffd_(uffd), dirty_(region.pages()) {}

  bool TakesWhileRunning() const override { return true; }
  TrackingMode mode() const override { return TrackingMode::kSyncWp; }
  uint64_t CopyMode(bool write_fault) const override { return write_fault ? 0 : UFFDIO_COPY_MODE_WP; }
  void MarkWritten(Pgno p) override { dirty_.Set(p); }

  // Mark first, then unprotect (which wakes the writer): the write can only
  // happen after the mark, and the caller's shared install lock keeps a
  // commit from collecting and re-protecting in between.
  void OnWriteFault(Pgno p) override {
    dirty_.Set(p);
    int r = uffd_writeprotect(uffd_, Addr(p), kPageSize, 0);
    if (r < 0) PHEAP_LOG_ERROR("UFFDIO_WRITEPROTECT clear of page {} failed: errno {}", p, -r);
  }

  uint64_t CountWritten() override { return dirty_.Count(); }
  bool CanCount() const override { return true; }

  Status TakeDirty(RunSink* sink) override {
    int err = 0;  // no Status (it allocates) until the walk is done
    dirty_.TakeRuns([&](Run r) {
      int e = uffd_writeprotect(uffd_, Addr(r.first), r.count * kPageSize, UFFDIO_WRITEPROTECT_MODE_WP);
      if (e < 0 && err == 0) err = -e;
      sink->Add(r);
    });
    return err == 0 ? Status::Ok() : Status::FromErrno("UFFDIO_WRITEPROTECT of the dirty runs", err);
  }

 private:
  uint64_t Addr(Pgno p) const { return region_.base() + (p << kPageShift); }
  const Region& region_;
  int uffd_;
  PageBitmap dirty_;
};

}  // namespace

std::unique_ptr<DirtyTracker> NewSyncWpTracker(const Region& region, int uffd) {
  return std::make_unique<SyncWpTracker>(region, uffd);
}

}  // namespace pheap
