// Opening a pager: map the region, get a userfaultfd, register it for the
// chosen tracking mode, start the fault service (or, in the modes that take
// no missing faults, place the stored image now).
#include <fcntl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "base/log.h"
#include "base/os.h"
#include "pager/kernel_probe.h"
#include "pager/pager_impl.h"
#include "pager/safepoint.h"
#include "pager/uffd.h"

namespace pheap {

Pager::Impl::Impl(const ImageInfo& image, PageSource* source, EpochSink* sink, const PagerOptions& options)
    : image_(image), source_(source), sink_(sink), options_(options) {
  durable_.store(image.epoch);
  next_epoch_ = image.epoch + 1;
  cut_hwm_ = image.hwm;
  served_hwm_.store(image.hwm);
  durable_hwm_.store(image.hwm);
}

namespace {

constexpr const char* kAllowUserfaultfd =
    "to allow userfaultfd, give the user access to /dev/userfaultfd (a group and a udev rule, e.g. "
    "KERNEL==\"userfaultfd\", GROUP=\"userfaultfd\", MODE=\"0660\") or set sysctl vm.unprivileged_userfaultfd=1";

Status MprotectRefused(const std::string& why) {
  return Status::Unsupported(fmt::format(
      "only mprotect tracking is available ({}), under which a system call that writes into the heap (read(2)) "
      "fails with EFAULT; {}; or force it with tracking=mprotect",
      why, kAllowUserfaultfd));
}

}  // namespace

Status Pager::Impl::OpenUffd(bool* absent) {
  bool via_dev = false;
  const bool user = mode_ == TrackingMode::kAsyncWpUser;
  int fd = user ? uffd_open_user_mode_only() : uffd_open(&via_dev);
  *absent = fd < 0;
  if (fd < 0)
    return Status::FromErrno(user ? "userfaultfd(2) for user-mode faults" : "userfaultfd(2) and /dev/userfaultfd", -fd);
  uffd_ = fd;
  const bool hybrid = mode_ == TrackingMode::kHybridWp;
  uint64_t want = mode_ == TrackingMode::kAsyncWp || user || hybrid ? UFFD_FEATURE_WP_ASYNC : 0;
  int r = uffd_api(uffd_, want, nullptr, nullptr);
  if (r < 0) return Status::FromErrno("UFFDIO_API on the heap's userfaultfd", -r);
  if (!hybrid) return Status::Ok();
  // The cold chunks' userfaultfd: synchronous, and not user-mode-only, since
  // the kernel's own writes (read(2) into the heap) must fault there too.
  fd = uffd_open(&via_dev);
  if (fd < 0) return Status::FromErrno("userfaultfd(2) for the heap's cold chunks", -fd);
  cold_uffd_ = fd;
  r = uffd_api(cold_uffd_, 0, nullptr, nullptr);
  if (r < 0) return Status::FromErrno("UFFDIO_API on the heap's cold-chunk userfaultfd", -r);
  return Status::Ok();
}

Status Pager::Impl::RegisterUffd() {
  const uint64_t base = region_.base();
  const uint64_t below = image_.hwm * kPageSize;
  auto reg = [&](uint64_t start, uint64_t len, uint64_t mode) -> Status {
    if (len == 0) return Status::Ok();
    int r = uffd_register(uffd_, start, len, mode, nullptr);
    if (r < 0)
      return Status::FromErrno(fmt::format("UFFDIO_REGISTER of [{:#x}, {:#x})", start, start + len), -r);
    return Status::Ok();
  };
  constexpr uint64_t kMissing = UFFDIO_REGISTER_MODE_MISSING;
  constexpr uint64_t kWp = UFFDIO_REGISTER_MODE_WP;
  switch (mode_) {
    case TrackingMode::kAsyncWp:  // fresh pages above hwm come from the kernel's zero-fill
      PHEAP_RETURN_IF_ERROR(reg(base, below, kMissing | kWp));
      return reg(base + below, region_.size() - below, kWp);
    case TrackingMode::kSyncWp:
      // Without WP_UNPOPULATED a first write to a never-populated page raises
      // no WP fault; registering MISSING everywhere makes it fault here, and
      // the page is installed writable and marked.
      return reg(base, region_.size(), kMissing | kWp);
    case TrackingMode::kAsyncWpUser: {
      // The image is in place (LoadEagerly): write-protect only, so no
      // fault ever reaches this process and the kernel's own writes (read(2)
      // into the heap) are resolved, and tracked, in the kernel. Pages never
      // populated need no protection: one populated later reads as written.
      PHEAP_RETURN_IF_ERROR(reg(base, region_.size(), kWp));
      if (below == 0) return Status::Ok();
      int r = uffd_writeprotect(uffd_, base, below, UFFDIO_WRITEPROTECT_MODE_WP);
      if (r < 0) return Status::FromErrno(fmt::format("UFFDIO_WRITEPROTECT of [{:#x}, {:#x})", base, base + below), -r);
      return Status::Ok();
    }
    case TrackingMode::kHybridWp:  // the tracker registers both userfaultfds, a chunk at a time
      return Status::Ok();
    default:
      return reg(base, below, kMissing);
  }
}

Result<uint64_t> Pager::Impl::MapEagerly(Pgno first, const PageSource::StoredRun& run) {
  const uint64_t n = std::min<uint64_t>(run.pages, image_.hwm - first);
  const uint64_t a = region_.base() + (first << kPageShift), len = n << kPageShift;
  void* m = os().mmap(reinterpret_cast<void*>(a), len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, run.fd,
                      static_cast<off_t>(run.offset));
  if (MmapFailed(m)) {
    PHEAP_LOG_DEBUG("mapping stored pages {}..{} failed (errno {}); copying them", first, first + n, MmapErrno(m));
    // A failed MAP_FIXED may have unmapped what was there.
    void* back = os().mmap(reinterpret_cast<void*>(a), len, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    if (MmapFailed(back))
      return Status::FromErrno(fmt::format("mmap of [{:#x}, {:#x}) after a failed mapping", a, a + len),
                               MmapErrno(back));
    return uint64_t{0};
  }
  // Populated now: a page the kernel would fault in later from the file is
  // no missing fault, but in a range registered for write-protect the
  // kernel maps a file's pages one fault at a time.
  os().madvise(m, len, MADV_POPULATE_READ);
  mapped_->SetRun(Run{first, n});
  return n;
}

Status Pager::Impl::LoadEagerly(bool map) {
  if (image_.hwm == 0) return Status::Ok();
  const Pgno hwm = image_.hwm;
  auto buf = StagingBuffer::Reserve(PageSource::kMaxReadRun);
  if (!buf.ok()) return buf.status();
  uint64_t present[PageSource::kMaxReadRun / 64];
  auto* out = const_cast<uint8_t*>((*buf)->data());
  // Each mapped run is a VMA: keep to an eighth of what the process may
  // have, as the fault service does.
  uint64_t max_runs = 65530 / 8, runs = 0;
  if (FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
    unsigned long long v = 0;
    if (std::fscanf(f, "%llu", &v) == 1 && v > 0) max_runs = v / 8;
    std::fclose(f);
  }
  auto locate = [&](Pgno p) {
    return map && runs < max_runs ? source_->LocateRun(p, PageSource::kMaxReadRun) : PageSource::StoredRun{};
  };
  PageSource::StoredRun run = locate(0);  // a mappable run at p, when run.pages > 0
  Status st;
  for (Pgno p = 0; p < hwm && st.ok();) {
    if (run.pages > 0) {
      auto n = MapEagerly(p, run);
      os().close(run.fd);
      run = {};
      if (!n.ok()) return n.status();
      if (*n == 0) map = false;  // copy this and the rest
      ++runs;
      eager_mapped_ += *n;
      p += *n;
      if (*n > 0) {
        if (p < hwm) run = locate(p);
        continue;
      }
    }
    // Copy up to the next page a run can be mapped from.
    const Pgno limit = std::min<Pgno>(hwm, p + PageSource::kMaxReadRun);
    Pgno q = p + 1;
    for (; q < limit && map; ++q)
      if ((run = locate(q)).pages > 0) break;
    if (!map) q = limit;
    const auto count = static_cast<uint32_t>(q - p);
    st = source_->ReadRun(p, count, out, present).Annotate("loading the heap image");
    for (uint32_t i = 0; st.ok() && i < count; ++i)
      if ((present[i / 64] >> (i % 64)) & 1) {
        std::memcpy(region_.data() + ((p + i) << kPageShift), out + uint64_t{i} * kPageSize, kPageSize);
        ++eager_copied_;
      }
    p = q;
  }
  if (run.pages > 0) os().close(run.fd);
  return st;
}

Status Pager::Impl::Start(TrackingMode mode) {
  mode_ = mode;
  auto region = Region::Map(image_.base, image_.size);
  if (!region.ok()) return region.status();
  region_ = std::move(region.value());
  if (image_.hwm > region_.pages())
    return Status::Corruption(fmt::format("image hwm {} lies beyond its region of {} pages", image_.hwm, region_.pages()));

  // mprotect with a budget too: eviction needs missing faults to bring
  // pages back (without a userfaultfd it runs without eviction).
  const bool needs_uffd = mode_ != TrackingMode::kMprotect || image_.hwm > 0 || options_.memory_max > 0;
  bool absent = false;
  if (needs_uffd) {
    Status st = OpenUffd(&absent);
    if (absent && options_.mode == TrackingMode::kAuto && mode_ != TrackingMode::kMprotect &&
        mode_ != TrackingMode::kAsyncWpUser && CachedKernelFeatures().user_wp_async) {
      // Refused since the probe (the process gave up a privilege): a
      // userfaultfd for user-mode faults only is still there for any user.
      PHEAP_LOG_INFO("userfaultfd refused at open ({}): tracking async-wp-user instead", st.ToString());
      mode_ = TrackingMode::kAsyncWpUser;
      st = OpenUffd(&absent);
    }
    if (absent && mode_ == TrackingMode::kMprotect && image_.hwm == 0) {
      // Asked for eviction only: the heap runs without it (SetUpEviction says so).
    } else if (absent && options_.mode == TrackingMode::kAuto) {
      if (!options_.auto_mprotect) return MprotectRefused(st.ToString());
      PHEAP_LOG_WARN("userfaultfd unavailable at open ({}): falling back to mprotect tracking", st.ToString());
      mode_ = TrackingMode::kMprotect;
    } else if (absent && mode_ != TrackingMode::kMprotect) {
      return Status::Unsupported(fmt::format("tracking mode '{}' needs a userfaultfd: {}", TrackingModeName(mode_),
                                             st.ToString()));
    } else if (!st.ok() && !absent) {
      return st;
    }
  }
  // Over the whole region (mapped lazily): eviction raises hwm.
  installed_ = std::make_unique<PageBitmap>(region_.pages());
  discarded_ = std::make_unique<PageBitmap>(region_.pages());
  mapped_ = std::make_unique<PageBitmap>(region_.pages());
  sequential_ = std::make_unique<PageBitmap>(region_.pages());
  random_ = std::make_unique<PageBitmap>(region_.pages());
  SetUpEviction();
  carry_ = std::make_unique<PageBitmap>(region_.pages());
  staging_pool_ = std::make_unique<StagingPool>(region_.pages());

  if (mode_ == TrackingMode::kMprotect && options_.mode == TrackingMode::kAuto)
    PHEAP_LOG_WARN(
        "tracking mprotect (no userfaultfd): a system call that writes into the heap, such as read(2) "
        "into a page not yet written since the last commit, fails with EFAULT; {}",
        kAllowUserfaultfd);
  if (uffd_ < 0 || mode_ == TrackingMode::kAsyncWpUser) {
    if (uffd_ < 0 && image_.hwm > 0)
      PHEAP_LOG_WARN(
          "no userfaultfd: loading all {} stored pages of the heap at open (slower open; give this "
          "process access to /dev/userfaultfd to load lazily)",
          image_.hwm);
    const bool map = mode_ == TrackingMode::kAsyncWpUser && options_.map_stored && CachedWpAsyncOnFiles();
    PHEAP_RETURN_IF_ERROR(LoadEagerly(map));
  }
  if (uffd_ >= 0) PHEAP_RETURN_IF_ERROR(RegisterUffd());

  switch (mode_) {
    case TrackingMode::kAsyncWp:
    case TrackingMode::kAsyncWpUser: {
      int fd = os().open("/proc/self/pagemap", O_RDONLY, 0);
      if (fd < 0) return Status::FromErrno("opening /proc/self/pagemap for dirty tracking", -fd);
      tracker_ = NewAsyncWpTracker(region_, fd);
      break;
    }
    case TrackingMode::kSyncWp:
      tracker_ = NewSyncWpTracker(region_, uffd_);
      break;
    case TrackingMode::kHybridWp: {
      int fd = os().open("/proc/self/pagemap", O_RDONLY, 0);
      if (fd < 0) return Status::FromErrno("opening /proc/self/pagemap for dirty tracking", -fd);
      HybridWpConfig hc;
      hc.hot_uffd = uffd_;
      hc.cold_uffd = cold_uffd_;
      hc.pagemap_fd = fd;
      hc.hwm = image_.hwm;
      hc.served_hwm = &served_hwm_;
      hc.installed = installed_.get();
      hc.discarded = discarded_.get();
      hc.evicted = evicted_.get();
      hc.idle_cuts = std::max<uint32_t>(1, options_.hybrid_idle_cuts);
      hc.warm_faults = std::max<uint32_t>(1, options_.hybrid_warm_faults);
      // Under a budget a missing fault places 4 KiB pages one at a time,
      // each counted, never a 2 MiB chunk the kernel fills by itself.
      hc.huge_pages = options_.hybrid_huge_pages && !evictor_;
      hc.missing_everywhere = evictor_ != nullptr;
      hc.untracked = &untracked_;
      auto t = NewHybridWpTracker(region_, hc);
      if (!t.ok()) return t.status();
      tracker_ = std::move(t.value());
      break;
    }
    default: {
      auto t = NewMprotectTracker(region_);
      if (!t.ok()) return t.status();
      tracker_ = std::move(t.value());
    }
  }
  drop_fresh_zeros_ = tracker_->ReportsUnwritten();
  if (uffd_ >= 0 && mode_ != TrackingMode::kAsyncWpUser) {  // which raises no fault to serve
    FaultServiceConfig fc;
    fc.uffd = uffd_;
    fc.cold_uffd = cold_uffd_;
    fc.region = &region_;
    fc.hwm = &served_hwm_;
    fc.source = source_;
    fc.tracker = tracker_.get();
    fc.installed = installed_.get();
    fc.discarded = discarded_.get();
    fc.mapped = mapped_.get();
    fc.sequential = sequential_.get();
    fc.random = random_.get();
    if (evictor_) {
      fc.evictor = evictor_.get();
      fc.evicted = evicted_.get();
      fc.fetch_stamp = &fetch_stamp_;
      fc.evict_gen = &evict_gen_;
      fc.await_room = [this] { AwaitRoom(); };
      fc.prefetch_resident_max = high_pages_;
    }
    ConfigureMapping(&fc);
    fc.install_mu = &install_mu_;
    fc.threads = std::max(1, options_.fault_threads);
    fc.prefetch_max = options_.prefetch_max;
    fc.poison = CachedKernelFeatures().poison;
    faults_ = std::make_unique<FaultService>(fc);
    // A fresh heap under async write-protect registers no missing faults
    // and asks for no events: its userfaultfd never has a message to read.
    // hybrid-wp's cold chunks fault into the service from the start.
    if (image_.hwm > 0 || mode_ == TrackingMode::kSyncWp || mode_ == TrackingMode::kHybridWp || evictor_)
      PHEAP_RETURN_IF_ERROR(faults_->Start());
  }
  if (evictor_ && !faults_) evictor_.reset();  // nothing could bring a page back
  StartEviction();
  PHEAP_LOG_INFO("heap region [{:#x}, {:#x}) open: tracking {}, {} stored pages, {} ({} mapped, {} copied)",
                 region_.base(), region_.base() + region_.size(), TrackingModeName(mode_), image_.hwm,
                 faults_ ? "served lazily by userfaultfd" : "loaded eagerly", eager_mapped_, eager_copied_);
  return Status::Ok();
}

void Pager::Impl::ConfigureMapping(FaultServiceConfig* fc) {
  fc->untracked = &untracked_;
  // Under a budget every page is copied: a page mapped from a log file
  // that a zap dropped would read as the file's again, perhaps older than
  // the store's newest.
  if (evictor_) return;
  if (!options_.map_stored || mode_ != TrackingMode::kAsyncWp || image_.hwm == 0 || !CachedWpAsyncOnFiles()) return;
  int fd = os().open("/proc/self/pagemap", O_RDONLY, 0);
  if (fd < 0) return;
  map_pagemap_fd_ = fd;
  // Each mapped run is a VMA (two more where it splits the region's): keep
  // to an eighth of what the process may have, the rest is the program's.
  uint64_t max_maps = 65530;
  if (FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
    unsigned long long v = 0;
    if (std::fscanf(f, "%llu", &v) == 1 && v > 0) max_maps = v;
    std::fclose(f);
  }
  fc->max_mapped_runs = max_maps / 8;
  fc->pagemap_fd = fd;
  fc->map_stored = true;
}

Status Pager::Impl::CheckTracking() const {
  if (!untracked_.load(std::memory_order_acquire)) return Status::Ok();
  return Status::IoError(
      "commit refused: pages mapped from the heap's store could not be write-protected (see the log), so a "
      "commit might miss writes; the last durable epoch is intact: reopen the heap to go on",
      EIO);
}

void Pager::Impl::StartCommitter() {
  if (committer_.joinable()) return;
  committer_ = StartExemptThread([this] { CommitterLoop(); });  // never paused by a cut, even its first
}

Pager::Impl::~Impl() {
  StopEviction();
  {
    std::lock_guard lk(q_mu_);
    stopping_ = true;
  }
  q_cv_.notify_all();
  if (committer_.joinable()) committer_.join();
  if (faults_) faults_->Stop();
  faults_.reset();
  if (map_pagemap_fd_ >= 0) os().close(map_pagemap_fd_);
  if (count_fd_ >= 0) os().close(count_fd_);
  tracker_.reset();
  if (uffd_ >= 0) os().close(uffd_);
  if (cold_uffd_ >= 0) os().close(cold_uffd_);
  // region_ unmaps in its destructor.
}

Result<std::unique_ptr<Pager>> Pager::Open(const ImageInfo& image, PageSource* source, EpochSink* sink,
                                           const PagerOptions& options) {
  if (source == nullptr || sink == nullptr) return Status::InvalidArgument("pager needs a page source and a sink");
  const KernelFeatures& k = CachedKernelFeatures();
  auto mode = ChooseMode(k, options.mode);
  if (!mode.ok()) return mode.status();
  if (*mode == TrackingMode::kMprotect && options.mode == TrackingMode::kAuto && !options.auto_mprotect)
    return MprotectRefused(k.why_not.empty() ? std::string("no userfaultfd") : k.why_not);
  auto impl = std::make_unique<Impl>(image, source, sink, options);
  PHEAP_RETURN_IF_ERROR(impl->Start(*mode));
  return std::unique_ptr<Pager>(new Pager(std::move(impl)));
}

const KernelFeatures& Pager::Probe() { return CachedKernelFeatures(); }

}  // namespace pheap
