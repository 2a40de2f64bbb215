#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <mutex>

#include <fmt/format.h>

#include "base/log.h"
#include "base/os.h"
#include "pager/dirty_tracker.h"
#include "pager/safepoint.h"

namespace pheap {
namespace {

// Regions tracked by mprotect, read by the SIGSEGV handler without locks.
struct Slot {
  std::atomic<uint64_t> base{0};
  std::atomic<uint64_t> size{0};
  std::atomic<PageBitmap*> dirty{nullptr};
};
constexpr int kMaxSlots = 16;
Slot g_slots[kMaxSlots];
struct sigaction g_previous;

void ChainToPrevious(int sig, siginfo_t* info, void* ctx) {
  if (g_previous.sa_flags & SA_SIGINFO) {
    g_previous.sa_sigaction(sig, info, ctx);
  } else if (g_previous.sa_handler == SIG_DFL || g_previous.sa_handler == SIG_IGN) {
    // Let the faulting instruction run again under the default action.
    signal(sig, SIG_DFL);
  } else {
    g_previous.sa_handler(sig);
  }
}

void OnSegv(int sig, siginfo_t* info, void* ctx) {
  const uint64_t addr = reinterpret_cast<uint64_t>(info->si_addr);
  if (info->si_code == SEGV_ACCERR) {
    for (Slot& s : g_slots) {
      const uint64_t base = s.base.load(std::memory_order_acquire);
      if (addr - base >= s.size.load(std::memory_order_acquire)) continue;
      PageBitmap* dirty = s.dirty.load(std::memory_order_acquire);
      if (dirty == nullptr) break;
      const Pgno p = (addr - base) >> kPageShift;
      const int saved = errno;
      dirty->Set(p);  // mark before unprotecting: the write comes after
      int r = os().mprotect(reinterpret_cast<void*>(base + (p << kPageShift)), kPageSize, PROT_READ | PROT_WRITE);
      errno = saved;
      if (r == 0) return;
      break;  // cannot unprotect (map count limit?): fail like a plain fault
    }
  }
  ChainToPrevious(sig, info, ctx);
}

Status InstallHandlerOnce() {
  static std::once_flag once;
  static int err = 0;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = OnSegv;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    // The safepoint must not land between the mark and the unprotect.
    sigaddset(&sa.sa_mask, SafepointSignal());
    if (sigaction(SIGSEGV, &sa, &g_previous) != 0) err = errno;
  });
  return err == 0 ? Status::Ok() : Status::FromErrno("installing the SIGSEGV handler for mprotect tracking", err);
}

class MprotectTracker final : public DirtyTracker {
 public:
  MprotectTracker(const Region& region, Slot* slot) : region_(region), slot_(slot), dirty_(region.pages()) {
    slot_->dirty.store(&dirty_, std::memory_order_release);
    slot_->size.store(region.size(), std::memory_order_release);
  }
  ~MprotectTracker() override {
    slot_->dirty.store(nullptr, std::memory_order_release);
    slot_->size.store(0, std::memory_order_release);
    slot_->base.store(0, std::memory_order_release);
  }
  MprotectTracker(const MprotectTracker&) = delete;
  MprotectTracker& operator=(const MprotectTracker&) = delete;

  bool TakesWhileRunning() const override { return false; }
  TrackingMode mode() const override { return TrackingMode::kMprotect; }
  uint64_t CopyMode(bool) const override { return 0; }  // the VMA's PROT_READ protects it
  void MarkWritten(Pgno) override {}  // the write after the copy faults with SIGSEGV

  uint64_t CountWritten() override { return dirty_.Count(); }
  bool CanCount() const override { return true; }

  Status TakeDirty(RunSink* sink) override {
    int err = 0;
    dirty_.TakeRuns([&](Run r) {
      int e = os().mprotect(region_.data() + (r.first << kPageShift), r.count * kPageSize, PROT_READ);
      if (e < 0 && err == 0) err = -e;
      sink->Add(r);
    });
    return err == 0 ? Status::Ok() : Status::FromErrno("mprotect(PROT_READ) of the dirty runs", err);
  }

 private:
  const Region& region_;
  Slot* slot_;
  PageBitmap dirty_;
};

}  // namespace

Result<std::unique_ptr<DirtyTracker>> NewMprotectTracker(const Region& region) {
  PHEAP_RETURN_IF_ERROR(InstallHandlerOnce());
  for (Slot& s : g_slots) {
    uint64_t expected = 0;
    if (!s.base.compare_exchange_strong(expected, region.base(), std::memory_order_acq_rel)) continue;
    int r = os().mprotect(region.data(), region.size(), PROT_READ);
    if (r < 0) {
      s.base.store(0, std::memory_order_release);
      return Status::FromErrno(fmt::format("mprotect(PROT_READ) of heap region at {:#x}", region.base()), -r);
    }
    return std::unique_ptr<DirtyTracker>(std::make_unique<MprotectTracker>(region, &s));
  }
  return Status::Busy(fmt::format("more than {} heaps use mprotect tracking in this process", kMaxSlots));
}

}  // namespace pheap
