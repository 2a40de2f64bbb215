#include "base/os.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>

namespace pheap {
namespace {

inline int Ret(long r) { return r < 0 ? -errno : static_cast<int>(r); }
inline ssize_t RetS(ssize_t r) { return r < 0 ? -errno : r; }

// One ring per thread: commits of a heap come from its committer thread, and
// a ring is cheap next to a fdatasync. Created on first use.
struct ThreadRing {
  io_uring ring;
  bool ready = false;
  int init_err = 0;
  ThreadRing() {
    int r = io_uring_queue_init(64, &ring, 0);
    if (r < 0) {
      init_err = r;
      return;
    }
    // The ring's memory is mapped already; only the number it is entered by
    // moves.
    ring.ring_fd = ring.enter_ring_fd = HighFd(ring.ring_fd);
    ready = true;
  }
  ~ThreadRing() {
    if (!ready) return;
    ReleaseOwnFd(ring.ring_fd);  // liburing closes it
    io_uring_queue_exit(&ring);
  }
  ThreadRing(const ThreadRing&) = delete;
  ThreadRing& operator=(const ThreadRing&) = delete;
};

// Fallback when io_uring is unavailable (seccomp, old kernel): same effect.
int WritevDatasyncPlain(int fd, const struct iovec* iov, int iovcnt, off_t off) {
  for (int i = 0; i < iovcnt; ++i) {
    const char* p = static_cast<const char*>(iov[i].iov_base);
    size_t left = iov[i].iov_len;
    while (left > 0) {
      ssize_t w = ::pwrite(fd, p, left, off);
      if (w < 0) { if (errno == EINTR) continue; return -errno; }
      p += w; left -= static_cast<size_t>(w); off += w;
    }
  }
  return ::fdatasync(fd) < 0 ? -errno : 0;
}

Os g_real_os;
Os* g_os = &g_real_os;

}  // namespace

std::atomic<uint64_t> g_own_fds[kMaxOwnFd / 64];

bool IsOwnFd(int fd) {
  return fd >= 0 && fd < kMaxOwnFd &&
         (g_own_fds[fd / 64].load(std::memory_order_relaxed) & (uint64_t{1} << (fd % 64))) != 0;
}

int NextOwnFd(int fd) {
  for (int at = std::max(fd, 0); at < kMaxOwnFd; at = (at / 64 + 1) * 64) {
    const uint64_t bits = g_own_fds[at / 64].load(std::memory_order_relaxed) >> (at % 64);
    if (bits != 0) return at + std::countr_zero(bits);
  }
  return -1;
}

void ReleaseOwnFd(int fd) {
  if (fd >= 0 && fd < kMaxOwnFd) g_own_fds[fd / 64].fetch_and(~(uint64_t{1} << (fd % 64)), std::memory_order_relaxed);
}

int CloseOwnFd(int fd) {
  ReleaseOwnFd(fd);
  return Ret(::close(fd));
}

void ForgetOwnFds() {
  for (auto& word : g_own_fds) word.store(0, std::memory_order_relaxed);
}

int HighFd(int fd) {
  static const int floor = [] {
    rlimit rl{};
    rlim_t soft = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
    return static_cast<int>(std::clamp<rlim_t>(soft / 2, 3, 1024));
  }();
  if (fd < 0) return fd;
  if (fd < floor) {
    int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, floor);
    if (moved < 0 && fd <= 2) moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (moved >= 0) {
      ::close(fd);
      fd = moved;
    }
  }
  if (fd < kMaxOwnFd) g_own_fds[fd / 64].fetch_or(uint64_t{1} << (fd % 64), std::memory_order_relaxed);
  return fd;
}

int Os::open(const char* path, int flags, mode_t mode) { return HighFd(Ret(::open(path, flags | O_CLOEXEC, mode))); }
int Os::close(int fd) { return CloseOwnFd(fd); }
ssize_t Os::pread(int fd, void* buf, size_t n, off_t off) { return RetS(::pread(fd, buf, n, off)); }
ssize_t Os::pwrite(int fd, const void* buf, size_t n, off_t off) { return RetS(::pwrite(fd, buf, n, off)); }
ssize_t Os::pwritev(int fd, const struct iovec* iov, int iovcnt, off_t off) {
  return RetS(::pwritev(fd, iov, iovcnt, off));
}
int Os::fdatasync(int fd) { return Ret(::fdatasync(fd)); }
int Os::fsync(int fd) { return Ret(::fsync(fd)); }
int Os::ftruncate(int fd, off_t len) { return Ret(::ftruncate(fd, len)); }
int Os::fallocate(int fd, int mode, off_t off, off_t len) { return Ret(::fallocate(fd, mode, off, len)); }
int Os::rename(const char* from, const char* to) { return Ret(::rename(from, to)); }
int Os::unlink(const char* path) { return Ret(::unlink(path)); }
int Os::mkdir(const char* path, mode_t mode) { return Ret(::mkdir(path, mode)); }
int Os::flock(int fd, int op) { return Ret(::flock(fd, op)); }

int Os::writev_datasync(int fd, const struct iovec* iov, int iovcnt, off_t off) {
  thread_local ThreadRing tr;
  if (!tr.ready) return WritevDatasyncPlain(fd, iov, iovcnt, off);
  // IOV_MAX bounds one writev; split into several linked writes if needed.
  constexpr int kMaxIov = 1024;
  int done_iov = 0;
  off_t pos = off;
  size_t total = 0;
  int sqes = 0;
  while (done_iov < iovcnt) {
    int n = iovcnt - done_iov < kMaxIov ? iovcnt - done_iov : kMaxIov;
    io_uring_sqe* sqe = io_uring_get_sqe(&tr.ring);
    if (sqe == nullptr) {  // ring full: drain what is queued so far
      int r = WritevDatasyncPlain(fd, iov + done_iov, iovcnt - done_iov, pos);
      if (r < 0) return r;
      break;
    }
    io_uring_prep_writev(sqe, fd, iov + done_iov, static_cast<unsigned>(n), static_cast<__u64>(pos));
    io_uring_sqe_set_flags(sqe, IOSQE_IO_LINK);
    size_t bytes = 0;
    for (int i = 0; i < n; ++i) bytes += iov[done_iov + i].iov_len;
    sqe->user_data = bytes;
    pos += static_cast<off_t>(bytes);
    total += bytes;
    done_iov += n;
    ++sqes;
  }
  io_uring_sqe* fs = io_uring_get_sqe(&tr.ring);
  if (fs == nullptr) {
    io_uring_submit(&tr.ring);
    fs = io_uring_get_sqe(&tr.ring);
  }
  io_uring_prep_fsync(fs, fd, IORING_FSYNC_DATASYNC);
  fs->user_data = 0;
  ++sqes;
  // A signal ends the wait, not the writes: wait again (what the kernel
  // took is not submitted twice; liburing resubmits only what it left).
  int r = 0;
  do {
    r = io_uring_submit_and_wait(&tr.ring, static_cast<unsigned>(sqes));
  } while (r == -EINTR);
  if (r < 0) return r;
  int first_err = 0;
  bool short_write = false;
  for (int i = 0; i < sqes; ++i) {
    io_uring_cqe* cqe = nullptr;
    int w = 0;
    do {
      w = io_uring_wait_cqe(&tr.ring, &cqe);
    } while (w == -EINTR);
    if (w < 0) return w;
    if (cqe->res < 0 && first_err == 0 && cqe->res != -ECANCELED) first_err = cqe->res;
    if (cqe->user_data != 0 && cqe->res >= 0 && static_cast<__u64>(cqe->res) != cqe->user_data) short_write = true;
    io_uring_cqe_seen(&tr.ring, cqe);
  }
  if (first_err < 0) return first_err;
  // A short write cancels the linked fsync; redo the whole batch plainly.
  if (short_write) return WritevDatasyncPlain(fd, iov, iovcnt, off);
  (void)total;
  return 0;
}

void* Os::mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer takes a file mapped over memory for a write by the
  // mapping thread. The fault service maps stored pages so while the
  // faulting thread waits in the kernel, which wakes it: a hand-over the
  // tool cannot see, so it would report every later read as a race.
  if (fd >= 0 && (flags & MAP_FIXED) != 0) {
    long r = ::syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    return reinterpret_cast<void*>(r == -1 ? -static_cast<intptr_t>(errno) : r);
  }
#endif
  void* p = ::mmap(addr, len, prot, flags, fd, off);
  return p == MAP_FAILED ? reinterpret_cast<void*>(static_cast<intptr_t>(-errno)) : p;
}
int Os::munmap(void* addr, size_t len) { return Ret(::munmap(addr, len)); }
int Os::mprotect(void* addr, size_t len, int prot) { return Ret(::mprotect(addr, len, prot)); }
int Os::madvise(void* addr, size_t len, int advice) { return Ret(::madvise(addr, len, advice)); }
int Os::ioctl(int fd, unsigned long req, void* arg) { return Ret(::ioctl(fd, req, arg)); }
int Os::userfaultfd(int flags) {
#ifdef SYS_userfaultfd
  return HighFd(Ret(::syscall(SYS_userfaultfd, flags)));
#else
  (void)flags;
  return -ENOSYS;
#endif
}

int Os::fadvise(int fd, uint64_t off, uint64_t len, int advice) {
  return -::posix_fadvise(fd, static_cast<off_t>(off), static_cast<off_t>(len), advice);
}

int Os::cachestat(int fd, uint64_t off, uint64_t len, uint64_t* cached) {
  // The kernel's structs (linux/mman.h, 6.5); Debian 12's headers predate them.
  struct {
    uint64_t off, len;
  } range{off, len};
  struct {
    uint64_t cache, dirty, writeback, evicted, recently_evicted;
  } cs{};
#ifdef SYS_cachestat
  constexpr long kNr = SYS_cachestat;
#elif defined(__x86_64__) || defined(__aarch64__)
  constexpr long kNr = 451;  // one number on every architecture that has it
#else
  constexpr long kNr = -1;
#endif
  if (kNr < 0) return -ENOSYS;
  int r = Ret(::syscall(kNr, fd, &range, &cs, 0));
  if (r == 0) *cached = cs.cache;
  return r;
}

Os& os() { return *g_os; }
void SetOsForTesting(Os* o) { g_os = o != nullptr ? o : &g_real_os; }

}  // namespace pheap
