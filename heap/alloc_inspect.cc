// StoredImage's view of the allocator: the arena's metadata read from the
// store (never mapped, never attached) and summed up for pheap inspect. It
// reads what recovery reads (alloc_recover.cc) and trusts what recovery
// trusts: seg_info, the segment headers and the heap pages' head descs.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "heap/alloc_internal.h"
#include "heap/stored_image.h"
#include "heap/superblock.h"

namespace pheap {

using namespace alloc;

namespace {

// Bytes of a segment's header, whole pages.
constexpr uint64_t kSegmentHeaderBytes = (sizeof(Segment) + kPageSize - 1) / kPageSize * kPageSize;

// Copies of metadata read from the image, 8-aligned so they can be viewed
// as the arena's structs: `len` bytes read into room for `room` (the whole
// struct, when only its first fields are needed).
class Copy {
 public:
  Status Read(const StoredImage& im, uint64_t addr, size_t len, size_t room = 0) {
    words_.assign((std::max(len, room) + 7) / 8, 0);
    return im.Read(addr, words_.data(), len);
  }
  template <typename T>
  const T* As() const {
    return reinterpret_cast<const T*>(words_.data());
  }

 private:
  std::vector<uint64_t> words_;
};

// The arena header (all of it, or its fixed fields before the tables) and
// seg_info below the high-water mark, checked against the region.
struct Arena {
  Copy header;
  std::vector<uint32_t> seg_info;
  const ArenaHeader& h() const { return *header.As<ArenaHeader>(); }
  uint64_t SegAddr(uint64_t i) const { return h().segs_base + (i << kSegmentShift); }
};

Result<Arena> ReadArena(const StoredImage& im, const ImageInfo& region, bool whole_header) {
  Arena a;
  const uint64_t at = region.base + kSuperblockSize;
  PHEAP_RETURN_IF_ERROR(a.header.Read(im, at, whole_header ? sizeof(ArenaHeader) : offsetof(ArenaHeader, empty_page),
                                      sizeof(ArenaHeader)));
  const ArenaHeader& h = a.h();
  if (h.magic == 0) return Status::NotFound("the heap's allocator was never formatted");
  if (h.magic != kArenaMagic || h.version != kArenaVersion)
    return Status::Corruption(fmt::format("the arena at {:#x} holds magic {:#x} version {}, not an allocator header",
                                          at, h.magic, h.version));
  const uint64_t end = region.base + region.size;
  if (h.arena_base != at || h.arena_size > end - at || h.segs_base % kSegmentSize != 0 || h.segs_base < at ||
      h.seg_capacity > (end - h.segs_base) / kSegmentSize || h.seg_hwm > h.seg_capacity ||
      h.seg_info_offset + h.seg_capacity * sizeof(uint32_t) > h.segs_base - at)
    return Status::Corruption(
        fmt::format("the arena header at {:#x} does not describe the region [{:#x}, {:#x})", at, region.base, end));
  a.seg_info.resize(h.seg_hwm);
  PHEAP_RETURN_IF_ERROR(im.Read(at + h.seg_info_offset, a.seg_info.data(), h.seg_hwm * sizeof(uint32_t)));
  return a;
}

// Extents in address order, adjacent free (or slack) ones merged.
class Extents {
 public:
  void Add(StoredExtent e) {
    if (e.bytes == 0) return;
    if (!list.empty()) {
      StoredExtent& last = list.back();
      if (last.address + last.bytes == e.address && last.use == e.use &&
          (e.use == PageUse::kFree || e.use == PageUse::kSlack)) {
        last.bytes += e.bytes;
        return;
      }
    }
    list.push_back(e);
  }
  void Add(uint64_t from, uint64_t to, PageUse use) {
    if (to > from) Add(StoredExtent{.address = from, .bytes = to - from, .use = use});
  }
  std::vector<StoredExtent> list;
};

// The thread heap `heap` points at, or -1.
int ThreadHeapIndex(const ArenaHeader& h, uint64_t heap) {
  const uint64_t first = h.arena_base + offsetof(ArenaHeader, heaps);
  if (heap < first || (heap - first) % sizeof(ThreadHeap) != 0) return -1;
  const uint64_t i = (heap - first) / sizeof(ThreadHeap);
  return i < kMaxThreadHeaps ? static_cast<int>(i) : -1;
}

struct Scan {
  std::vector<StoredExtent> extents;  // the whole region
  uint64_t damaged = 0;
};

// Every extent of the region, from the superblock to the arena's end.
Result<Scan> ScanRegion(const StoredImage& im, const ImageInfo& region, const Arena& a) {
  const ArenaHeader& h = a.h();
  Scan scan;
  Extents x;
  x.Add(region.base, region.base + kSuperblockSize, PageUse::kSuperblock);
  const uint64_t header_end = h.arena_base + h.seg_info_offset + h.seg_capacity * sizeof(uint32_t) +
                              2 * MapWords(h.seg_capacity) * 8;  // seg_info, free_map, space_map
  const uint64_t meta_end = std::min((header_end + kPageSize - 1) / kPageSize * kPageSize, h.segs_base);
  x.Add(h.arena_base, meta_end, PageUse::kAllocatorMeta);
  x.Add(meta_end, h.segs_base, PageUse::kSlack);
  Copy seg_copy;
  for (uint64_t i = 0; i < h.seg_hwm; ++i) {
    const uint64_t s = a.SegAddr(i);
    const uint32_t info = a.seg_info[i];
    if (info == kSegPages) {
      PHEAP_RETURN_IF_ERROR(seg_copy.Read(im, s, sizeof(Segment)));
      const Segment& seg = *seg_copy.As<Segment>();
      x.Add(s, s + kSegmentHeaderBytes, PageUse::kAllocatorMeta);
      x.Add(s + kSegmentHeaderBytes, s + kSlotSize, PageUse::kSlack);
      for (unsigned slot = kFirstDataSlot; slot < kSlotsPerSegment;) {
        const PageDesc& pg = seg.pages[slot];
        const uint64_t at = s + (uint64_t{slot} << kSlotShift);
        const uint8_t kind = pg.kind.load(std::memory_order_relaxed);
        if (kind == kPageFree || !PageDescSane(&pg, slot)) {
          if (kind != kPageFree) ++scan.damaged;
          x.Add(at, at + kSlotSize, kind == kPageFree ? PageUse::kFree : PageUse::kSlack);
          ++slot;
          continue;
        }
        StoredExtent e{.address = at, .bytes = uint64_t{pg.slots} << kSlotShift};
        if (kind == kPageSmall) {
          e.use = PageUse::kSmall;
          e.bin = pg.bin;
          e.block_size = pg.block_size;
          e.reserved = pg.reserved;
          e.capacity = pg.capacity;
          e.live_blocks = std::min<uint64_t>(pg.used.load(std::memory_order_relaxed), pg.reserved);
          e.thread_heap = ThreadHeapIndex(h, reinterpret_cast<uint64_t>(pg.heap.load(std::memory_order_relaxed)));
        } else {
          e.use = PageUse::kLarge;
        }
        x.Add(e);
        slot += pg.slots;
      }
    } else if ((info & 3) == kSegHugeHead) {
      PHEAP_RETURN_IF_ERROR(seg_copy.Read(im, s, sizeof(Segment)));
      const Segment& seg = *seg_copy.As<Segment>();
      const uint64_t span = seg.huge_span, end = s + (span << kSegmentShift);
      if (span == 0 || span > h.seg_hwm - i || seg.huge_start < s + kSegmentHeaderBytes || seg.huge_size > end ||
          seg.huge_start > end - seg.huge_size) {
        ++scan.damaged;  // recovery leaves the segment in use; so does the map
        x.Add(s, s + kSegmentHeaderBytes, PageUse::kAllocatorMeta);
        x.Add(s + kSegmentHeaderBytes, s + kSegmentSize, PageUse::kSlack);
        continue;
      }
      x.Add(s, s + kSegmentHeaderBytes, PageUse::kAllocatorMeta);
      x.Add(s + kSegmentHeaderBytes, seg.huge_start, PageUse::kSlack);
      x.Add(seg.huge_start, seg.huge_start + seg.huge_size, PageUse::kHuge);
      x.Add(seg.huge_start + seg.huge_size, end, PageUse::kSlack);
      i += span - 1;
    } else {
      // Free, or a continuation whose head is gone (an interrupted huge
      // free, which recovery finishes).
      x.Add(s, s + kSegmentSize, PageUse::kFree);
    }
  }
  x.Add(a.SegAddr(h.seg_hwm), a.SegAddr(h.seg_capacity), PageUse::kFree);
  x.Add(std::max(a.SegAddr(h.seg_capacity), h.arena_base), region.base + region.size, PageUse::kSlack);
  scan.extents = std::move(x.list);
  return scan;
}

}  // namespace

Result<StoredAllocatorFacts> StoredImage::AllocatorFacts() const {
  auto arena = ReadArena(*this, image_, /*whole_header=*/true);
  if (!arena.ok()) return arena.status();
  auto scan = ScanRegion(*this, image_, *arena);
  if (!scan.ok()) return scan.status();
  const ArenaHeader& h = arena->h();
  StoredAllocatorFacts f;
  f.arena_base = h.arena_base;
  f.arena_bytes = h.arena_size;
  f.segments = h.seg_capacity;
  f.segments_used = h.seg_hwm;
  f.untouched_bytes = (h.seg_capacity - h.seg_hwm) * kSegmentSize;
  f.incarnation = h.incarnation;
  f.reclaimed_pages = h.abandoned_reclaimed;
  f.corruptions = h.corruptions;
  f.damaged_descs = scan->damaged;
  for (unsigned i = 1; i < kMaxThreadHeaps; ++i) {
    const uint64_t inc = h.heaps[i].incarnation;
    f.thread_heaps_live += inc == h.incarnation;
    f.thread_heaps_earlier += inc != 0 && inc != h.incarnation;
  }
  std::map<unsigned, StoredSizeClass> classes;
  uint64_t free_extents = 0;
  for (const StoredExtent& e : scan->extents) {
    switch (e.use) {
      case PageUse::kSmall: {
        StoredSizeClass& c = classes[e.bin];
        c.bin = e.bin;
        c.block_size = e.block_size;
        ++c.heap_pages;
        c.live_blocks += e.live_blocks;
        c.free_blocks += e.reserved - e.live_blocks;
        f.live_blocks += e.live_blocks;
        f.live_bytes += e.live_blocks * e.block_size;
        f.free_bytes += (e.reserved - e.live_blocks) * e.block_size;
        f.used_bytes += e.bytes;
        if (e.thread_heap < 0) ++f.abandoned_pages;
        else ++f.owned_pages;
        break;
      }
      case PageUse::kLarge:
        ++f.large_objects;
        f.large_bytes += e.bytes;
        f.used_bytes += e.bytes;
        break;
      case PageUse::kHuge:
        ++f.huge_objects;
        f.huge_bytes += e.bytes;
        // The segments it spans: none of their bytes serve anything else.
        f.used_bytes += (((e.address + e.bytes - 1) >> kSegmentShift) - (e.address >> kSegmentShift) + 1)
                        << kSegmentShift;
        break;
      case PageUse::kFree:
        free_extents += e.bytes;
        if (e.bytes > f.largest_free_run) {
          f.largest_free_run = e.bytes;
          f.largest_free_address = e.address;
        }
        break;
      default: break;
    }
  }
  f.live_blocks += f.large_objects + f.huge_objects;
  f.live_bytes += f.large_bytes + f.huge_bytes;
  f.free_bytes += free_extents - f.untouched_bytes;
  for (uint64_t i = 0; i < h.seg_hwm; ++i) {
    const uint32_t kind = arena->seg_info[i] & 3;
    f.reserved_bytes += kind == kSegPages || kind == kSegHugeHead || kind == kSegHugeCont ? kSegmentSize : 0;
  }
  f.fragmentation = f.live_bytes == 0 ? 0 : static_cast<double>(f.used_bytes) / static_cast<double>(f.live_bytes);
  for (auto& [bin, c] : classes) f.size_classes.push_back(c);
  return f;
}

Result<StoredPageMap> StoredImage::PageMap(uint64_t pages) const {
  auto arena = ReadArena(*this, image_, /*whole_header=*/false);
  if (!arena.ok()) return arena.status();
  auto scan = ScanRegion(*this, image_, *arena);
  if (!scan.ok()) return scan.status();
  pages = std::min(pages, image_.size / kPageSize);
  StoredPageMap m;
  m.use.assign(pages, PageUse::kSlack);
  m.bin.assign(pages, 0);
  const uint64_t end = image_.base + pages * kPageSize;
  // A page shared by two extents (a huge object need not start on a page)
  // shows the one that holds data.
  auto rank = [](PageUse u) {
    return u == PageUse::kSlack ? 0 : u == PageUse::kFree ? 1 : u == PageUse::kAllocatorMeta ? 2 : 3;
  };
  for (const StoredExtent& e : scan->extents) {
    if (e.address >= end) break;
    StoredExtent clipped = e;
    clipped.bytes = std::min(e.bytes, end - e.address);
    m.extents.push_back(clipped);
    const uint64_t first = (e.address - image_.base) / kPageSize;
    const uint64_t last = (e.address + clipped.bytes - 1 - image_.base) / kPageSize;
    for (uint64_t p = first; p <= last; ++p) {
      if (rank(e.use) < rank(m.use[p])) continue;
      m.use[p] = e.use;
      m.bin[p] = static_cast<uint8_t>(e.bin);
    }
  }
  return m;
}

Result<uint64_t> StoredImage::UsableSize(uint64_t addr) const {
  auto arena = ReadArena(*this, image_, /*whole_header=*/false);
  if (!arena.ok()) return arena.status();
  const ArenaHeader& h = arena->h();
  if (addr < h.segs_base || addr >= arena->SegAddr(h.seg_hwm)) return uint64_t{0};
  uint64_t idx = (addr - h.segs_base) >> kSegmentShift;
  const uint32_t info = arena->seg_info[idx];
  Copy seg_copy;
  switch (info & 3) {
    case kSegPages: {
      const uint64_t s = arena->SegAddr(idx);
      const unsigned slot = static_cast<unsigned>((addr - s) >> kSlotShift);
      if (slot < kFirstDataSlot) return uint64_t{0};
      PHEAP_RETURN_IF_ERROR(seg_copy.Read(*this, s, sizeof(Segment)));
      const Segment& seg = *seg_copy.As<Segment>();
      const unsigned back = seg.pages[slot].back;
      if (back > slot - kFirstDataSlot) return uint64_t{0};
      const PageDesc& pg = seg.pages[slot - back];
      if (!PageDescSane(&pg, slot - back)) return uint64_t{0};
      const uint64_t start = s + (uint64_t{slot - back} << kSlotShift), off = addr - start;
      switch (pg.kind.load(std::memory_order_relaxed)) {
        case kPageSmall: return off < uint64_t{pg.reserved} * pg.block_size ? pg.block_size - off % pg.block_size : 0;
        case kPageLarge: return off < uint64_t{pg.slots} << kSlotShift ? (uint64_t{pg.slots} << kSlotShift) - off : 0;
        default: return uint64_t{0};
      }
    }
    case kSegHugeHead:
    case kSegHugeCont: {
      if ((info & 3) == kSegHugeCont) {
        if ((info >> 2) > idx) return uint64_t{0};
        idx -= info >> 2;
        if (arena->seg_info[idx] != kSegHugeHead) return uint64_t{0};
      }
      PHEAP_RETURN_IF_ERROR(seg_copy.Read(*this, arena->SegAddr(idx), sizeof(Segment)));
      const Segment& seg = *seg_copy.As<Segment>();
      if (addr < seg.huge_start || addr - seg.huge_start >= seg.huge_size) return uint64_t{0};
      return seg.huge_size - (addr - seg.huge_start);
    }
    default: return uint64_t{0};
  }
}

}  // namespace pheap
