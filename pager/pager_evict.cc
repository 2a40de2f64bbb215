// Eviction under a memory budget (PagerOptions::memory_max; the stamps and
// the choice are pager/evictor.h; docs/design.md, "Eviction").
//
// The invariant: a page is given back only while every writer is paused,
// only if it is not written since the last cut (the pause's TakeDirty put
// every written page in carry_ or in the cut, whose pages are stamped with
// a number not yet durable), and only if the epoch its content belongs to
// is durable (stamp <= Stamp(durable)). So the store holds its bytes, and
// the missing fault its next touch raises (hwm is raised over it first)
// reads them back. No write can land between the check and the zap: the
// writers are paused, and a fault thread installs only under the install
// lock, which the zap holds exclusively. A run the fault service read
// before an eviction may hold a page given back and written since: the
// eviction generation tells it to read again.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "base/log.h"
#include "base/os.h"
#include "base/thread.h"
#include "pager/pager_impl.h"
#include "pager/safepoint.h"
#include "pager/uffd.h"

namespace pheap {
namespace {

// An eviction pause of its own gives back at most this many pages: about
// as long as a commit's pause of a few MiB.
constexpr uint64_t kMaxEvictPerPause = 4096;
// How often the evictor thread looks at the process's faults: below the
// low watermark, and above it.
constexpr std::chrono::milliseconds kPoll{5}, kPollNear{1};
// How often, at most, the evictor counts written pages with the tracker
// (a page-table walk) when no fault asks for room.
constexpr std::chrono::milliseconds kCountEvery{10};
// How long a fault waits for the budget to have room before it places its
// page anyway (and says so once): an early commit and an eviction pause
// take milliseconds; longer means the disk stalls.
constexpr std::chrono::milliseconds kRoomWait{2000}, kRoomSlice{1};

uint64_t ProcessFaults() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<uint64_t>(ru.ru_minflt) + static_cast<uint64_t>(ru.ru_majflt);
}

uint64_t Pages(const std::vector<Run>& runs) {
  uint64_t n = 0;
  for (const Run& r : runs) n += r.count;
  return n;
}

}  // namespace

void Pager::Impl::SetUpEviction() {
  if (options_.memory_max == 0) return;
  const char* why = nullptr;
  if (mode_ == TrackingMode::kAsyncWpUser) {
    why = "async-wp-user tracking takes no missing faults, which bring a given-back page back";
  } else if (uffd_ < 0) {
    why = "without a userfaultfd nothing brings a given-back page back";
  }
  if (why != nullptr) {
    PHEAP_LOG_WARN("memory_max={} MiB: this heap keeps every page it touches resident: {}", options_.memory_max >> 20,
                   why);
    return;
  }
  evictor_ = std::make_unique<Evictor>(region_.pages());
  evicted_ = std::make_unique<PageBitmap>(region_.pages());
  const uint64_t pages = std::max<uint64_t>(options_.memory_max >> kPageShift, 64);
  high_pages_ = pages - pages / 8;
  low_pages_ = pages * 5 / 8;
  max_written_ = std::max<uint64_t>(pages / 4, 64);
  // Staging counts against the same memory: what stays between commits,
  // and what commits not yet durable hold (a commit past it waits).
  options_.staging_keep = std::min(options_.staging_keep, options_.memory_max / 4);
  options_.staging_max = std::min(options_.staging_max, options_.memory_max / 4);
  // And the fault threads' read buffers, filled a prefetch window at a time.
  options_.prefetch_max = std::clamp<uint64_t>(options_.memory_max / 8, 64 << 10, options_.prefetch_max);
  int fd = os().open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
  count_fd_ = fd >= 0 ? HighFd(fd) : -1;
  PHEAP_LOG_INFO("memory_max={} MiB: evicting clean durable pages past {} MiB resident, down to {} MiB",
                 options_.memory_max >> 20, high_pages_ >> 8, low_pages_ >> 8);
}

void Pager::Impl::StartEviction() {
  if (!evictor_) return;
  // Fresh pages too fault into the service (sync-wp registered the whole
  // region already; hybrid-wp's fresh chunks fault on its cold
  // userfaultfd), so AwaitRoom holds a writer of new pages.
  const Pgno from = served_hwm_.load(std::memory_order_relaxed);
  const uint64_t a = region_.base() + (from << kPageShift), len = region_.size() - (from << kPageShift);
  const bool own = len != 0 && (mode_ == TrackingMode::kAsyncWp || mode_ == TrackingMode::kMprotect);
  const int r = own ? RegisterMissing(a, len) : 0;
  missing_to_end_ = own && r == 0;
  // Then every page the region holds came through the fault service or a
  // cut, and the evictor's count is exact: no walk of the page tables.
  every_page_faults_ = missing_to_end_ || mode_ == TrackingMode::kSyncWp || mode_ == TrackingMode::kHybridWp;
  if (r < 0)
    PHEAP_LOG_WARN(
        "memory_max: UFFDIO_REGISTER of [{:#x}, {:#x}) for missing faults failed (errno {}): a program "
        "writing new pages faster than they are committed may pass the budget",
        a, a + len, -r);
  evict_thread_ = StartExemptThread([this] { EvictorLoop(); });
}

int Pager::Impl::RegisterMissing(uint64_t a, uint64_t len) {
  // async-wp keeps write-protect on the range; mprotect registers its
  // userfaultfd there; sync-wp registered the whole region; hybrid-wp
  // registers a chunk at a time (PrepareEvict).
  if (mode_ == TrackingMode::kAsyncWp)
    return uffd_register(uffd_, a, len, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, nullptr);
  if (mode_ == TrackingMode::kMprotect) return uffd_register(uffd_, a, len, UFFDIO_REGISTER_MODE_MISSING, nullptr);
  return 0;
}

bool Pager::Impl::NeedsRoom() const {
  return evictor_->resident() + StagingBuffer::ResidentPages() > high_pages_ ||
         (options_.memory_early_commit && WrittenSinceCutByFaults() > max_written_);
}

void Pager::Impl::AwaitRoom() {
  if (!room_gate_.load(std::memory_order_relaxed) || !NeedsRoom()) return;
  const auto deadline = std::chrono::steady_clock::now() + kRoomWait;
  std::unique_lock lk(evict_mu_);
  // While every program thread is held at the safepoint, the fault is let
  // through: the pause's own copy (a page mprotect tracking counted
  // written before its missing fault placed it) may be what waits on it.
  while (!evict_stop_ && room_gate_.load(std::memory_order_relaxed) && NeedsRoom() && !SafepointHeld()) {
    room_wanted_ = true;
    evict_cv_.notify_all();
    room_cv_.wait_for(lk, kRoomSlice);
    if (std::chrono::steady_clock::now() >= deadline) {
      // Nothing makes room (early commits off, a disk that stalls): faults
      // are not held again until an eviction or a commit succeeds.
      room_gate_.store(false, std::memory_order_relaxed);
      if (!said_no_room_.exchange(true))
        PHEAP_LOG_WARN("memory_max: no room made within {} ms; pages are placed over the budget (logged once)",
                       kRoomWait.count());
      return;
    }
  }
}

void Pager::Impl::StopEviction() {
  if (!evict_thread_.joinable()) return;
  {
    std::lock_guard lk(evict_mu_);
    evict_stop_ = true;
  }
  evict_cv_.notify_all();
  evict_thread_.join();
}

void Pager::Impl::NoteDurable(Epoch e, Pgno hwm) {
  // The hwm first: whoever sees the epoch sees at least its hwm.
  Pgno seen = durable_hwm_.load(std::memory_order_relaxed);
  while (hwm > seen && !durable_hwm_.compare_exchange_weak(seen, hwm, std::memory_order_release)) {
  }
  durable_.store(e, std::memory_order_release);
}

uint64_t Pager::Impl::PresentPages() {
  uint64_t n = 0;
  if (count_fd_ >= 0 && !every_page_faults_) {
    page_region vec[256];
    pm_scan_arg arg{};
    // Present and backed by a page of its own (not the shared zero page).
    arg.category_mask = PAGE_IS_PRESENT | PAGE_IS_PFNZERO;
    arg.category_inverted = PAGE_IS_PFNZERO;
    arg.return_mask = PAGE_IS_PRESENT;
    const int r = pagemap_scan_range(count_fd_, arg, region_.base(), region_.base() + region_.size(), vec, 256,
                                     [&](const page_region& v) { n += (v.end - v.start) >> kPageShift; });
    if (r < 0) n = evictor_->resident();
  } else {
    n = evictor_->resident();
  }
  present_.store(n, std::memory_order_relaxed);
  return n;
}

std::vector<Run> Pager::Impl::ChooseVictims(uint64_t present, uint64_t max) {
  std::vector<Run> v;
  if (present <= high_pages_) return v;
  uint64_t want = present - low_pages_;
  if (max != 0) want = std::min(want, max);
  std::lock_guard lk(choose_mu_);
  evictor_->Choose(durable_hwm_.load(std::memory_order_acquire), Stamp(durable_.load(std::memory_order_acquire)), want,
                   &v);
  // Pages an eviction pause took into carry_ are written since the last
  // cut, whatever their stamps say: only a commit frees them. (A hint here;
  // EvictInPause checks again.)
  std::vector<Run> out;
  for (const Run& r : v) {
    for (Pgno p = r.first; p < r.end();) {
      const Pgno c = carry_->NextSet(p, r.end());
      if (c > p) out.push_back(Run{p, c - p});
      p = c + 1;
    }
  }
  return out;
}

uint64_t Pager::Impl::CountWritten(uint64_t present) {
  return carry_->Count() + (tracker_->CanCount() ? tracker_->CountWritten() : present);
}

Status Pager::Impl::RaiseServedHwm(Pgno to) {
  const Pgno from = served_hwm_.load(std::memory_order_relaxed);
  if (to <= from) return Status::Ok();
  const uint64_t a = region_.base() + (from << kPageShift), len = (to - from) << kPageShift;
  // Registered at StartEviction where that went through.
  const int r = missing_to_end_ ? 0 : RegisterMissing(a, len);
  if (r < 0)
    return Status::FromErrno(fmt::format("UFFDIO_REGISTER of [{:#x}, {:#x}) for missing faults", a, a + len), -r);
  // Pages resident there already: fault runs step over them.
  for (Pgno p = from; p < to; ++p)
    if (evictor_->stamp(p) != 0) installed_->Set(p);
  served_hwm_.store(to, std::memory_order_release);
  return Status::Ok();
}

void Pager::Impl::MarkCut(const Pgno* pages, uint64_t n, Epoch epoch) {
  const uint32_t s = Stamp(epoch);
  if (faults_) written_at_cut_.store(faults_->written_installs(), std::memory_order_release);
  for (uint64_t i = 0; i < n;) {
    uint64_t k = 1;
    while (i + k < n && pages[i + k] == pages[i] + k) ++k;
    const Run r{pages[i], k};
    evictor_->Touch(r, s);
    installed_->SetRun(r);
    // Written after any discard: its bytes are the cut's now, not zeros.
    discarded_->ClearRun(r);
    i += k;
  }
}

uint64_t Pager::Impl::EvictInPause(const std::vector<Run>& victims, uint64_t max) {
  if (evict_hold_.load(std::memory_order_acquire) != 0) return 0;  // a fork is being prepared
  std::unique_lock lk(install_mu_);
  const uint32_t durable = Stamp(durable_.load(std::memory_order_acquire));
  const Pgno limit = durable_hwm_.load(std::memory_order_acquire);
  Pgno top = 0;
  for (const Run& r : victims) top = std::max(top, std::min(r.end(), limit));
  if (top > served_hwm_.load(std::memory_order_relaxed)) {
    if (Status st = RaiseServedHwm(limit); !st.ok()) {
      PHEAP_LOG_WARN("eviction skipped: {}", st.ToString());
      return 0;
    }
  }
  const Pgno served = served_hwm_.load(std::memory_order_relaxed);
  uint64_t done = 0;
  auto zap = [&](Run r) {
    if (!tracker_->PrepareEvict(r)) return;
    const uint64_t a = region_.base() + (r.first << kPageShift);
    if (int e = os().madvise(reinterpret_cast<void*>(a), r.count << kPageShift, MADV_DONTNEED); e < 0) {
      PHEAP_LOG_WARN("eviction: madvise(DONTNEED) of [{:#x}, +{} pages) failed (errno {})", a, r.count, -e);
      return;
    }
    installed_->ClearRun(r);
    evicted_->SetRun(r);
    evictor_->Forget(r);
    done += r.count;
  };
  for (const Run& v : victims) {
    Run cur{};
    for (Pgno p = v.first; p < v.end() && done + cur.count < max; ++p) {
      const uint32_t s = evictor_->stamp(p);
      const bool ok = p < served && s != 0 && s <= durable && !carry_->Test(p) && !mapped_->Test(p);
      if (ok && cur.count != 0 && cur.end() == p) {
        ++cur.count;
        continue;
      }
      if (cur.count != 0) zap(cur);
      cur = ok ? Run{p, 1} : Run{};
    }
    if (cur.count != 0) zap(cur);
    if (done >= max) break;
  }
  if (done != 0) {
    evict_gen_.fetch_add(1, std::memory_order_acq_rel);
    evictions_.fetch_add(done, std::memory_order_relaxed);
  }
  return done;
}

uint64_t Pager::Impl::EvictionPause(const std::vector<Run>& victims, uint64_t max) {
  if (victims.empty() || InForkChild()) return 0;
  HoldingCommitLocks held;
  // epoch_mu_ too: an in-place commit holds it through its Sync, on a
  // program thread that a pause's signal must not interrupt (EINTR).
  std::lock_guard epoch_lk(epoch_mu_);
  std::lock_guard cut_lk(cut_mu_);
  tracker_->BeforePause();
  Safepoint sp;
  auto n = sp.Pause();
  if (!n.ok()) return 0;
  // Written pages go into carry_ (the next cut takes them), so the ones
  // left are unwritten since the last cut.
  Status st = TakeIntoCarry(true);
  if (st.ok()) st = CheckTracking();
  const uint64_t done = st.ok() ? EvictInPause(victims, max) : 0;
  sp.Resume();
  eviction_pauses_.fetch_add(1, std::memory_order_relaxed);
  return done;
}

void Pager::Impl::DontNeed(Run r) {
  // Nothing read ahead before the advice places pages of r after it.
  faults_->CancelAhead(r);
  // First candidates: what an eviction pause below leaves (a pause that
  // finds the page written, a fork's hold) goes before any other page.
  std::vector<Run> pages;
  evictor_->Demote(r, Stamp(durable_.load(std::memory_order_acquire)), &pages);
  // In batches of at most kMaxEvictPerPause pages, each in a pause of its
  // own, so no pause outlasts the evictor's.
  std::vector<Run> batch;
  uint64_t n = 0;
  for (size_t i = 0; i < pages.size();) {
    Run& cur = pages[i];
    const uint64_t take = std::min(cur.count, kMaxEvictPerPause - n);
    batch.push_back(Run{cur.first, take});
    n += take;
    cur = Run{cur.first + take, cur.count - take};
    if (cur.count == 0) ++i;
    if (n == kMaxEvictPerPause || i == pages.size()) {
      EvictionPause(batch, kMaxEvictPerPause);
      batch.clear();
      n = 0;
    }
  }
}

bool Pager::Impl::EarlyCommit(uint64_t present, uint64_t written) {
  if (!options_.memory_early_commit || !ForkChildStatus().ok()) {
    if (!said_over_budget_) {
      said_over_budget_ = true;
      PHEAP_LOG_WARN(
          "memory_max: {} MiB resident, {} MiB of it written since the last commit, against a budget of "
          "{} MiB: commit more often (logged once)",
          present >> 8, written >> 8, options_.memory_max >> 20);
    }
    return false;
  }
  if (!said_over_budget_) {
    said_over_budget_ = true;
    PHEAP_LOG_INFO(
        "memory_max: {} MiB resident, {} MiB of it written since the last commit: committing early "
        "(logged once)",
        present >> 8, written >> 8);
  }
  auto e = CommitAsync().get();
  if (e.ok()) {
    early_commits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  if (!said_commit_failed_) {
    said_commit_failed_ = true;
    PHEAP_LOG_WARN("memory_max: an early commit failed ({}); the heap stays over its budget (logged once)",
                   e.status().ToString());
  }
  return false;
}

void Pager::Impl::EvictorLoop() {
  uint64_t faults_at = ProcessFaults(), fetched_at = faults_ ? faults_->pages_fetched() : 0;
  PresentPages();
  auto counted_at = std::chrono::steady_clock::now();
  std::unique_lock lk(evict_mu_);
  for (;;) {
    // Close to the budget, look often: under async-wp a write to a resident
    // clean page raises no fault, and only a count finds the written set.
    const bool near = present_.load(std::memory_order_relaxed) > std::min(low_pages_, max_written_);
    evict_cv_.wait_for(lk, near ? kPollNear : kPoll, [&] { return evict_stop_ || room_wanted_; });
    if (evict_stop_) break;
    const bool asked = room_wanted_;
    lk.unlock();
    // Cheap first: what can have become resident since the last count.
    const uint64_t faults = ProcessFaults(), fetched = faults_ ? faults_->pages_fetched() : 0;
    const uint64_t grown = (faults - faults_at) + (fetched - fetched_at);
    if (asked || present_.load(std::memory_order_relaxed) + grown > std::min(low_pages_, max_written_)) {
      faults_at = faults;
      fetched_at = fetched;
      // The budget covers the commits' staging too (the copy of the dirty
      // set, and what is kept between commits).
      auto held = [&] { return std::max(PresentPages(), evictor_->resident()) + StagingBuffer::ResidentPages(); };
      uint64_t present = held();
      uint64_t written = faults_ ? WrittenSinceCutByFaults() : 0;
      // The tracker's count walks the page tables: asked for room, or every
      // kCountEvery at most.
      const auto now = std::chrono::steady_clock::now();
      if (written <= max_written_ && present > max_written_ && (asked || now - counted_at >= kCountEvery)) {
        counted_at = now;
        written = std::max(written, CountWritten(present));
      }
      bool made_room = false;
      if (written > max_written_) {
        made_room = EarlyCommit(present, written);
        present = held();
      }
      for (int round = 0; round < 64 && present > high_pages_; ++round) {
        std::vector<Run> victims = ChooseVictims(present, kMaxEvictPerPause);
        const uint64_t need = std::min(present - low_pages_, kMaxEvictPerPause);
        if (Pages(victims) < need / 2) {
          // Mostly written and not yet durable: only a commit frees them.
          made_room |= EarlyCommit(present, CountWritten(present));
          victims = ChooseVictims(held(), kMaxEvictPerPause);
        }
        if (victims.empty() || EvictionPause(victims, kMaxEvictPerPause) == 0) break;
        made_room = true;
        present = held();
      }
      // Faults wait for room only while the evictor can make it: with
      // early commits off, or failing, written pages leave until the
      // program's own commit, and a fault that waited for them would only
      // time out.
      if (made_room) {
        room_gate_.store(true, std::memory_order_relaxed);
      } else if (asked && NeedsRoom()) {
        room_gate_.store(false, std::memory_order_relaxed);
      }
    }
    lk.lock();
    room_wanted_ = false;
    room_cv_.notify_all();
  }
  room_cv_.notify_all();
}

}  // namespace pheap
