#include "pager/fault_around.h"

#include <link.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "base/os.h"
#include "base/types.h"
#include "pager/uffd.h"

namespace pheap {

int ReadOnlySegmentsOf(const void* addr, MappedRange* out, int max) {
  struct Walk {
    uintptr_t addr;
    MappedRange* out;
    int max;
    int found;
  } walk{reinterpret_cast<uintptr_t>(addr), out, max, 0};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) -> int {
        auto* w = static_cast<Walk*>(arg);
        bool contains = false;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          contains |= ph.p_type == PT_LOAD && w->addr - (info->dlpi_addr + ph.p_vaddr) < ph.p_memsz;
        }
        if (!contains) return 0;
        for (int i = 0; i < info->dlpi_phnum && w->found < w->max; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W) != 0) continue;
          const uint64_t start = (info->dlpi_addr + ph.p_vaddr) & ~(kPageSize - 1);
          const uint64_t end = (info->dlpi_addr + ph.p_vaddr + ph.p_memsz + kPageSize - 1) & ~(kPageSize - 1);
          w->out[w->found++] = {start, end - start};
        }
        return 1;
      },
      &walk);
  return walk.found;
}

Result<std::unique_ptr<FaultAroundOff>> FaultAroundOff::Open() {
  // No fault is ever raised in these ranges, so a user-mode-only
  // userfaultfd, which any user may create, serves as well as a full one.
  bool via_dev = false;
  int fd = uffd_open(&via_dev);
  if (fd < 0) {
    const int full = fd;
    fd = uffd_open_user_mode_only();
    if (fd < 0) return Status::Unsupported(fmt::format("no userfaultfd ({})", std::strerror(-full)));
  }
  if (int r = uffd_api(fd, UFFD_FEATURE_WP_ASYNC, nullptr, nullptr); r < 0) {
    CloseOwnFd(fd);
    return Status::Unsupported(fmt::format("no asynchronous userfaultfd write-protect (UFFDIO_API: errno {})", -r));
  }
  return std::unique_ptr<FaultAroundOff>(new FaultAroundOff(fd));
}

FaultAroundOff::~FaultAroundOff() { CloseOwnFd(fd_); }

Status FaultAroundOff::Add(MappedRange r) {
  if (int e = uffd_register(fd_, r.start, r.len, UFFDIO_REGISTER_MODE_WP, nullptr); e < 0)
    return Status::FromErrno(fmt::format("UFFDIO_REGISTER (write-protect) of [{:#x}, {:#x})", r.start, r.start + r.len),
                             -e);
  return Status::Ok();
}

Status FaultAroundOff::Remove(MappedRange r) {
  if (int e = uffd_unregister(fd_, r.start, r.len); e < 0)
    return Status::FromErrno(fmt::format("UFFDIO_UNREGISTER of [{:#x}, {:#x})", r.start, r.start + r.len), -e);
  return Status::Ok();
}

}  // namespace pheap
