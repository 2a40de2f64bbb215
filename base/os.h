// The one interface through which pheap calls the kernel for files and
// memory mappings. Names follow the system calls, so each can be checked
// against its man page; every call returns the syscall's result, or -errno
// on failure (never sets errno for the caller).
//
// Tests replace the instance (SetOsForTesting) with one that fails the Nth
// call, drops writes that were never synced, or delays, which is how the
// store's and pager's error paths are exercised without a broken disk.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

namespace pheap {

class Os {
 public:
  virtual ~Os() = default;

  virtual int open(const char* path, int flags, mode_t mode);
  virtual int close(int fd);
  virtual ssize_t pread(int fd, void* buf, size_t n, off_t off);
  virtual ssize_t pwrite(int fd, const void* buf, size_t n, off_t off);
  virtual ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t off);
  virtual int fdatasync(int fd);
  virtual int fsync(int fd);
  virtual int ftruncate(int fd, off_t len);
  virtual int fallocate(int fd, int mode, off_t off, off_t len);
  virtual int rename(const char* from, const char* to);
  virtual int unlink(const char* path);
  virtual int mkdir(const char* path, mode_t mode);
  virtual int flock(int fd, int op);

  // Writes iov[0..iovcnt) contiguously at `off`, then fdatasync(fd), as one
  // io_uring submission (writes linked to the fsync with IOSQE_IO_LINK).
  // Returns 0 when every byte is written and synced, else -errno.
  virtual int writev_datasync(int fd, const struct iovec* iov, int iovcnt, off_t off);

  virtual void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off);  // MAP_FAILED + errno-free: returns (void*)-errno
  virtual int munmap(void* addr, size_t len);
  virtual int mprotect(void* addr, size_t len, int prot);
  virtual int madvise(void* addr, size_t len, int advice);
  virtual int ioctl(int fd, unsigned long req, void* arg);
  virtual int userfaultfd(int flags);  // the syscall; -ENOSYS where absent
  // cachestat(2) (Linux 6.5): how many of the pages of fd's [off, off+len)
  // the page cache holds, into *cached. -ENOSYS where absent.
  virtual int cachestat(int fd, uint64_t off, uint64_t len, uint64_t* cached);
  // posix_fadvise(2), as 0 or -errno like the calls above.
  virtual int fadvise(int fd, uint64_t off, uint64_t len, int advice);
};

// The instance in use. Never null.
Os& os();
// REQUIRES: no other thread is inside an Os call. Pass nullptr to restore
// the real one. The caller keeps ownership.
void SetOsForTesting(Os* o);

// Moves a descriptor pheap opened above a floor (half the soft
// RLIMIT_NOFILE, at most 1024, at least 3) and returns its new number; a
// negative `fd` (an error) is returned as is. A program started with stdin,
// stdout or stderr closed would otherwise find pheap's files at 0-2 and
// write its output into them; low numbers are also where programs look for
// descriptors of their own. Os::open and Os::userfaultfd return descriptors
// placed so; others pheap makes (eventfd, io_uring, ioctls that return one)
// pass through here. If no number at the floor is free it keeps `fd` where
// it is, unless that is 0-2. The result is one of pheap's own descriptors
// (below).
int HighFd(int fd);

// pheap's own descriptors: those HighFd returned, below kMaxOwnFd. The
// preload library refuses a program's close, close_range and closefrom of
// them as if they were not open (EBADF), so a daemon's close-every-fd loop
// cannot stop persistence. So pheap closes its own with CloseOwnFd (Os::close
// does), or releases them first when a library closes them (io_uring).
// Lock-free; any thread.
inline constexpr int kMaxOwnFd = 1 << 16;
bool IsOwnFd(int fd);
// The lowest own descriptor >= fd, or -1.
int NextOwnFd(int fd);
void ReleaseOwnFd(int fd);
int CloseOwnFd(int fd);  // ReleaseOwnFd, then close(2); 0 or -errno
// In a fork child that runs without persistence: its copies are the
// program's to close.
void ForgetOwnFds();

// mmap's error convention folded into ours: true if `p` is an error.
inline bool MmapFailed(void* p) {
  return reinterpret_cast<uintptr_t>(p) >= static_cast<uintptr_t>(-4095);
}
inline int MmapErrno(void* p) { return -static_cast<int>(reinterpret_cast<intptr_t>(p)); }

}  // namespace pheap
