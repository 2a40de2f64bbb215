#include "heap/snapshot.h"

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "base/log.h"
#include "heap/heap_reader.h"

namespace pheap {

namespace {

// A compaction may drop the newest epoch's record between the store's
// open and the read of its history: taken again from a fresh open.
constexpr int kNewestAttempts = 5;

}  // namespace

Result<ImageInfo> WriteSnapshot(const PageStore& source, Epoch epoch, const std::string& dest_dir,
                                const std::string& dest) {
  PHEAP_RETURN_IF_ERROR(PageStore::ValidateHeapName(dest));
  const std::string what = fmt::format("snapshot of epoch {} into heap '{}' under {}", epoch, dest, dest_dir);
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(dest_dir) / dest, ec))
    return Status::InvalidArgument(
        fmt::format("{}: it exists; a snapshot makes a new heap: name another, or remove it (pheap rm)", what), EEXIST);
  auto past = source.ImageAt(epoch);
  if (!past.ok()) return past.status().Annotate(what);
  EpochImage& image = **past;
  const ImageInfo im = image.image();
  PageStoreOptions o;
  o.create_if_missing = true;
  o.base = im.base;
  o.size = im.size;
  auto made = PageStore::Open(dest_dir, dest, o);
  if (!made.ok()) return made.status().Annotate(what);
  PageStore& out = **made;
  if (!out.created())
    return Status::InvalidArgument(fmt::format("{}: it was made meanwhile by another process", what), EEXIST);
  auto fail = [&](const Status& s) {
    (void)out.RemoveIfCreated();
    return s.Annotate(what);
  };
  std::unique_ptr<uint8_t, void (*)(void*)> buf(
      static_cast<uint8_t*>(std::aligned_alloc(kPageSize, uint64_t{PageSource::kMaxReadRun} * kPageSize)), std::free);
  if (buf == nullptr) return fail(Status::IoError("no memory for a copy buffer", ENOMEM));
  std::vector<uint64_t> present(PageSource::kMaxReadRun / 64);
  uint64_t pages = 0;
  for (Pgno first = 0; first < im.hwm; first += PageSource::kMaxReadRun) {
    const auto count = static_cast<uint32_t>(std::min<uint64_t>(PageSource::kMaxReadRun, im.hwm - first));
    if (Status s = image.ReadRun(first, count, buf.get(), present.data()); !s.ok()) return fail(s);
    SealedEpoch part;
    part.image.epoch = epoch;  // every page is labelled with the epoch it was read at
    PackPresentPages(first, count, present.data(), buf.get(), &part.pages);
    if (part.pages.empty()) continue;
    part.data = buf.get();
    if (Status s = out.InstallPages(part); !s.ok()) return fail(s);
    pages += part.pages.size();
  }
  ImageInfo made_im = im;
  made_im.term = 0;  // a heap of its own, on no replicas
  if (Status s = out.InstallCommit(made_im); !s.ok()) return fail(s);
  PHEAP_LOG_INFO("heap '{}' under {}: a snapshot of epoch {} ({} pages)", dest, dest_dir, epoch, pages);
  return out.image();
}

Result<ImageInfo> SnapshotHeap(const std::string& dir, const std::string& name, Epoch epoch,
                               const std::string& dest_dir, const std::string& dest) {
  for (int attempt = 1;; ++attempt) {
    auto store = OpenStoreForReading(dir, name);
    if (!store.ok()) return store.status().Annotate(fmt::format("snapshot of heap '{}'", name));
    const Epoch at = epoch != 0 ? epoch : (*store)->image().epoch;
    if (at == 0)
      return Status::NotFound(
          fmt::format("snapshot of heap '{}': its store {} holds no durable epoch yet", name, (*store)->path()));
    auto r = WriteSnapshot(**store, at, dest_dir, dest);
    if (r.ok() || epoch != 0 || r.status().code() != Status::Code::kNotFound || attempt == kNewestAttempts) return r;
  }
}

}  // namespace pheap
