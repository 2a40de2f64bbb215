#include "pager/fault_service.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "base/log.h"
#include "base/os.h"
#include "pager/safepoint.h"
#include "pager/uffd.h"

namespace pheap {
namespace {

alignas(4096) const uint8_t kZeroPage[kPageSize] = {};
constexpr size_t kBufBytes = size_t{PageSource::kMaxReadRun} * kPageSize;

bool Advised(const PageBitmap* advice, Pgno p) { return advice != nullptr && advice->Test(p); }
bool Holds(Run r, Pgno p) { return p >= r.first && p < r.end(); }

}  // namespace

Status FaultService::Start() {
  stop_fd_ = HighFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (stop_fd_ < 0) return Status::FromErrno("eventfd for the fault service", errno);
  ahead_fd_ = HighFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (ahead_fd_ < 0) {
    const int err = errno;
    CloseOwnFd(stop_fd_);
    stop_fd_ = -1;
    return Status::FromErrno("eventfd for the fault service's read-ahead", err);
  }
  // Return only once every thread is exempt from the commit safepoint: a
  // cut that paused a fault thread could block on the very fault it needs.
  for (int i = 0; i < std::max(1, c_.threads); ++i) threads_.push_back(StartExemptThread([this] { Loop(); }));
  return Status::Ok();
}

void FaultService::Stop() {
  if (stop_fd_ < 0) return;
  uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) != sizeof(one)) PHEAP_LOG_ERROR("fault service: stop signal failed");
  for (auto& t : threads_) t.join();
  threads_.clear();
  CloseOwnFd(stop_fd_);
  stop_fd_ = -1;
  CloseOwnFd(ahead_fd_);
  ahead_fd_ = -1;
}

void FaultService::Loop() {
  void* mem = os().mmap(nullptr, kBufBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (MmapFailed(mem)) {
    PHEAP_LOG_ERROR("fault service: cannot map its 4 MiB buffer (errno {}); thread exits", MmapErrno(mem));
    return;
  }
  auto* buf = static_cast<uint8_t*>(mem);
  // A negative fd (no cold userfaultfd) is never polled.
  pollfd fds[4] = {{c_.uffd, POLLIN, 0}, {stop_fd_, POLLIN, 0}, {ahead_fd_, POLLIN, 0}, {c_.cold_uffd, POLLIN, 0}};
  // Reads what a userfaultfd holds and serves it; false on a failure that
  // ends the thread.
  auto drain = [&](int fd, bool cold) {
    uffd_msg msgs[16];
    // read(2) of a userfaultfd: not a file or memory call of pheap::os().
    ssize_t n = read(fd, msgs, sizeof(msgs));
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;  // another thread took it
      PHEAP_LOG_ERROR("fault service: read of userfaultfd failed, errno {}", errno);
      return false;
    }
    for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) Serve(msgs[i], cold, buf);
    return true;
  };
  for (;;) {
    int r = poll(fds, 4, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { PHEAP_LOG_ERROR("fault service: poll failed, errno {}", errno); break; }
    if (fds[1].revents != 0) break;
    if (((fds[0].revents | fds[3].revents) & (POLLERR | POLLHUP)) != 0) break;
    if ((fds[2].revents & POLLIN) != 0) {
      uint64_t posted;
      if (read(ahead_fd_, &posted, sizeof(posted)) == sizeof(posted)) ServeAhead(buf);
    }
    if ((fds[3].revents & POLLIN) != 0 && !drain(c_.cold_uffd, true)) break;
    if ((fds[0].revents & POLLIN) != 0 && !drain(c_.uffd, false)) break;
  }
  os().munmap(mem, kBufBytes);
}

void FaultService::Serve(const uffd_msg& m, bool cold, uint8_t* buf) {
  if (m.event != UFFD_EVENT_PAGEFAULT) {
    PHEAP_LOG_WARN("fault service: unexpected userfaultfd event {}", m.event);
    return;
  }
  const Pgno p = (m.arg.pagefault.address - c_.region->base()) >> kPageShift;
  const uint64_t flags = m.arg.pagefault.flags;
  if ((flags & UFFD_PAGEFAULT_FLAG_WP) == 0 && c_.await_room) c_.await_room();
  if (cold) {  // the chunk changes userfaultfd: nothing may install or take meanwhile
    std::unique_lock lk(*c_.install_mu);
    c_.tracker->OnColdFault(p, (flags & UFFD_PAGEFAULT_FLAG_WP) == 0);
    return;
  }
  if ((flags & UFFD_PAGEFAULT_FLAG_WP) != 0) {
    std::shared_lock lk(*c_.install_mu);
    c_.tracker->OnWriteFault(p);
    return;
  }
  faults_.fetch_add(1, std::memory_order_relaxed);  // counted before the faulter wakes
  ServeMissing(p, (flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0, buf);
}

uint64_t FaultService::MaxWindow() const {
  return std::clamp<uint64_t>(c_.prefetch_max >> kPageShift, 1, PageSource::kMaxReadRun);
}

uint64_t FaultService::Room() const {
  if (c_.prefetch_resident_max == 0) return UINT64_MAX;
  const uint64_t held = c_.evictor->resident();
  return held < c_.prefetch_resident_max ? c_.prefetch_resident_max - held : 0;
}

Run FaultService::PlanRun(Pgno p, Run* ahead) {
  const uint64_t max_pages = MaxWindow();
  *ahead = Run{p + 1, 0};
  // Advised random: neighbours are not wanted, and such a fault is no
  // step of a sequence either.
  if (Advised(c_.random, p)) return Run{p, 1};
  const bool advised = Advised(c_.sequential, p);
  uint64_t window;
  bool sequential;
  {
    std::lock_guard lk(window_mu_);
    sequential = advised || (p > last_first_ && p <= last_end_);
    window_pages_ =
        advised ? max_pages
        : sequential
            ? std::min(window_pages_ * 2, max_pages)
            : std::min((c_.evictor != nullptr ? kInitialWindowUnderBudget : kInitialWindow) >> kPageShift, max_pages);
    window = window_pages_;
    last_first_ = p;
    // The read-ahead run counts as this one's: a fault at its start or
    // inside it continues the sequence.
    last_end_ = p + (sequential ? 2 * window : window);
  }
  // Under a budget a window is what the budget still has room for (the
  // faulting page at least): with the evictor behind, windows of every
  // fault thread and their read-ahead would pile over it.
  const uint64_t room = Room();
  const uint64_t placed = std::clamp<uint64_t>(room, 1, window);
  const Pgno end = RunEnd(p, placed);
  *ahead = Run{end, 0};
  // A whole window placed means room >= window.
  if (sequential && end == p + window && end < Hwm() && !c_.installed->Test(end) && !c_.discarded->Test(end))
    ahead->count = RunEnd(end, std::min(window, room - window)) - end;
  return Run{p, end - p};
}

Pgno FaultService::RunEnd(Pgno first, uint64_t pages) const {
  Pgno end = std::min<Pgno>(first + pages, Hwm());
  end = c_.installed->NextSet(first + 1, end);
  return c_.discarded->NextSet(first + 1, end);
}

void FaultService::PostAhead(Run ahead) {
  if (ahead.count == 0) return;
  {
    std::lock_guard lk(ahead_mu_);
    if (ahead_busy_.count != 0 || ahead_posted_.count != 0) return;
    ahead_posted_ = ahead;
  }
  uint64_t one = 1;
  if (write(ahead_fd_, &one, sizeof(one)) != sizeof(one)) {
    std::lock_guard lk(ahead_mu_);
    ahead_posted_ = Run{};
  }
}

void FaultService::AwaitAhead(Pgno p) {
  std::unique_lock lk(ahead_mu_);
  if (Holds(ahead_posted_, p)) ahead_posted_ = Run{};  // served here instead
  ahead_cv_.wait(lk, [&] { return !Holds(ahead_busy_, p) && !Holds(prefetch_busy_, p); });
}

void FaultService::KickAhead() {
  uint64_t one = 1;
  if (write(ahead_fd_, &one, sizeof(one)) != sizeof(one)) PHEAP_LOG_DEBUG("fault service: read-ahead signal failed");
}

void FaultService::Prefetch(Run r) {
  r.count = r.first < Hwm() ? std::min(r.end(), Hwm()) - r.first : 0;
  if (r.count == 0 || stop_fd_ < 0) return;  // nothing stored there, or no thread to place it
  {
    std::lock_guard lk(ahead_mu_);
    if (prefetch_.size() >= kMaxPrefetches) prefetch_.pop_front();
    prefetch_.push_back(r);
  }
  KickAhead();
}

void FaultService::CancelAhead(Run r) {
  auto overlaps = [&](Run q) { return q.count != 0 && q.first < r.end() && r.first < q.end(); };
  std::unique_lock lk(ahead_mu_);
  if (overlaps(ahead_posted_)) ahead_posted_ = Run{};
  std::deque<Run> kept;
  for (const Run& q : prefetch_) {  // what lies before r, and after it
    if (q.first < r.first) kept.push_back(Run{q.first, std::min(q.end(), r.first) - q.first});
    if (q.end() > r.end()) {
      const Pgno from = std::max(q.first, r.end());
      kept.push_back(Run{from, q.end() - from});
    }
  }
  prefetch_.swap(kept);
  ahead_cv_.wait(lk, [&] { return !overlaps(ahead_busy_) && !overlaps(prefetch_busy_); });
}

void FaultService::ServeAhead(uint8_t* buf) {
  Run r, w;
  {
    std::lock_guard lk(ahead_mu_);
    // A fault's read-ahead first: the program waits on it. One prefetch
    // window at a time, so the other threads stay free for faults.
    if (ahead_posted_.count != 0) {
      r = std::exchange(ahead_posted_, Run{});
      ahead_busy_ = r;
    } else if (prefetch_busy_.count == 0 && !prefetch_.empty()) {
      Run& q = prefetch_.front();
      w = Run{q.first, std::min(q.count, MaxWindow())};
      q = Run{w.end(), q.count - w.count};
      if (q.count == 0) prefetch_.pop_front();
      prefetch_busy_ = w;
    }
  }
  const bool took_ahead = r.count != 0;
  if (r.count != 0) {
    // The windows after this one start their disk reads now, so the reads
    // of a sequence overlap rather than wait for each other.
    c_.source->WillNeed(r.end(), kWillNeedWindows * MaxWindow());
    r = Unplaced(r);
  }
  if (r.count != 0) {
    const uint64_t m = c_.map_stored ? MapStored(r.first, r.count) : 0;
    if (m < r.count) CopyAhead(Run{r.first + m, r.count - m}, buf);
  }
  if (w.count != 0) PrefetchWindow(w, buf);
  bool more;
  {
    std::lock_guard lk(ahead_mu_);
    if (took_ahead) ahead_busy_ = Run{};  // the others are another thread's
    if (w.count != 0) prefetch_busy_ = Run{};
    // The thread placing a window kicks when it is done: kicking while it
    // works would only spin an idle one.
    more = !prefetch_.empty() && prefetch_busy_.count == 0;
  }
  ahead_cv_.notify_all();
  if (more) KickAhead();  // the next window, after the faults queued meanwhile
}

void FaultService::PrefetchWindow(Run w, uint8_t* buf) {
  const Pgno end = std::min(w.end(), Hwm());
  int retries = 0;
  for (Pgno at = w.first; at < end;) {
    Run u = Unplaced(Run{at, end - at});
    if (u.count == 0) return;
    const uint64_t room = Room();
    if (room == 0) {  // the budget is full: placing more would only evict
      std::lock_guard lk(ahead_mu_);
      prefetch_.clear();
      return;
    }
    u.count = std::min(u.count, room);
    const uint64_t m = c_.map_stored ? MapStored(u.first, u.count) : 0;
    // An eviction between the read and the install: read it again, a few times.
    if (m < u.count && !CopyAhead(Run{u.first + m, u.count - m}, buf) && ++retries < 3) continue;
    at = u.first + std::max(m, u.count);
  }
}

Run FaultService::Unplaced(Run r) const {
  Pgno from = r.first;
  while (from < r.end() && c_.installed->Test(from) && !c_.discarded->Test(from)) ++from;
  return from == r.end() ? Run{from, 0} : Run{from, RunEnd(from, r.end() - from) - from};
}

bool FaultService::CopyAhead(Run r, uint8_t* buf) {
  r = Unplaced(r);
  if (r.count == 0) return true;
  const uint64_t gen = Gen();
  // An error is left to the fault that needs the page: it reports it.
  if (!c_.source->ReadRun(r.first, static_cast<uint32_t>(r.count), buf, nullptr).ok()) return true;
  std::shared_lock lk(*c_.install_mu);
  if (Gen() != gen) return false;  // pages of it may have been evicted, and written, since the read
  // Discarded or mapped since the read: those pages are not placed.
  r.count = PlaceableEnd(r.first, r.end()) - r.first;
  if (r.count == 0) return true;
  pages_fetched_.fetch_add(r.count, std::memory_order_relaxed);
  Install(r.first, r.count, buf, false, r.first);
  return true;
}

Pgno FaultService::PlaceableEnd(Pgno first, Pgno end) const {
  return c_.mapped->NextSet(first, c_.discarded->NextSet(first, end));
}

void FaultService::ServeMissing(Pgno p, bool write, uint8_t* buf) {
  if (p >= Hwm()) {  // fresh page (registered so in sync-WP mode, or by eviction)
    std::shared_lock lk(*c_.install_mu);
    Install(p, 1, kZeroPage, write, p);
    return;
  }
  AwaitAhead(p);
  if (c_.mapped->Test(p)) {  // mapped since this fault was queued
    Wake(Addr(p), kPageSize);
    return;
  }
  // Placed meanwhile (read ahead, or by another thread): the copy of this
  // one page finds it there and wakes the faulter, or places it if it
  // never was. Not counted as fetched.
  const bool placed = c_.installed->Test(p) && !c_.discarded->Test(p);
  Run ahead{};
  Run r = placed ? Run{p, 1} : PlanRun(p, &ahead);
  // Posted first, so the next window is checked and mapped (or copied) on
  // the other core while this one is: the check reads every byte, and done
  // one window after the other it bounds a sequential reopen to one core.
  PostAhead(ahead);
  // Advised random: not a stored run mapped whole either.
  if (!placed && c_.map_stored && !c_.discarded->Test(p) && !Advised(c_.random, p)) {
    // Mapped, p's faulter is awake; the rest of the window, if any, goes
    // in as if read ahead.
    if (const uint64_t m = MapStored(p, r.count); m > 0) {
      if (m < r.count) CopyAhead(Run{p + m, r.count - m}, buf);
      return;
    }
  }
  if (!placed) r.count = RunEnd(p, r.count) - p;  // others may have placed pages of it since the plan
  const uint64_t gen = Gen();
  Status st = c_.discarded->Test(p) ? Status::Ok() : c_.source->ReadRun(r.first, static_cast<uint32_t>(r.count), buf, nullptr);
  if (!st.ok() && r.count > 1) {  // the fault needs one page, not the whole run
    r.count = 1;
    st = c_.source->ReadRun(p, 1, buf, nullptr);
  }
  if (!st.ok() && guarded_.load(std::memory_order_acquire)) {
    {
      std::lock_guard l(unserved_mu_);
      if (unserved_.ok()) unserved_ = st;  // names the page
    }
    std::shared_lock lk(*c_.install_mu);
    Install(p, 1, kZeroPage, write, p);
    return;
  }
  if (!st.ok()) {
    FailPage(p, st);
    return;
  }
  std::shared_lock lk(*c_.install_mu);
  if (Gen() != gen) {
    // An eviction ran since the read: a page of the run may have been
    // placed, written, committed and given back meanwhile, so the bytes
    // read may be older than the store's. Read again (evictions come at
    // most once a pause, so this ends).
    lk.unlock();
    ServeMissing(p, write, buf);
    return;
  }
  // Discard may have run since the read: such pages read as zeros now.
  if (c_.discarded->Test(p)) {
    Install(p, 1, kZeroPage, write, p);
    return;
  }
  if (c_.mapped->Test(p)) {  // by another thread meanwhile (which wakes it too)
    Wake(Addr(p), kPageSize);
    return;
  }
  r.count = PlaceableEnd(p + 1, r.end()) - p;
  if (!placed) pages_fetched_.fetch_add(r.count, std::memory_order_relaxed);  // before the copy wakes the faulter
  Install(p, r.count, buf, write, p);
}

void FaultService::Install(Pgno first, uint64_t count, const uint8_t* src, bool write, Pgno fault) {
  if (c_.evictor != nullptr) {
    // Counted and stamped before the copy wakes the faulter, so a page it
    // read counts as resident at once (advice dont-need right after evicts
    // it). No eviction sees the stamp early: it takes the install lock,
    // held here shared.
    if (write) written_installs_.fetch_add(1, std::memory_order_release);
    c_.evictor->Touch(Run{first, count}, c_.fetch_stamp->load(std::memory_order_acquire));
  }
  const uint64_t mode_rest = c_.tracker->CopyMode(false);
  const uint64_t mode_first = c_.tracker->CopyMode(write);
  if (mode_first == mode_rest) {
    CopyRange(first, count, src, mode_rest, fault);
  } else {  // the written page goes in writable and marked; the rest clean
    if (count > 1) CopyRange(first + 1, count - 1, src + kPageSize, mode_rest, fault);
    c_.tracker->MarkWritten(first);
    CopyRange(first, 1, src, mode_first, fault);
  }
  c_.installed->SetRun(Run{first, count});
  if (c_.evictor == nullptr) return;
  for (Pgno q = c_.evicted->NextSet(first, first + count); q < first + count;
       q = c_.evicted->NextSet(q + 1, first + count)) {
    c_.evicted->Clear(q);
    pages_refetched_.fetch_add(1, std::memory_order_relaxed);
  }
}

void FaultService::CopyRange(Pgno first, uint64_t count, const uint8_t* src, uint64_t mode, Pgno fault) {
  uint64_t done = 0;
  bool exists = false;
  bool by_page = false;  // after a failure, go on one page at a time
  while (done < count) {
    const uint64_t len = by_page ? 1 : count - done;
    int64_t n = uffd_copy(c_.uffd, Addr(first + done), src + done * kPageSize, len * kPageSize, mode);
    if (n > 0) {
      done += static_cast<uint64_t>(n) >> kPageShift;
    } else if (n == -EEXIST) {  // placed already (another thread): skip that page
      exists = true;
      ++done;
    } else if (n == -EAGAIN) {  // the mm is changing; try again
      continue;
    } else if (!by_page && len > 1) {
      // A run may span VMAs (mprotect mode splits them per page), which one
      // UFFDIO_COPY cannot cross.
      by_page = true;
    } else {
      PHEAP_LOG_ERROR("UFFDIO_COPY of page {} failed: errno {}", first + done, -n);
      ++done;
    }
  }
  // Whoever placed an existing page woke its waiters then; a faulter that
  // queued after that must still be woken.
  if (exists) Wake(Addr(fault), kPageSize);
}

void FaultService::Wake(uint64_t a, uint64_t len) const {
  uffd_wake(c_.uffd, a, len);
  if (c_.cold_uffd >= 0) uffd_wake(c_.cold_uffd, a, len);
}

uint64_t FaultService::MapStored(Pgno first, uint64_t count) {
  uint64_t done = 0;
  while (done < count && mapped_runs_.load(std::memory_order_relaxed) < c_.max_mapped_runs) {
    if (done > 0) {  // past pages the read-ahead placed meanwhile (not the first: that is the caller's)
      const Run u = Unplaced(Run{first + done, count - done});
      done = u.first - first;
      if (u.count == 0) break;
    }
    // A stored run is mapped whole, past the window if it goes on: a window
    // that ends inside it would leave a piece too short to map.
    const PageSource::StoredRun run =
        c_.source->LocateRun(first + done, std::max<uint64_t>(count - done, PageSource::kMaxReadRun));
    if (run.pages == 0) break;
    uint64_t n;
    {
      std::unique_lock lk(*c_.install_mu);
      n = MapRun(first + done, run);
    }
    os().close(run.fd);
    if (n != 0) {
      {  // a fault where the mapping ends continues the sequence
        std::lock_guard wl(window_mu_);
        last_end_ = std::max(last_end_, first + done + n);
      }
      uffd_wake(c_.uffd, Addr(first + done), n << kPageShift);
    }
    done += n;
    if (n < run.pages) break;
  }
  return done;
}

uint64_t FaultService::MapRun(Pgno first, const PageSource::StoredRun& run) {
  // Only the part still unplaced: since the run was located, another
  // thread may have placed pages of it, or Discard zeroed some.
  const Pgno end = c_.installed->NextSet(first, c_.discarded->NextSet(first, first + run.pages));
  const uint64_t n = end - first;
  if (n < PageSource::kMinMapRun) return 0;
  const uint64_t a = Addr(first), len = n << kPageShift;
  void* m = os().mmap(reinterpret_cast<void*>(a), len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, run.fd,
                      static_cast<off_t>(run.offset));
  if (MmapFailed(m)) {
    PHEAP_LOG_DEBUG("fault service: mapping pages {}..{} failed (errno {}); copying them", first, end,
                    MmapErrno(m));
    // A failed MAP_FIXED may have unmapped what was there: put back the
    // absent pages it was, served on fault as before.
    if (int r = c_.region->MapAbsent(a, len, c_.uffd); r < 0)
      LoseTracking(fmt::format("pages {}..{} could not be mapped again after a failed mapping ({})", first, end,
                               std::strerror(-r)));
    return 0;
  }
  // Populated before it is registered: in a range registered for
  // write-protect the kernel turns fault-around off and every page would
  // fault alone. A page the program writes meanwhile is caught below.
  os().madvise(m, len, MADV_POPULATE_READ);
  // From the protection on, a write is tracked. A page written in the
  // instant before it is the writer's own copy, no longer the file's: it
  // is marked written again (all of them, if the check itself fails).
  int r = uffd_register(c_.uffd, a, len, UFFDIO_REGISTER_MODE_WP, nullptr);
  if (r == 0) r = uffd_writeprotect(c_.uffd, a, len, UFFDIO_WRITEPROTECT_MODE_WP);
  if (r < 0) {
    LoseTracking(fmt::format("pages {}..{}, mapped from the store, could not be write-protected ({})", first, end,
                             std::strerror(-r)));
  } else if (!UnprotectCopied(a, len)) {
    uffd_writeprotect(c_.uffd, a, len, 0);
  }
  c_.installed->SetRun(Run{first, n});
  c_.mapped->SetRun(Run{first, n});
  mapped_runs_.fetch_add(1, std::memory_order_relaxed);
  pages_mapped_.fetch_add(n, std::memory_order_relaxed);
  return n;
}

bool FaultService::UnprotectCopied(uint64_t a, uint64_t len) {
  page_region vec[32];
  pm_scan_arg arg{};
  arg.start = a;
  arg.end = a + len;
  arg.vec = reinterpret_cast<uint64_t>(vec);
  arg.vec_len = 32;
  arg.category_mask = PAGE_IS_PRESENT | PAGE_IS_FILE;
  arg.category_inverted = PAGE_IS_FILE;  // present and not the file's
  arg.return_mask = PAGE_IS_PRESENT;
  while (arg.start < arg.end) {
    int n = pagemap_scan(c_.pagemap_fd, &arg);
    if (n < 0) return false;
    for (int i = 0; i < n; ++i)
      if (uffd_writeprotect(c_.uffd, vec[i].start, vec[i].end - vec[i].start, 0) < 0) return false;
    if (arg.walk_end <= arg.start) return false;
    arg.start = arg.walk_end;
  }
  return true;
}

void FaultService::LoseTracking(const std::string& what) {
  PHEAP_LOG_ERROR("{}: writes there may escape the dirty tracking, so this heap takes no more commits; "
                  "its last durable epoch stays intact: reopen it to go on",
                  what);
  if (c_.untracked != nullptr) c_.untracked->store(true, std::memory_order_release);
}

void FaultService::GuardReads(bool on) {
  if (on) {
    std::lock_guard l(unserved_mu_);
    unserved_ = Status::Ok();
  }
  guarded_.store(on, std::memory_order_release);
}

Status FaultService::Unserved() const {
  std::lock_guard l(unserved_mu_);
  return unserved_;
}

void FaultService::FailPage(Pgno p, const Status& why) {
  PHEAP_LOG_ERROR("page {} (address {:#x}) cannot be served: {}", p, Addr(p), why.ToString());
  if (c_.poison) {
    int64_t r = uffd_poison(c_.uffd, Addr(p), kPageSize, 0);
    if (r > 0) {
      PHEAP_LOG_ERROR("page {} poisoned: the thread touching it gets SIGBUS", p);
      return;
    }
    PHEAP_LOG_ERROR("UFFDIO_POISON of page {} failed: errno {}", p, -r);
  }
  PHEAP_LOG_ERROR("page {} left unserved: the thread touching it stays blocked", p);
}

}  // namespace pheap
