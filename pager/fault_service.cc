#include "pager/fault_service.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <latch>

#include "base/log.h"
#include "base/os.h"
#include "pager/safepoint.h"
#include "pager/uffd.h"

namespace pheap {
namespace {

alignas(4096) const uint8_t kZeroPage[kPageSize] = {};
constexpr size_t kBufBytes = size_t{PageSource::kMaxReadRun} * kPageSize;

}  // namespace

Status FaultService::Start() {
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return Status::FromErrno("eventfd for the fault service", errno);
  // Return only once every thread is exempt from the commit safepoint: a
  // cut that paused a fault thread could block on the very fault it needs.
  const int n = std::max(1, c_.threads);
  std::latch exempt(n);
  for (int i = 0; i < n; ++i)
    threads_.emplace_back([this, &exempt] {
      SafepointExempt();
      exempt.count_down();
      Loop();
    });
  exempt.wait();
  return Status::Ok();
}

void FaultService::Stop() {
  if (stop_fd_ < 0) return;
  uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) != sizeof(one)) PHEAP_LOG_ERROR("fault service: stop signal failed");
  for (auto& t : threads_) t.join();
  threads_.clear();
  close(stop_fd_);
  stop_fd_ = -1;
}

void FaultService::Loop() {
  void* mem = os().mmap(nullptr, kBufBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (MmapFailed(mem)) {
    PHEAP_LOG_ERROR("fault service: cannot map its 4 MiB buffer (errno {}); thread exits", MmapErrno(mem));
    SafepointUnexempt();
    return;
  }
  auto* buf = static_cast<uint8_t*>(mem);
  pollfd fds[2] = {{c_.uffd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  for (;;) {
    int r = poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { PHEAP_LOG_ERROR("fault service: poll failed, errno {}", errno); break; }
    if (fds[1].revents != 0) break;
    if ((fds[0].revents & (POLLERR | POLLHUP)) != 0) break;
    uffd_msg msgs[16];
    // read(2) of a userfaultfd: not a file or memory call of pheap::os().
    ssize_t n = read(c_.uffd, msgs, sizeof(msgs));
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;  // another thread took it
      PHEAP_LOG_ERROR("fault service: read of userfaultfd failed, errno {}", errno);
      break;
    }
    for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) Serve(msgs[i], buf);
  }
  os().munmap(mem, kBufBytes);
  SafepointUnexempt();
}

void FaultService::Serve(const uffd_msg& m, uint8_t* buf) {
  if (m.event != UFFD_EVENT_PAGEFAULT) {
    PHEAP_LOG_WARN("fault service: unexpected userfaultfd event {}", m.event);
    return;
  }
  const Pgno p = (m.arg.pagefault.address - c_.region->base()) >> kPageShift;
  const uint64_t flags = m.arg.pagefault.flags;
  if ((flags & UFFD_PAGEFAULT_FLAG_WP) != 0) {
    std::shared_lock lk(*c_.install_mu);
    c_.tracker->OnWriteFault(p);
    return;
  }
  faults_.fetch_add(1, std::memory_order_relaxed);  // counted before the faulter wakes
  ServeMissing(p, (flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0, buf);
}

Run FaultService::PlanRun(Pgno p) {
  const uint64_t max_pages = std::clamp<uint64_t>(c_.prefetch_max >> kPageShift, 1, PageSource::kMaxReadRun);
  uint64_t window;
  {
    std::lock_guard lk(window_mu_);
    const bool sequential = p > last_first_ && p <= last_end_;
    window_pages_ = sequential ? std::min(window_pages_ * 2, max_pages)
                               : std::min(kInitialWindow >> kPageShift, max_pages);
    window = window_pages_;
    last_first_ = p;
    last_end_ = p + window;
  }
  Pgno end = std::min<Pgno>(p + window, c_.hwm);
  end = c_.installed->NextSet(p + 1, end);
  end = c_.discarded->NextSet(p + 1, end);
  return Run{p, end - p};
}

void FaultService::ServeMissing(Pgno p, bool write, uint8_t* buf) {
  if (p >= c_.hwm) {  // fresh page (only registered so in sync-WP mode)
    std::shared_lock lk(*c_.install_mu);
    Install(p, 1, kZeroPage, write, p);
    return;
  }
  Run r = PlanRun(p);
  Status st = c_.discarded->Test(p) ? Status::Ok() : c_.source->ReadRun(r.first, static_cast<uint32_t>(r.count), buf, nullptr);
  if (!st.ok() && r.count > 1) {  // the fault needs one page, not the whole run
    r.count = 1;
    st = c_.source->ReadRun(p, 1, buf, nullptr);
  }
  if (!st.ok()) {
    FailPage(p, st);
    return;
  }
  std::shared_lock lk(*c_.install_mu);
  // Discard may have run since the read: such pages read as zeros now.
  if (c_.discarded->Test(p)) {
    Install(p, 1, kZeroPage, write, p);
    return;
  }
  r.count = c_.discarded->NextSet(p + 1, r.end()) - p;
  pages_fetched_.fetch_add(r.count, std::memory_order_relaxed);  // before the copy wakes the faulter
  Install(p, r.count, buf, write, p);
}

void FaultService::Install(Pgno first, uint64_t count, const uint8_t* src, bool write, Pgno fault) {
  const uint64_t mode_rest = c_.tracker->CopyMode(false);
  const uint64_t mode_first = c_.tracker->CopyMode(write);
  if (mode_first == mode_rest) {
    CopyRange(first, count, src, mode_rest, fault);
  } else {  // the written page goes in writable and marked; the rest clean
    if (count > 1) CopyRange(first + 1, count - 1, src + kPageSize, mode_rest, fault);
    c_.tracker->MarkWritten(first);
    CopyRange(first, 1, src, mode_first, fault);
  }
  if (first < c_.hwm) c_.installed->SetRun(Run{first, std::min<uint64_t>(count, c_.hwm - first)});
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
  if (exists) uffd_wake(c_.uffd, Addr(fault), kPageSize);
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
