// Opening a pager: map the region, get a userfaultfd, register it for the
// chosen tracking mode, start the fault service.
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
}

Status Pager::Impl::OpenUffd(bool* absent) {
  bool via_dev = false;
  int fd = uffd_open(&via_dev);
  *absent = fd < 0;
  if (fd < 0) return Status::FromErrno("userfaultfd(2) and /dev/userfaultfd", -fd);
  uffd_ = fd;
  uint64_t want = mode_ == TrackingMode::kAsyncWp ? UFFD_FEATURE_WP_ASYNC : 0;
  int r = uffd_api(uffd_, want, nullptr, nullptr);
  if (r < 0) return Status::FromErrno("UFFDIO_API on the heap's userfaultfd", -r);
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
    default:
      return reg(base, below, kMissing);
  }
}

// No userfaultfd: the stored image is copied into the region now.
Status Pager::Impl::LoadEagerly() {
  if (image_.hwm == 0) return Status::Ok();
  PHEAP_LOG_WARN("no userfaultfd: loading all {} stored pages of the heap at open (slower open; "
                 "give this process access to /dev/userfaultfd to load lazily)", image_.hwm);
  auto buf = StagingBuffer::Reserve(PageSource::kMaxReadRun);
  if (!buf.ok()) return buf.status();
  uint64_t present[PageSource::kMaxReadRun / 64];
  for (Pgno p = 0; p < image_.hwm; p += PageSource::kMaxReadRun) {
    auto n = static_cast<uint32_t>(std::min<uint64_t>(PageSource::kMaxReadRun, image_.hwm - p));
    auto* out = const_cast<uint8_t*>((*buf)->data());
    PHEAP_RETURN_IF_ERROR(source_->ReadRun(p, n, out, present).Annotate("loading the heap image"));
    for (uint32_t i = 0; i < n; ++i)
      if ((present[i / 64] >> (i % 64)) & 1)
        std::memcpy(region_.data() + ((p + i) << kPageShift), out + uint64_t{i} * kPageSize, kPageSize);
  }
  return Status::Ok();
}

Status Pager::Impl::Start(TrackingMode mode) {
  mode_ = mode;
  auto region = Region::Map(image_.base, image_.size);
  if (!region.ok()) return region.status();
  region_ = std::move(region.value());
  if (image_.hwm > region_.pages())
    return Status::Corruption(fmt::format("image hwm {} lies beyond its region of {} pages", image_.hwm, region_.pages()));

  const bool needs_uffd = mode_ != TrackingMode::kMprotect || image_.hwm > 0;
  bool absent = false;
  if (needs_uffd) {
    Status st = OpenUffd(&absent);
    if (absent && options_.mode == TrackingMode::kAuto) {
      PHEAP_LOG_WARN("userfaultfd unavailable at open ({}): falling back to mprotect tracking", st.ToString());
      mode_ = TrackingMode::kMprotect;
    } else if (absent && mode_ != TrackingMode::kMprotect) {
      return Status::Unsupported(fmt::format("tracking mode '{}' needs a userfaultfd: {}", TrackingModeName(mode_),
                                             st.ToString()));
    } else if (!st.ok() && !absent) {
      return st;
    }
  }
  installed_ = std::make_unique<PageBitmap>(image_.hwm);
  discarded_ = std::make_unique<PageBitmap>(image_.hwm);
  mapped_ = std::make_unique<PageBitmap>(image_.hwm);
  carry_ = std::make_unique<PageBitmap>(region_.pages());
  staging_pool_ = std::make_unique<StagingPool>(region_.pages());

  if (uffd_ < 0) PHEAP_RETURN_IF_ERROR(LoadEagerly());
  else PHEAP_RETURN_IF_ERROR(RegisterUffd());

  switch (mode_) {
    case TrackingMode::kAsyncWp: {
      int fd = os().open("/proc/self/pagemap", O_RDONLY, 0);
      if (fd < 0) return Status::FromErrno("opening /proc/self/pagemap for dirty tracking", -fd);
      tracker_ = NewAsyncWpTracker(region_, fd);
      break;
    }
    case TrackingMode::kSyncWp:
      tracker_ = NewSyncWpTracker(region_, uffd_);
      break;
    default: {
      auto t = NewMprotectTracker(region_);
      if (!t.ok()) return t.status();
      tracker_ = std::move(t.value());
    }
  }
  if (uffd_ >= 0) {
    FaultServiceConfig fc;
    fc.uffd = uffd_;
    fc.region = &region_;
    fc.hwm = image_.hwm;
    fc.source = source_;
    fc.tracker = tracker_.get();
    fc.installed = installed_.get();
    fc.discarded = discarded_.get();
    fc.mapped = mapped_.get();
    ConfigureMapping(&fc);
    fc.install_mu = &install_mu_;
    fc.threads = std::max(1, options_.fault_threads);
    fc.prefetch_max = options_.prefetch_max;
    fc.poison = CachedKernelFeatures().poison;
    faults_ = std::make_unique<FaultService>(fc);
    // A fresh heap under async write-protect registers no missing faults
    // and asks for no events: its userfaultfd never has a message to read.
    if (image_.hwm > 0 || mode_ == TrackingMode::kSyncWp) PHEAP_RETURN_IF_ERROR(faults_->Start());
  }
  PHEAP_LOG_INFO("heap region [{:#x}, {:#x}) open: tracking {}, {} stored pages, {}", region_.base(),
                 region_.base() + region_.size(), TrackingModeName(mode_), image_.hwm,
                 uffd_ >= 0 ? "served lazily by userfaultfd" : "loaded eagerly");
  return Status::Ok();
}

void Pager::Impl::ConfigureMapping(FaultServiceConfig* fc) {
  fc->untracked = &untracked_;
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
  {
    std::lock_guard lk(q_mu_);
    stopping_ = true;
  }
  q_cv_.notify_all();
  if (committer_.joinable()) committer_.join();
  if (faults_) faults_->Stop();
  faults_.reset();
  if (map_pagemap_fd_ >= 0) os().close(map_pagemap_fd_);
  tracker_.reset();
  if (uffd_ >= 0) os().close(uffd_);
  // region_ unmaps in its destructor.
}

Result<std::unique_ptr<Pager>> Pager::Open(const ImageInfo& image, PageSource* source, EpochSink* sink,
                                           const PagerOptions& options) {
  if (source == nullptr || sink == nullptr) return Status::InvalidArgument("pager needs a page source and a sink");
  auto mode = ChooseMode(CachedKernelFeatures(), options.mode);
  if (!mode.ok()) return mode.status();
  auto impl = std::make_unique<Impl>(image, source, sink, options);
  PHEAP_RETURN_IF_ERROR(impl->Start(*mode));
  return std::unique_ptr<Pager>(new Pager(std::move(impl)));
}

const KernelFeatures& Pager::Probe() { return CachedKernelFeatures(); }

}  // namespace pheap
