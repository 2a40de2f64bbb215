#include "heap/heap_reader.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "base/log.h"
#include "base/os.h"
#include "replication/curve_auth.h"
#include "replication/replica_client.h"
#include "store/page_store.h"

namespace pheap {

// One epoch's image and what holds it readable.
struct HeapReader::Source {
  std::unique_ptr<PageStore> store;       // local: pins the log files of `image`
  std::unique_ptr<ReplicaClient> client;  // replicas: fetches exactly `image`
  std::unique_ptr<EpochImage> past;       // a past epoch of the local store
  PageSource* pages = nullptr;
  ImageInfo image;
};

namespace {

// A compaction may unlink a file between the listing of the store's
// directory and its open; the open is tried again, from a fresh listing.
constexpr int kOpenAttempts = 100;

uint64_t NowNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000 + static_cast<uint64_t>(ts.tv_nsec);
}

bool AllZero(const uint8_t* p) {
  static const uint8_t kZeros[kPageSize] = {};
  return std::memcmp(p, kZeros, kPageSize) == 0;
}

}  // namespace

HeapReader::HeapReader(std::string name, EngineOptions options)
    : name_(std::move(name)), options_(std::move(options)) {}

HeapReader::~HeapReader() {
  if (size_ != 0) os().munmap(base(), size_);
}

Result<std::unique_ptr<PageStore>> OpenStoreForReading(const std::string& dir, const std::string& name) {
  PageStoreOptions so;
  so.read_only = true;  // no lock: the writer never waits for a reader
  so.create_if_missing = false;
  auto store = PageStore::Open(dir, name, so);
  // ENOENT from the open of a listed file (a missing directory is
  // kNotFound): a compaction removed it meanwhile.
  for (int attempt = 1; attempt < kOpenAttempts && !store.ok() && store.status().code() == Status::Code::kIoError &&
                        store.status().err() == ENOENT;
       ++attempt) {
    ::usleep(1000);
    store = PageStore::Open(dir, name, so);
  }
  return store;
}

Result<std::unique_ptr<HeapReader>> HeapReader::Open(const std::string& name, const EngineOptions& options,
                                                     Epoch epoch) {
  PHEAP_RETURN_IF_ERROR(PageStore::ValidateHeapName(name));
  std::unique_ptr<HeapReader> r(new HeapReader(name, options));
  auto src = r->OpenSource(epoch);
  if (!src.ok()) return src.status();
  const ImageInfo& im = (*src)->image;
  if (options.base != 0 && options.base != im.base)
    return Status::InvalidArgument(
        fmt::format("heap '{}' lives at {:#x}, not at the configured base {:#x}: drop the base setting", name, im.base,
                    options.base));
  r->base_ = im.base;
  PHEAP_RETURN_IF_ERROR(r->MapUpTo(im.size));
  PHEAP_RETURN_IF_ERROR(r->Load(**src));
  PHEAP_LOG_INFO("heap '{}' open read-only at {:#x} size {:#x}, epoch {} ({} pages in {} ms)", name, im.base, im.size,
                 im.epoch, r->stats_.pages_read, r->stats_.ns / 1000000);
  return r;
}

Result<std::unique_ptr<HeapReader::Source>> HeapReader::OpenSource(Epoch at) const {
  auto local = OpenLocal(at);
  // A past epoch is read from the local store only.
  if (at != 0 || local.ok() || local.status().code() != Status::Code::kNotFound || options_.replication.peers.empty())
    return local;
  return OpenReplicas();
}

Result<std::unique_ptr<HeapReader::Source>> HeapReader::OpenLocal(Epoch at) const {
  auto store = OpenStoreForReading(options_.dir, name_);
  if (!store.ok()) {
    if (store.status().code() == Status::Code::kNotFound && options_.replication.peers.empty())
      return store.status().Annotate(
          fmt::format("opening heap '{}' read-only: no store of it under {} and no peers configured to read it from",
                      name_, options_.dir));
    return store.status().Annotate(fmt::format("opening heap '{}' read-only", name_));
  }
  auto src = std::make_unique<Source>();
  src->image = (*store)->image();
  if (src->image.epoch == 0)
    return Status::NotFound(
        fmt::format("opening heap '{}' read-only: its store {} holds no durable epoch yet; "
                    "open it read-only after the writer's first commit",
                    name_, (*store)->path()));
  if (at != 0) {
    // Its own descriptors keep the log files it reads; the store may go.
    auto past = (*store)->ImageAt(at);
    if (!past.ok()) return past.status().Annotate(fmt::format("opening heap '{}' read-only at epoch {}", name_, at));
    src->image = (*past)->image();
    src->past = std::move(*past);
    src->pages = src->past.get();
    return src;
  }
  src->store = std::move(*store);
  src->pages = src->store.get();
  return src;
}

Result<std::unique_ptr<HeapReader::Source>> HeapReader::OpenReplicas() const {
  ReplicaClientOptions ro;
  ro.replication = options_.replication;
  ro.claim = false;  // a reader: it claims no term and is never a writer's rival
  ro.timeout = std::chrono::milliseconds(options_.replica_timeout_ms);
  if (options_.replica_open_timeout_ms != 0)
    ro.open_timeout = std::chrono::milliseconds(options_.replica_open_timeout_ms);
  if (!options_.keys_dir.empty()) {
    auto keys = LoadClientKeys(options_.keys_dir);
    if (!keys.ok()) return keys.status().Annotate(fmt::format("heap '{}': reading the CURVE keys", name_));
    ro.keys = std::move(*keys);
  } else {
    for (const auto& ep : options_.replication.peers)
      if (!IsLoopbackEndpoint(ep))
        return Status::InvalidArgument(fmt::format(
            "heap '{}': peer {} is not on loopback and no keys are configured: give keys=DIR (made by pheap keygen)",
            name_, ep));
  }
  auto client = ReplicaClient::Open(name_, ro);
  if (!client.ok())
    return client.status().Annotate(fmt::format("opening heap '{}' read-only from its replicas", name_));
  auto src = std::make_unique<Source>();
  src->image = (*client)->image();
  if (src->image.epoch == 0)
    return Status::NotFound(
        fmt::format("opening heap '{}' read-only: no store of it under {}, and its replicas hold "
                    "no durable epoch of it",
                    name_, options_.dir));
  src->client = std::move(*client);
  src->pages = src->client.get();
  return src;
}

Status HeapReader::MapUpTo(uint64_t size) {
  if (size <= size_) return Status::Ok();
  void* want = reinterpret_cast<void*>(base_ + size_);
  void* p = os().mmap(want, size - size_, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
                      -1, 0);
  if (MmapFailed(p) || p != want) {
    if (!MmapFailed(p)) os().munmap(p, size - size_);  // a kernel that ignores NOREPLACE placed it elsewhere
    const int err = MmapFailed(p) ? MmapErrno(p) : EEXIST;
    if (err == EEXIST)
      return Status::Busy(
          fmt::format("heap '{}': its region [{:#x}, {:#x}) is taken in this process (by another heap "
                      "or mapping, or this heap open already)",
                      name_, base_ + size_, base_ + size));
    return Status::FromErrno(fmt::format("heap '{}': mapping its region at {:#x}", name_, base_), err);
  }
  size_ = size;
  return Status::Ok();
}

Status HeapReader::Load(Source& next) {
  const uint64_t start = NowNs();
  stats_ = LoadStats{};
  const ImageInfo& im = next.image;
  if (im.base != base_)
    return Status::Corruption(
        fmt::format("heap '{}' moved from {:#x} to {:#x}: its pointers are not valid there", name_, base_, im.base));
  const bool fresh = image_.epoch == 0;
  const Pgno old_hwm = image_.hwm;
  // The pages to look at: from the local store, those whose newest
  // version's epoch differs between the two images; else all stored ones.
  std::vector<Run> runs;
  auto add = [&runs](Pgno p) {
    if (!runs.empty() && runs.back().end() == p && runs.back().count < PageSource::kMaxReadRun) ++runs.back().count;
    else runs.push_back(Run{p, 1});
  };
  std::vector<Epoch> now;
  if (next.store) now = next.store->PageEpochs(0, im.hwm);
  // Page epochs name versions only within one lineage: a store set aside
  // and restored, or another writer's term, may number other pages alike.
  const bool same_lineage =
      im.heap_id == image_.heap_id && im.term == image_.term && im.epoch >= image_.epoch && !epochs_.empty();
  if (!fresh && next.store && same_lineage) {
    for (Pgno p = 0; p < im.hwm; ++p)
      if (p >= epochs_.size() || epochs_[p] != now[p]) add(p);
  } else {
    for (Pgno p = 0; p < im.hwm; ++p) add(p);
  }
  // Read everything first, keeping the pages that differ from the region,
  // so a failed read leaves the region as it was.
  auto* region = reinterpret_cast<uint8_t*>(base_);
  std::unique_ptr<uint8_t, void (*)(void*)> buf(
      static_cast<uint8_t*>(std::aligned_alloc(kPageSize, uint64_t{PageSource::kMaxReadRun} * kPageSize)), std::free);
  if (buf == nullptr) return Status::IoError(fmt::format("heap '{}': no memory to read pages into", name_), ENOMEM);
  std::vector<uint64_t> present(PageSource::kMaxReadRun / 64);
  std::vector<Pgno> changed;
  std::vector<uint8_t> data;  // changed pages' bytes, in `changed` order (fresh: unused)
  std::vector<Pgno> zeroed;
  // The region grew with the writer's: mapped before any page is compared.
  PHEAP_RETURN_IF_ERROR(MapUpTo(im.size));
  if (fresh) PHEAP_RETURN_IF_ERROR(Protect(PROT_READ | PROT_WRITE));
  for (const Run& r : runs) {
    Status s = next.pages->ReadRun(r.first, static_cast<uint32_t>(r.count), buf.get(), present.data());
    if (!s.ok()) return s.Annotate(fmt::format("heap '{}': reading epoch {}", name_, im.epoch));
    stats_.pages_read += r.count;
    for (uint64_t i = 0; i < r.count; ++i) {
      const Pgno p = r.first + i;
      uint8_t* at = region + p * kPageSize;
      const uint8_t* got = buf.get() + i * kPageSize;
      const bool stored = ((present[i / 64] >> (i % 64)) & 1) != 0;
      if (fresh) {
        if (stored) {  // an unstored page reads as zeros already
          std::memcpy(at, got, kPageSize);
          ++stats_.pages_written;
        }
        continue;
      }
      if (!stored) {
        if (!AllZero(at)) zeroed.push_back(p);
      } else if (std::memcmp(at, got, kPageSize) != 0) {
        changed.push_back(p);
        data.insert(data.end(), got, got + kPageSize);
      }
    }
  }
  if (!fresh) {
    for (Pgno p = im.hwm; p < old_hwm; ++p) zeroed.push_back(p);  // not in the image any more
    if (!changed.empty()) PHEAP_RETURN_IF_ERROR(Protect(PROT_READ | PROT_WRITE));
    for (size_t i = 0; i < changed.size(); ++i)
      std::memcpy(region + changed[i] * kPageSize, data.data() + i * kPageSize, kPageSize);
    // A page that reads as zeros goes back to the kernel, as the writer's did.
    for (size_t i = 0; i < zeroed.size();) {
      size_t j = i + 1;
      while (j < zeroed.size() && zeroed[j] == zeroed[j - 1] + 1) ++j;
      os().madvise(region + zeroed[i] * kPageSize, (j - i) * kPageSize, MADV_DONTNEED);
      i = j;
    }
    stats_.pages_written = changed.size();
    stats_.pages_zeroed = zeroed.size();
  }
  PHEAP_RETURN_IF_ERROR(Protect(PROT_READ));
  image_ = im;
  epochs_ = std::move(now);
  stats_.ns = NowNs() - start;
  return Status::Ok();
}

Status HeapReader::Protect(int prot) {
  int r = os().mprotect(base(), size_, prot);
  return r < 0 ? Status::FromErrno(fmt::format("heap '{}': mprotect of its region", name_), -r) : Status::Ok();
}

Result<Epoch> HeapReader::Refresh() {
  auto next = OpenSource();
  if (!next.ok()) return next.status().Annotate("refresh");
  PHEAP_RETURN_IF_ERROR(Load(**next));
  return image_.epoch;  // the source goes: its store's descriptors were needed only to load
}

}  // namespace pheap
