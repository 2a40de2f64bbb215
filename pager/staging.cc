#include "pager/staging.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <fmt/format.h>

#include "base/os.h"

namespace pheap {
namespace {

// Pages touched in every staging buffer of the process (ResidentPages).
std::atomic<uint64_t> g_touched{0};

void* MapReserve(uint64_t bytes) {
  return os().mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
}

}  // namespace

Result<std::unique_ptr<StagingBuffer>> StagingBuffer::Reserve(uint64_t max_pages) {
  void* data = MapReserve(max_pages * kPageSize);
  if (MmapFailed(data))
    return Status::FromErrno(fmt::format("reserving {} MiB of commit staging", max_pages >> 8), MmapErrno(data));
  void* pgnos = MapReserve(max_pages * sizeof(Pgno));
  if (MmapFailed(pgnos)) {
    os().munmap(data, max_pages * kPageSize);
    return Status::FromErrno("reserving the commit staging index", MmapErrno(pgnos));
  }
  return std::unique_ptr<StagingBuffer>(
      new StagingBuffer(static_cast<uint8_t*>(data), static_cast<Pgno*>(pgnos), max_pages));
}

uint64_t StagingBuffer::ResidentPages() { return g_touched.load(std::memory_order_relaxed); }

StagingBuffer::~StagingBuffer() {
  g_touched.fetch_sub(touched_, std::memory_order_relaxed);
  os().munmap(data_, max_pages_ * kPageSize);
  os().munmap(pgnos_, max_pages_ * sizeof(Pgno));
}

void StagingBuffer::Append(Pgno first, uint64_t count, const uint8_t* src) {
  std::memcpy(data_ + count_ * kPageSize, src, count * kPageSize);
  for (uint64_t i = 0; i < count; ++i) pgnos_[count_ + i] = first + i;
  count_ += count;
  if (count_ > touched_) {
    g_touched.fetch_add(count_ - touched_, std::memory_order_relaxed);
    touched_ = count_;
  }
}

void StagingBuffer::Refresh(uint64_t slot, uint64_t count, const uint8_t* src) {
  std::memcpy(data_ + slot * kPageSize, src, count * kPageSize);
}

void StagingBuffer::Prefault(uint64_t pages) {
  pages = std::min(pages, max_pages_);
  if (pages <= touched_) return;
  if (os().madvise(data_ + touched_ * kPageSize, (pages - touched_) * kPageSize, MADV_POPULATE_WRITE) == 0) {
    g_touched.fetch_add(pages - touched_, std::memory_order_relaxed);
    touched_ = pages;
  }
}

void StagingBuffer::Trim(uint64_t keep_pages) {
  if (touched_ <= keep_pages) return;
  os().madvise(data_ + keep_pages * kPageSize, (touched_ - keep_pages) * kPageSize, MADV_DONTNEED);
  g_touched.fetch_sub(touched_ - keep_pages, std::memory_order_relaxed);
  touched_ = keep_pages;
}

Result<std::unique_ptr<StagingBuffer>> StagingPool::Get() {
  {
    std::lock_guard lk(mu_);
    if (!free_.empty()) {
      auto b = std::move(free_.back());
      free_.pop_back();
      b->Clear();
      return b;
    }
  }
  return StagingBuffer::Reserve(max_pages_);
}

void StagingPool::Put(std::unique_ptr<StagingBuffer> b, uint64_t keep_bytes) {
  std::lock_guard lk(mu_);
  if (free_.size() >= 2) return;  // drop it: unmapped by its destructor
  uint64_t keep = keep_bytes / kPageSize;
  for (const auto& f : free_) keep -= std::min(keep, f->touched_pages());
  b->Trim(keep);
  free_.push_back(std::move(b));
}

}  // namespace pheap
