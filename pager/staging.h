// Where a commit's pages wait between the cut and the sink: a 4 KiB-aligned
// page buffer and the matching page numbers, reserved once at the region's
// size (MAP_NORESERVE: only what a commit fills is backed) so the cut never
// allocates while threads are paused. Buffers are reused, already faulted
// in, so a cut does not pay first-touch costs inside the pause.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "base/status.h"
#include "base/types.h"

namespace pheap {

class StagingBuffer {
 public:
  // Pages touched in all the process's staging buffers now: memory a
  // budget (PagerOptions::memory_max) counts besides the region's.
  static uint64_t ResidentPages();
  static Result<std::unique_ptr<StagingBuffer>> Reserve(uint64_t max_pages);
  ~StagingBuffer();
  StagingBuffer(const StagingBuffer&) = delete;
  StagingBuffer& operator=(const StagingBuffer&) = delete;

  // Appends a copy of `count` contiguous pages starting at `src` (page `first`).
  void Append(Pgno first, uint64_t count, const uint8_t* src);
  // Overwrites slots [slot, slot + count) with fresh copies from `src`.
  void Refresh(uint64_t slot, uint64_t count, const uint8_t* src);
  void Clear() { count_ = 0; }
  uint64_t count() const { return count_; }
  uint64_t bytes() const { return count_ * kPageSize; }
  const uint8_t* data() const { return data_; }
  const Pgno* pgnos() const { return pgnos_; }
  // Faults in the first `pages` slots (at most the reservation) with one
  // madvise, so a cut filling them inside the pause copies into memory that
  // is already there (a fresh page costs several times a warm one to fault
  // and fill). Best effort: a kernel without
  // MADV_POPULATE_WRITE (before 5.14) leaves the faults to the copy.
  void Prefault(uint64_t pages);
  // Returns memory beyond `keep_pages` to the OS.
  void Trim(uint64_t keep_pages);
  uint64_t touched_pages() const { return touched_; }

 private:
  StagingBuffer(uint8_t* data, Pgno* pgnos, uint64_t max_pages)
      : data_(data), pgnos_(pgnos), max_pages_(max_pages) {}
  uint8_t* data_;
  Pgno* pgnos_;
  uint64_t max_pages_;
  uint64_t count_ = 0;
  uint64_t touched_ = 0;  // high-water of pages ever filled
};

// A free list of buffers, so steady commits reuse warm memory.
class StagingPool {
 public:
  explicit StagingPool(uint64_t max_pages) : max_pages_(max_pages) {}
  Result<std::unique_ptr<StagingBuffer>> Get();
  // Keeps at most two buffers, trimmed so that together they hold at most
  // `keep_bytes` (a budget counts what they hold).
  void Put(std::unique_ptr<StagingBuffer> b, uint64_t keep_bytes);

 private:
  uint64_t max_pages_;
  std::mutex mu_;
  std::vector<std::unique_ptr<StagingBuffer>> free_;
};

}  // namespace pheap
