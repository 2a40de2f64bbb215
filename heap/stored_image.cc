#include "heap/stored_image.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "heap/superblock.h"

namespace pheap {
namespace {

using Pages = std::unique_ptr<uint8_t, void (*)(void*)>;

// `pages` pages from `first`, 4 KiB aligned (a page the store never held
// reads as zeros).
Result<Pages> ReadPages(PageSource& store, Pgno first, uint32_t pages) {
  Pages buf(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, pages * kPageSize)), std::free);
  if (buf == nullptr) return Status::IoError("out of memory reading the heap's image", ENOMEM);
  std::memset(buf.get(), 0, pages * kPageSize);
  PHEAP_RETURN_IF_ERROR(store.ReadRun(first, pages, buf.get(), nullptr));
  return buf;
}

}  // namespace

StoredImage::StoredImage(PageSource* source, const ImageInfo& image, std::unique_ptr<EpochImage> owned, Pages sb)
    : source_(source), image_(image), owned_(std::move(owned)), sb_(std::move(sb)) {}

const char* PageUseName(PageUse use) {
  switch (use) {
    case PageUse::kSlack: return "slack";
    case PageUse::kSuperblock: return "superblock";
    case PageUse::kAllocatorMeta: return "allocator-meta";
    case PageUse::kSmall: return "small";
    case PageUse::kLarge: return "large";
    case PageUse::kHuge: return "huge";
    case PageUse::kFree: return "free";
  }
  return "?";
}

StoredImage::~StoredImage() = default;

Result<std::unique_ptr<StoredImage>> StoredImage::FromSource(PageSource* source, const ImageInfo& im,
                                                             std::unique_ptr<EpochImage> owned) {
  if (im.epoch == 0 || im.hwm == 0) return Status::NotFound("the heap has no durable epoch");
  auto sb = ReadPages(*source, 0, static_cast<uint32_t>(kSuperblockSize / kPageSize));
  if (!sb.ok()) return sb.status();
  if (reinterpret_cast<const pheap::Superblock*>(sb->get())->h.magic != kSuperblockMagic)
    return Status::Corruption("page 0 holds no pheap superblock");
  return std::unique_ptr<StoredImage>(new StoredImage(source, im, std::move(owned), std::move(*sb)));
}

Result<std::unique_ptr<StoredImage>> StoredImage::Open(PageStore& store) {
  return FromSource(&store, store.image(), nullptr);
}

Result<std::unique_ptr<StoredImage>> StoredImage::OpenSource(PageSource& source, const ImageInfo& image) {
  return FromSource(&source, image, nullptr);
}

Result<std::unique_ptr<StoredImage>> StoredImage::OpenAt(const PageStore& store, Epoch epoch) {
  auto at = store.ImageAt(epoch);
  if (!at.ok()) return at.status();
  PageSource* source = at->get();
  const ImageInfo im = (*at)->image();
  return FromSource(source, im, std::move(*at));
}

Result<uint64_t> StoredImage::Root(const std::string& name) const {
  const auto* sb = reinterpret_cast<const pheap::Superblock*>(sb_.get());
  // As Roots::Get: of the published slots with this name, the highest seq.
  uint64_t best_seq = 0, ptr = 0;
  for (const RootSlot& r : sb->roots) {
    uint64_t seq = r.seq.load(std::memory_order_relaxed);
    if (seq > best_seq && std::strncmp(r.name, name.c_str(), sizeof(r.name)) == 0) {
      best_seq = seq;
      ptr = r.ptr.load(std::memory_order_relaxed);
    }
  }
  if (best_seq == 0 || ptr == 0) return Status::NotFound(fmt::format("no root '{}'", name));
  return ptr;
}

std::vector<StoredRoot> StoredImage::Roots() const {
  const auto* sb = reinterpret_cast<const pheap::Superblock*>(sb_.get());
  std::map<std::string, std::pair<uint64_t, StoredRoot>> newest;  // by name: (seq, root)
  for (const RootSlot& r : sb->roots) {
    const uint64_t seq = r.seq.load(std::memory_order_relaxed);
    if (seq == 0) continue;
    std::string name(r.name, strnlen(r.name, sizeof(r.name)));
    auto& [best, root] = newest[name];
    if (seq <= best) continue;
    best = seq;
    root = {name, std::string(r.type, strnlen(r.type, sizeof(r.type))), r.ptr.load(std::memory_order_relaxed)};
  }
  std::vector<StoredRoot> roots;
  for (auto& [name, entry] : newest) {
    if (entry.second.address == 0) continue;
    auto size = UsableSize(entry.second.address);  // 0 when the arena cannot tell
    entry.second.size = size.ok() ? *size : 0;
    roots.push_back(std::move(entry.second));
  }
  return roots;
}

StoredHeapFacts StoredImage::Facts() const {
  const auto& h = reinterpret_cast<const pheap::Superblock*>(sb_.get())->h;
  StoredHeapFacts f;
  f.opens = h.opens;
  f.holds_code = h.holds_code.load(std::memory_order_relaxed) != 0;
  const auto mode = static_cast<TrackingMode>(h.tracking_mode);
  if (h.tracking_mode != 0 && h.tracking_mode <= static_cast<uint32_t>(TrackingMode::kHybridWp))
    f.tracking = TrackingModeName(mode);
  for (uint32_t i = 0; i < std::min<uint32_t>(h.code.build_id_len, sizeof(h.code.build_id)); ++i)
    f.build_id += fmt::format("{:02x}", h.code.build_id[i]);
  f.exe.assign(h.code.exe, strnlen(h.code.exe, sizeof(h.code.exe)));
  f.aslr_disabled = h.code.aslr_disabled != 0;
  return f;
}

Status StoredImage::Read(uint64_t addr, void* out, size_t len) const {
  if (addr < image_.base || len > image_.size || addr - image_.base > image_.size - len)
    return Status::Corruption(fmt::format("[{:#x}, +{}) lies outside the region", addr, len));
  if (len == 0) return Status::Ok();
  const uint64_t off = addr - image_.base;
  const Pgno first = off / kPageSize;
  const auto pages = static_cast<uint32_t>((off + len - 1) / kPageSize - first + 1);
  auto buf = ReadPages(*source_, first, pages);
  if (!buf.ok()) return buf.status();
  std::memcpy(out, buf->get() + off % kPageSize, len);
  return Status::Ok();
}

}  // namespace pheap
