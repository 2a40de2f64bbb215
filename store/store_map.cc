// LocateRun: runs of stored pages a pager may map instead of copying.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "base/log.h"
#include "base/os.h"
#include "store/page_store_impl.h"

namespace pheap {

using namespace logfmt;

namespace {

// File f mapped shared and read-only, whole, or null if it cannot be.
const uint8_t* View(LogFile* f) {
  if (const uint8_t* v = f->view.load(std::memory_order_acquire); v != nullptr) return v;
  std::lock_guard lk(f->view_mu);
  if (const uint8_t* v = f->view.load(std::memory_order_relaxed); v != nullptr) return v;
  struct stat st {};
  if (::fstat(f->fd, &st) != 0 || st.st_size <= 0) return nullptr;
  const auto bytes = static_cast<uint64_t>(st.st_size);
  void* p = os().mmap(nullptr, bytes, PROT_READ, MAP_SHARED, f->fd, 0);
  if (MmapFailed(p)) {
    PHEAP_LOG_DEBUG("cannot map {} to check its pages in place (errno {}); its pages are copied", f->path,
                    MmapErrno(p));
    return nullptr;
  }
  f->view_bytes = bytes;
  f->view.store(static_cast<const uint8_t*>(p), std::memory_order_release);
  return static_cast<const uint8_t*>(p);
}

}  // namespace

PageSource::StoredRun PageStore::Impl::LocateRun(Pgno first, uint64_t count) {
  std::shared_lock lock(mu_);
  const Pgno stored = std::min<Pgno>(image_.hwm, index_.size());
  if (first >= stored || index_[first].state != Slot::kPage) return {};
  const Slot& s0 = index_[first];
  if (active_ != nullptr && s0.file == active_->info.number) return {};
  uint64_t n = 1;
  while (n < count && first + n < stored) {
    const Slot& s = index_[first + n];
    if (s.state != Slot::kPage || s.file != s0.file || s.offset != s0.offset + n * kPageSize) break;
    ++n;
  }
  if (n < kMinMapRun) return {};
  LogFile* f = files_.at(s0.file).get();
  const uint8_t* view = View(f);
  if (view == nullptr || s0.offset + n * kPageSize > f->view_bytes) return {};
  // Checked where they lie, through the page cache, with no copy: the run
  // ends before a damaged page, which the copy path then reports.
  auto* src = const_cast<uint8_t*>(view + s0.offset);
  os().madvise(src, n * kPageSize, MADV_POPULATE_READ);  // one call, not a fault per 16 pages
  uint64_t good = 0;
  while (good < n && PageChecksum(src + good * kPageSize) == index_[first + good].checksum) ++good;
  // The view's entries go again, so the pages count once in RSS: in
  // batches, since each zap of them interrupts the other core to flush
  // its TLB (about a third of the reopen's speed when done per run).
  constexpr uint64_t kViewResidentMax = uint64_t{32} << 20;
  if (f->view_resident.fetch_add(n * kPageSize, std::memory_order_relaxed) + n * kPageSize >= kViewResidentMax) {
    f->view_resident.store(0, std::memory_order_relaxed);
    os().madvise(const_cast<uint8_t*>(view), f->view_bytes, MADV_DONTNEED);
  }
  if (good < kMinMapRun) return {};
  // The caller's own descriptor: compaction may close and delete the file
  // once this returns; a mapping keeps it alive.
  int fd = ::fcntl(f->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return {};
  return {fd, s0.offset, good};
}

}  // namespace pheap
