#include "pager/region.h"

#include <sys/mman.h>

#include <fmt/format.h>

#include "base/os.h"
#include "base/types.h"
#include "pager/uffd.h"

namespace pheap {

Result<Region> Region::Map(uint64_t base, uint64_t size) {
  if (size == 0 || size % kPageSize != 0 || size > kMaxRegionSize)
    return Status::InvalidArgument(fmt::format(
        "region size {:#x} must be a non-zero multiple of 4 KiB, at most {:#x}", size, kMaxRegionSize));
  if (base == 0 || base % kPageSize != 0 || base > kUserAddressLimit || size > kUserAddressLimit - base)
    return Status::InvalidArgument(fmt::format(
        "region [{:#x}, {:#x}) must start 4 KiB aligned above 0 and end at or below {:#x}", base,
        base + size, kUserAddressLimit));
  void* want = reinterpret_cast<void*>(base);
  void* p = os().mmap(want, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat it as a hint.
  if (!MmapFailed(p) && p != want) {
    os().munmap(p, size);
    p = reinterpret_cast<void*>(static_cast<intptr_t>(-EEXIST));
  }
  if (MmapFailed(p)) {
    int err = MmapErrno(p);
    if (err == EEXIST)
      return Status::Busy(fmt::format(
          "heap region [{:#x}, {:#x}) overlaps an existing mapping of this process; give the heap "
          "another address with config `base=ADDR`, or close what holds that range",
          base, base + size));
    return Status::FromErrno(fmt::format("mmap of heap region [{:#x}, {:#x})", base, base + size), err);
  }
  return Region(base, size);
}

int Region::MapZeros(uint64_t addr, uint64_t len) const {
  void* m = os().mmap(reinterpret_cast<void*>(addr), len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  return MmapFailed(m) ? -MmapErrno(m) : 0;
}

int Region::MapAbsent(uint64_t addr, uint64_t len, int uffd, bool missing) const {
  if (int e = MapZeros(addr, len); e < 0) return e;
  return uffd_register(uffd, addr, len, (missing ? UFFDIO_REGISTER_MODE_MISSING : 0) | UFFDIO_REGISTER_MODE_WP,
                       nullptr);
}

Region::~Region() {
  if (size_ != 0) os().munmap(data(), size_);
}

Region& Region::operator=(Region&& o) noexcept {
  if (this != &o) {
    if (size_ != 0) os().munmap(data(), size_);
    base_ = o.base_;
    size_ = o.size_;
    o.base_ = 0;
    o.size_ = 0;
  }
  return *this;
}

}  // namespace pheap
