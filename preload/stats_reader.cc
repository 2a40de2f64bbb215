#include "preload/stats_reader.h"

#include <cstdlib>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "heap/superblock.h"

namespace pheap {
namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// `pages` pages from `first`, 4 KiB aligned (a page the store never held
// reads as zeros).
Result<std::unique_ptr<uint8_t, FreeDeleter>> ReadPages(PageStore& store, Pgno first, uint32_t pages) {
  std::unique_ptr<uint8_t, FreeDeleter> buf(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, pages * kPageSize)));
  if (buf == nullptr) return Status::IoError("out of memory reading the superblock", ENOMEM);
  std::memset(buf.get(), 0, pages * kPageSize);
  PHEAP_RETURN_IF_ERROR(store.ReadRun(first, pages, buf.get(), nullptr));
  return buf;
}

}  // namespace

Result<PreloadStats> ReadPreloadStats(PageStore& store) {
  const ImageInfo im = store.image();
  if (im.epoch == 0 || im.hwm == 0) return Status::NotFound("the heap has no durable epoch");
  constexpr auto kSbPages = static_cast<uint32_t>(kSuperblockSize / kPageSize);
  auto sb_pages = ReadPages(store, 0, kSbPages);
  if (!sb_pages.ok()) return sb_pages.status();
  const auto* sb = reinterpret_cast<const Superblock*>(sb_pages->get());
  if (sb->h.magic != kSuperblockMagic) return Status::Corruption("page 0 holds no pheap superblock");
  uint64_t best_seq = 0, ptr = 0;
  for (const RootSlot& r : sb->roots) {
    uint64_t seq = r.seq.load(std::memory_order_relaxed);
    if (seq > best_seq && std::strncmp(r.name, kPreloadStatsRoot, sizeof(r.name)) == 0) {
      best_seq = seq;
      ptr = r.ptr.load(std::memory_order_relaxed);
    }
  }
  if (best_seq == 0 || ptr == 0) return Status::NotFound(fmt::format("no root '{}'", kPreloadStatsRoot));
  if (ptr < im.base || ptr + sizeof(PreloadStats) > im.base + im.size)
    return Status::Corruption(fmt::format("root '{}' = {:#x} lies outside the region", kPreloadStatsRoot, ptr));
  const uint64_t off = ptr - im.base;
  const Pgno first = off / kPageSize;
  const auto pages = static_cast<uint32_t>((off + sizeof(PreloadStats) - 1) / kPageSize - first + 1);
  auto rec = ReadPages(store, first, pages);
  if (!rec.ok()) return rec.status();
  PreloadStats s;
  std::memcpy(&s, rec->get() + off % kPageSize, sizeof(s));
  if (s.magic != kPreloadStatsMagic || s.version != 1)
    return Status::Corruption(fmt::format("root '{}' points at something else (magic {:#x})", kPreloadStatsRoot, s.magic));
  s.program[sizeof(s.program) - 1] = '\0';
  return s;
}

}  // namespace pheap
