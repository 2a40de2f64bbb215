// The fixed-address mapping that holds one heap: anonymous, private, never
// placed anywhere but its recorded base, so raw pointers stay valid.
#pragma once

#include <cstdint>

#include "base/status.h"

namespace pheap {

class Region {
 public:
  // Maps [base, base + size) with MAP_FIXED_NOREPLACE | MAP_NORESERVE.
  // Errors: kInvalidArgument for a base or size that breaks the region
  // invariants (base/types.h); kBusy, naming the range, when any part of it
  // is already mapped.
  static Result<Region> Map(uint64_t base, uint64_t size);

  Region() = default;
  ~Region();
  Region(Region&& o) noexcept : base_(o.base_), size_(o.size_) { o.base_ = 0; o.size_ = 0; }
  Region& operator=(Region&& o) noexcept;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  uint8_t* data() const { return reinterpret_cast<uint8_t*>(base_); }
  uint64_t base() const { return base_; }
  uint64_t size() const { return size_; }
  uint64_t pages() const { return size_ >> 12; }
  bool contains(uint64_t addr) const { return addr - base_ < size_; }

  // Puts absent anonymous memory in place of whatever is mapped at
  // [addr, addr + len) (pages mapped from the store) and registers it on
  // uffd for missing and write-protect faults, as the region is at open in
  // async-wp mode (for write-protect only when `missing` is false, as in
  // async-wp-user mode). Returns 0 or -errno; on an error the range may be
  // left unmapped or unregistered, so the caller stops trusting the tracking.
  // REQUIRES: the range lies inside the region, page aligned.
  int MapAbsent(uint64_t addr, uint64_t len, int uffd, bool missing = true) const;
  // Puts absent anonymous memory (zeros on touch) in place of whatever is
  // mapped at [addr, addr + len), registered nowhere. Returns 0 or -errno.
  // REQUIRES: as MapAbsent.
  int MapZeros(uint64_t addr, uint64_t len) const;

 private:
  Region(uint64_t base, uint64_t size) : base_(base), size_(size) {}
  uint64_t base_ = 0;
  uint64_t size_ = 0;
};

}  // namespace pheap
