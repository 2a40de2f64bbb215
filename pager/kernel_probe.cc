#include "pager/kernel_probe.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <cstring>
#include <string>

#include "base/log.h"
#include "base/os.h"
#include "pager/uffd.h"

namespace pheap {
namespace {

std::string ErrText(const char* what, int neg_errno) {
  return std::string(what) + ": " + std::strerror(-neg_errno);
}

// Scratch anonymous mapping for the trial registrations.
struct Scratch {
  void* p = nullptr;
  Scratch() {
    p = os().mmap(nullptr, 2 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (MmapFailed(p)) p = nullptr;
  }
  ~Scratch() { if (p != nullptr) os().munmap(p, 2 * kPageSize); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  uint64_t addr() const { return reinterpret_cast<uint64_t>(p); }
};

// True if a fresh userfaultfd accepts exactly `want` (the kernel refuses
// feature bits it does not know with EINVAL: this checks our compat values).
bool ApiAccepts(uint64_t want) {
  bool via_dev = false;
  int fd = uffd_open(&via_dev);
  if (fd < 0) return false;
  uint64_t got = 0;
  bool ok = uffd_api(fd, want, &got, nullptr) == 0 && (got & want) == want;
  os().close(fd);
  return ok;
}

// The full userfaultfd is refused (vm.unprivileged_userfaultfd=0, no
// access to /dev/userfaultfd): whether one for user-mode faults only does
// asynchronous write-protect on anonymous memory.
bool UserModeWpAsyncWorks(const Scratch& s) {
  int fd = uffd_open_user_mode_only();
  if (fd < 0) return false;
  uint64_t got = 0, ioctls = 0;
  bool ok = uffd_api(fd, UFFD_FEATURE_WP_ASYNC, &got, nullptr) == 0 && (got & UFFD_FEATURE_WP_ASYNC) != 0 &&
            uffd_register(fd, s.addr(), 2 * kPageSize, UFFDIO_REGISTER_MODE_WP, &ioctls) == 0 &&
            (ioctls & (uint64_t{1} << _UFFDIO_WRITEPROTECT)) != 0;
  os().close(fd);
  return ok;
}

bool PagemapScanWorks(const Scratch& s) {
  int fd = os().open("/proc/self/pagemap", O_RDONLY, 0);
  if (fd < 0) return false;
  page_region vec[1];
  pm_scan_arg arg{};
  arg.start = s.addr();
  arg.end = s.addr() + 2 * kPageSize;
  arg.vec = reinterpret_cast<uint64_t>(vec);
  arg.vec_len = 1;
  arg.category_mask = PAGE_IS_PRESENT;
  arg.return_mask = PAGE_IS_PRESENT;
  int r = pagemap_scan(fd, &arg);
  os().close(fd);
  return r >= 0;
}

}  // namespace

KernelFeatures ProbeKernel() {
  KernelFeatures k;
  int fd = uffd_open(&k.via_dev);
  if (fd < 0) {
    k.why_not = ErrText("userfaultfd(2) and /dev/userfaultfd both refused", fd);
    Scratch s;
    k.user_wp_async = s.p != nullptr && UserModeWpAsyncWorks(s) && PagemapScanWorks(s);
    return k;
  }
  k.userfaultfd = true;
  uint64_t features = 0;
  int r = uffd_api(fd, 0, &features, nullptr);
  Scratch s;
  if (r < 0 || s.p == nullptr) {
    k.why_not = r < 0 ? ErrText("UFFDIO_API", r) : "scratch mmap failed";
    os().close(fd);
    return k;
  }
  uint64_t ioctls = 0;
  r = uffd_register(fd, s.addr(), 2 * kPageSize,
                    UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, &ioctls);
  k.wp = r >= 0 && (features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) != 0 &&
         (ioctls & (uint64_t{1} << _UFFDIO_WRITEPROTECT)) != 0;
  k.poison = r >= 0 && (features & UFFD_FEATURE_POISON) != 0 &&
             (ioctls & (uint64_t{1} << 0x08)) != 0;  // _UFFDIO_POISON
  os().close(fd);
  k.wp_async = k.wp && (features & UFFD_FEATURE_WP_ASYNC) != 0 && ApiAccepts(UFFD_FEATURE_WP_ASYNC);
  k.pagemap_scan = PagemapScanWorks(s);
  k.user_wp_async = k.wp_async && k.pagemap_scan;  // user-mode-only since 5.11, WP_ASYNC since 6.7
  if (!k.wp) k.why_not = "userfaultfd write-protect on anonymous memory (Linux 5.7+)";
  else if (!k.wp_async) k.why_not = "UFFD_FEATURE_WP_ASYNC (Linux 6.7+)";
  else if (!k.pagemap_scan) k.why_not = "PAGEMAP_SCAN on /proc/self/pagemap (Linux 6.7+)";
  return k;
}

bool CachedWpAsyncOnFiles() {
  static const bool ok = [] {
    int file = os().open("/proc/self/exe", O_RDONLY | O_CLOEXEC, 0);
    if (file < 0) return false;
    void* p = os().mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE, file, 0);
    os().close(file);
    if (MmapFailed(p)) return false;
    bool via_dev = false;
    int fd = uffd_open(&via_dev);
    if (fd < 0) fd = uffd_open_user_mode_only();
    const auto a = reinterpret_cast<uint64_t>(p);
    bool works = fd >= 0 && uffd_api(fd, UFFD_FEATURE_WP_ASYNC, nullptr, nullptr) == 0 &&
                 uffd_register(fd, a, kPageSize, UFFDIO_REGISTER_MODE_WP, nullptr) == 0 &&
                 uffd_writeprotect(fd, a, kPageSize, UFFDIO_WRITEPROTECT_MODE_WP) == 0;
    if (fd >= 0) os().close(fd);
    os().munmap(p, kPageSize);
    PHEAP_LOG_DEBUG("kernel probe: async write-protect on a file's private mapping: {}", works);
    return works;
  }();
  return ok;
}

const KernelFeatures& CachedKernelFeatures() {
  static const KernelFeatures k = [] {
    KernelFeatures f = ProbeKernel();
    PHEAP_LOG_DEBUG(
        "kernel probe: userfaultfd={}{} wp={} wp_async={} pagemap_scan={} poison={} "
        "user_wp_async={}{}{}",
        f.userfaultfd, f.via_dev ? " (via /dev/userfaultfd)" : "", f.wp, f.wp_async, f.pagemap_scan, f.poison,
        f.user_wp_async, f.why_not.empty() ? "" : "; lacking: ", f.why_not);
    return f;
  }();
  return k;
}

Result<TrackingMode> ChooseMode(const KernelFeatures& k, TrackingMode requested) {
  const bool async_ok = k.userfaultfd && k.wp && k.wp_async && k.pagemap_scan;
  const bool sync_ok = k.userfaultfd && k.wp;
  switch (requested) {
    case TrackingMode::kAuto:
      return async_ok          ? TrackingMode::kAsyncWp
             : sync_ok         ? TrackingMode::kSyncWp
             : k.user_wp_async ? TrackingMode::kAsyncWpUser
                               : TrackingMode::kMprotect;
    case TrackingMode::kAsyncWpUser:
      if (k.user_wp_async) return requested;
      return Status::Unsupported(
          "tracking mode 'async-wp-user' needs a user-mode-only userfaultfd with UFFD_FEATURE_WP_ASYNC and "
          "PAGEMAP_SCAN (Linux 6.7+), which this kernel lacks; use tracking=auto");
    case TrackingMode::kAsyncWp:
    case TrackingMode::kHybridWp:  // its cold userfaultfd must take the kernel's own faults: no user-mode-only
      if (async_ok) return requested;
      break;
    case TrackingMode::kSyncWp:
      if (sync_ok) return requested;
      break;
    case TrackingMode::kMprotect:
      return requested;
  }
  std::string lacking = !k.userfaultfd ? k.why_not
                        : !k.wp        ? std::string("userfaultfd write-protect on anonymous memory (Linux 5.7+)")
                        : !k.wp_async  ? std::string("UFFD_FEATURE_WP_ASYNC (Linux 6.7+)")
                                       : std::string("PAGEMAP_SCAN on /proc/self/pagemap (Linux 6.7+)");
  return Status::Unsupported(std::string("tracking mode '") + TrackingModeName(requested) +
                             "' needs " + lacking + ", which this kernel lacks; use tracking=auto");
}

}  // namespace pheap
