#include "pager/uffd.h"

#include <fcntl.h>

#include <cerrno>

#include "base/os.h"

namespace pheap {

int uffd_open(bool* via_dev) {
  constexpr int kFlags = O_CLOEXEC | O_NONBLOCK;  // kernel-mode faults too
  *via_dev = false;
  int fd = os().userfaultfd(kFlags);
  if (fd >= 0) return fd;
  int dev = os().open("/dev/userfaultfd", O_RDWR | O_CLOEXEC, 0);
  if (dev < 0) return fd;  // report the syscall's refusal, the primary path
  int r = os().ioctl(dev, USERFAULTFD_IOC_NEW, reinterpret_cast<void*>(static_cast<uintptr_t>(kFlags)));
  os().close(dev);
  if (r < 0) return r;
  *via_dev = true;
  return HighFd(r);
}

int uffd_open_user_mode_only() { return os().userfaultfd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY); }

int uffd_api(int fd, uint64_t want, uint64_t* features, uint64_t* ioctls) {
  uffdio_api a{};
  a.api = UFFD_API;
  a.features = want;
  int r = os().ioctl(fd, UFFDIO_API, &a);
  if (r < 0) return r;
  if (features != nullptr) *features = a.features;
  if (ioctls != nullptr) *ioctls = a.ioctls;
  return 0;
}

int uffd_register(int fd, uint64_t start, uint64_t len, uint64_t mode, uint64_t* ioctls) {
  uffdio_register reg{};
  reg.range = {start, len};
  reg.mode = mode;
  int r = os().ioctl(fd, UFFDIO_REGISTER, &reg);
  if (r >= 0 && ioctls != nullptr) *ioctls = reg.ioctls;
  return r;
}

int uffd_unregister(int fd, uint64_t start, uint64_t len) {
  uffdio_range range{start, len};
  return os().ioctl(fd, UFFDIO_UNREGISTER, &range);
}

int64_t uffd_copy(int fd, uint64_t dst, const void* src, uint64_t len, uint64_t mode) {
  uffdio_copy c{};
  c.dst = dst;
  c.src = reinterpret_cast<uint64_t>(src);
  c.len = len;
  c.mode = mode;
  int r = os().ioctl(fd, UFFDIO_COPY, &c);
  if (c.copy > 0) return c.copy;  // partial progress counts as progress
  return r < 0 ? r : (c.copy < 0 ? c.copy : -EIO);
}

int64_t uffd_zeropage(int fd, uint64_t start, uint64_t len, uint64_t mode) {
  uffdio_zeropage z{};
  z.range = {start, len};
  z.mode = mode;
  int r = os().ioctl(fd, UFFDIO_ZEROPAGE, &z);
  if (z.zeropage > 0) return z.zeropage;
  return r < 0 ? r : (z.zeropage < 0 ? z.zeropage : -EIO);
}

int uffd_wake(int fd, uint64_t start, uint64_t len) {
  uffdio_range range{start, len};
  return os().ioctl(fd, UFFDIO_WAKE, &range);
}

int uffd_writeprotect(int fd, uint64_t start, uint64_t len, uint64_t mode) {
  uffdio_writeprotect wp{};
  wp.range = {start, len};
  wp.mode = mode;
  return os().ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
}

int64_t uffd_poison(int fd, uint64_t start, uint64_t len, uint64_t mode) {
  uffdio_poison p{};
  p.range = {start, len};
  p.mode = mode;
  int r = os().ioctl(fd, UFFDIO_POISON, &p);
  if (p.updated > 0) return p.updated;
  return r < 0 ? r : (p.updated < 0 ? p.updated : -EIO);
}

int pagemap_scan(int pagemap_fd, pm_scan_arg* arg) {
  arg->size = sizeof(*arg);
  return os().ioctl(pagemap_fd, PAGEMAP_SCAN, arg);
}

}  // namespace pheap
