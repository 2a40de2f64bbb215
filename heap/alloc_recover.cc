// Attaching to an arena: format a fresh one, or recover the state a previous
// incarnation left at any instant (alloc_types.h, "Crash consistency").
// Also the whole-arena walks: Verify and Stats.
#include <fmt/format.h>

#include <cstring>

#include "base/log.h"
#include "heap/alloc_internal.h"
#include "heap/allocator.h"

namespace pheap {

using namespace alloc;

namespace {

std::atomic<uint64_t> g_next_id{1};

struct Layout {
  uint64_t seg_info_offset, free_map_offset, space_map_offset;
  uint64_t segs_base, seg_capacity;
};

bool ComputeLayout(uintptr_t base, size_t size, Layout* l) {
  uint64_t cap0 = size / kSegmentSize;
  l->seg_info_offset = RoundUp(sizeof(ArenaHeader), 64);
  l->free_map_offset = RoundUp(l->seg_info_offset + cap0 * sizeof(uint32_t), 64);
  l->space_map_offset = l->free_map_offset + MapWords(cap0) * 8;
  uint64_t header_end = base + l->space_map_offset + MapWords(cap0) * 8;
  l->segs_base = RoundUp(header_end, kSegmentSize);
  l->seg_capacity = l->segs_base >= base + size ? 0 : (base + size - l->segs_base) / kSegmentSize;
  return l->seg_capacity > 0;
}

bool HeaderIsZero(const Segment* seg) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(seg);
  for (size_t i = 0; i < sizeof(Segment) / 8; ++i) {
    if (w[i] != 0) return false;
  }
  return true;
}

// Walks one list of pg, marking blocks in `seen`; stops at the first block
// already seen (returned in *stop). Returns false with *problem on a pointer
// that is not a block of the page.
bool WalkList(const PageDesc* pg, const uint8_t* start, Block* b, uint64_t* seen,
              uint32_t* count, uint32_t* top, Block** last, Block** stop, const char** problem) {
  size_t bs = pg->block_size;
  for (; b != nullptr; b = b->next) {
    uintptr_t off = reinterpret_cast<uintptr_t>(b) - reinterpret_cast<uintptr_t>(start);
    if (reinterpret_cast<uintptr_t>(b) < reinterpret_cast<uintptr_t>(start) ||
        off >= size_t{pg->reserved} * bs || off % bs != 0) {
      *problem = "free-list pointer outside its heap page or not on a block boundary";
      return false;
    }
    uint32_t i = static_cast<uint32_t>(off / bs);
    if ((seen[i / 64] >> (i % 64)) & 1) break;
    seen[i / 64] |= uint64_t{1} << (i % 64);
    ++*count;
    if (i + 1 > *top) *top = i + 1;
    *last = b;
  }
  *stop = b;
  return true;
}

}  // namespace

Status Allocator::Attach(void* arena_base, size_t arena_size, ArenaHooks* hooks,
                         const AllocatorOptions& options) {
  if (hdr_ != nullptr) return Status::InvalidArgument("allocator: already attached");
  uintptr_t base = reinterpret_cast<uintptr_t>(arena_base);
  if (base % kPageSize != 0 || arena_size % kPageSize != 0 || hooks == nullptr) {
    return Status::InvalidArgument(fmt::format(
        "allocator: arena {:#x}+{:#x} must be page-aligned with hooks", base, arena_size));
  }
  Layout l;
  if (!ComputeLayout(base, arena_size, &l)) {
    return Status::InvalidArgument(fmt::format(
        "allocator: arena {:#x}+{:#x} is too small for its header and one {} MiB segment; "
        "give it at least {} MiB", base, arena_size, kSegmentSize >> 20, 3 * kSegmentSize >> 20));
  }
  auto* hdr = static_cast<ArenaHeader*>(arena_base);
  if (hdr->magic == 0) {
    hdr->version = kArenaVersion;
    hdr->arena_base = base;
    hdr->arena_size = arena_size;
    hdr->segs_base = l.segs_base;
    hdr->seg_capacity = l.seg_capacity;
    hdr->seg_info_offset = l.seg_info_offset;
    hdr->free_map_offset = l.free_map_offset;
    hdr->space_map_offset = l.space_map_offset;
    std::atomic_ref<uint64_t>(hdr->magic).store(kArenaMagic, std::memory_order_release);
  } else if (hdr->magic != kArenaMagic || hdr->version != kArenaVersion) {
    return Status::Corruption(fmt::format(
        "allocator: arena at {:#x} holds magic {:#x} version {}, not an allocator header "
        "version {}; it belongs to something else or is damaged", base, hdr->magic,
        hdr->version, kArenaVersion));
  } else if (hdr->arena_base == base && arena_size > hdr->arena_size && hdr->segs_base == l.segs_base &&
             hdr->seg_info_offset == l.seg_info_offset) {
    // A larger region: segments keep their places and seg_info its start,
    // so the arena grows in place. The maps after seg_info are derived
    // (Recover rebuilds them); the seg_info entries of the new segments
    // take bytes the old maps held and must read as free.
    auto* info = reinterpret_cast<uint8_t*>(hdr) + l.seg_info_offset;
    memset(info + hdr->seg_capacity * sizeof(uint32_t), 0, (l.seg_capacity - hdr->seg_capacity) * sizeof(uint32_t));
    PHEAP_LOG_INFO("allocator: arena at {:#x} grows from {:#x} to {:#x} bytes ({} to {} segments)", base,
                   hdr->arena_size, arena_size, hdr->seg_capacity, l.seg_capacity);
    hdr->arena_size = arena_size;
    hdr->seg_capacity = l.seg_capacity;
    hdr->free_map_offset = l.free_map_offset;
    hdr->space_map_offset = l.space_map_offset;
  } else if (hdr->arena_base != base || hdr->arena_size != arena_size ||
             hdr->segs_base != l.segs_base || hdr->seg_capacity != l.seg_capacity) {
    return Status::Corruption(fmt::format(
        "allocator: arena header at {:#x} was formatted for {:#x}+{:#x}, not {:#x}+{:#x}; an arena grows "
        "(to a size whose segment table still fits before its first segment) but never shrinks or moves",
        base, hdr->arena_base, hdr->arena_size, base, arena_size));
  }
  if (int rc = pthread_key_create(&key_, &Allocator::ThreadExit); rc != 0) {
    return Status::FromErrno("allocator: pthread_key_create", rc);
  }
  key_created_ = true;
  hdr_ = hdr;
  segs_base_ = l.segs_base;
  seg_capacity_ = l.seg_capacity;
  auto* raw = reinterpret_cast<uint8_t*>(hdr);
  seg_info_ = reinterpret_cast<std::atomic<uint32_t>*>(raw + l.seg_info_offset);
  free_map_ = reinterpret_cast<uint64_t*>(raw + l.free_map_offset);
  space_map_ = reinterpret_cast<uint64_t*>(raw + l.space_map_offset);
  hooks_ = hooks;
  checking_ = options.checking;
  abort_on_corruption_ = options.abort_on_corruption;
  id_ = g_next_id.fetch_add(1, std::memory_order_relaxed);
  // Checking mode: no binding ever holds ~0, so the fast paths always fall
  // through to the checked ones.
  fast_id_ = checking_ ? ~uint64_t{0} : id_;
  ++hdr_->incarnation;
  Recover();
  return Status::Ok();
}

void Allocator::Detach() {
  if (hdr_ == nullptr) return;
  if (key_created_) pthread_key_delete(key_);
  key_created_ = false;
  if (tls_binding.owner == id_) tls_binding = {0, nullptr};
  hdr_ = nullptr;
  seg_info_ = nullptr;
}

// Rebuilds every derived structure from seg_info and the page descs (point 1
// of the argument), abandons all pages, releases what is empty.
void Allocator::Recover() {
  std::lock_guard<std::mutex> g(mu_);
  // Thread heaps of earlier incarnations are not in use (their incarnation
  // differs): nothing to clear, and the 512 of them stay untouched.
  ThreadHeap* shared = &hdr_->heaps[0];
  memset(shared->queues, 0, sizeof(shared->queues));
  memset(static_cast<void*>(&hdr_->empty_page), 0, sizeof(hdr_->empty_page));
  for (unsigned bin = 0; bin < kBinCount; ++bin) {
    shared->direct[bin] = &hdr_->empty_page;
    overflow_binding_heap_.direct[bin] = &hdr_->empty_page;
  }
  shared->incarnation = hdr_->incarnation;
  memset(hdr_->abandoned, 0, sizeof(hdr_->abandoned));
  memset(free_map_, 0, MapWords(seg_capacity_) * 8);
  memset(space_map_, 0, MapWords(seg_capacity_) * 8);

  uint64_t hwm = hdr_->seg_hwm;
  for (uint64_t i = 0; i < hwm; ++i) {
    uint32_t info = SegInfo(i);
    Segment* seg = SegAt(i);
    switch (info & 3) {
      case kSegPages:
        RecoverPagesSegment(seg);
        break;
      case kSegHugeHead: {
        uint64_t k = seg->huge_span;
        if (k == 0 || i + k > hwm || seg->huge_start < reinterpret_cast<uintptr_t>(seg)) {
          PHEAP_LOG_ERROR("allocator: huge object header of segment {} is damaged (span {}); "
                          "leaving the segment in use", i, k);
          break;
        }
        for (uint64_t j = 1; j < k; ++j) SetSegInfo(i + j, static_cast<uint32_t>(j << 2) | kSegHugeCont);
        i += k - 1;
        break;
      }
      case kSegHugeCont:  // its head is gone: an interrupted huge free
        DiscardOrZero(seg, kSegmentSize, /*must_zero=*/true);
        SetSegInfo(i, kSegFree);
        SetBit(free_map_, i, true);
        break;
      default:  // free: make sure it reads as zeros (invariant A)
        if (!HeaderIsZero(seg)) DiscardOrZero(seg, kSegmentSize, /*must_zero=*/true);
        SetBit(free_map_, i, true);
        break;
    }
  }
}

void Allocator::RecoverPagesSegment(Segment* seg) {
  seg->free_slots = 0;
  for (unsigned s = kFirstDataSlot; s < kSlotsPerSegment;) {
    PageDesc* pg = &seg->pages[s];
    pg->index = static_cast<uint8_t>(s);
    uint8_t kind = pg->kind.load(std::memory_order_relaxed);
    if (kind == kPageFree) {
      seg->free_slots |= uint64_t{1} << s;
      ++s;
      continue;
    }
    if (!PageDescSane(pg, s)) {
      PHEAP_LOG_ERROR("allocator: heap page desc {} of segment {} is damaged; its slot stays "
                      "in use", static_cast<void*>(pg), static_cast<void*>(seg));
      ++s;
      continue;
    }
    for (unsigned k = 1; k < pg->slots; ++k) seg->pages[s + k].back = static_cast<uint16_t>(k);
    unsigned next = s + pg->slots;
    if (kind == kPageSmall) {
      pg->heap.store(nullptr, std::memory_order_relaxed);
      pg->next = pg->prev = nullptr;
      const char* problem = nullptr;
      if (!MergeLists(pg, &problem)) {
        // Quarantine: never allocates from it, never releases it.
        PHEAP_LOG_ERROR("allocator: heap page {} (block size {}): {}; page quarantined",
                        static_cast<void*>(PageStart(pg)), pg->block_size, problem);
        pg->free = nullptr;
        pg->xfree.store(nullptr, std::memory_order_relaxed);
        pg->capacity = pg->reserved;
        pg->used.store(pg->reserved, std::memory_order_relaxed);
      } else if (pg->used.load(std::memory_order_relaxed) == 0) {
        pg->kind.store(kPageFree, std::memory_order_relaxed);
        seg->free_slots |= RunMask(s, pg->slots);
      } else {
        QueuePushBack(hdr_->abandoned[pg->bin], pg);
      }
    }
    s = next;
  }
  uint64_t idx = SegIndex(reinterpret_cast<uintptr_t>(seg));
  if (seg->free_slots == kDataSlotsMask) {
    FreeSegment(seg);
  } else if (seg->free_slots != 0) {
    SetBit(space_map_, idx, true);
  }
}

// Merges `xfree` into `free` (point 3: `free` may share a suffix with it),
// validates every pointer, raises capacity to cover every block found
// (point 4) and recomputes `used`.
bool Allocator::MergeLists(PageDesc* pg, const char** problem) {
  uint64_t seen[kMaxBlocksPerPage / 64] = {};
  const uint8_t* start = PageStart(pg);
  uint32_t count = 0, top = pg->capacity;
  Block* xhead = pg->xfree.load(std::memory_order_relaxed);
  Block *xlast = nullptr, *stop = nullptr;
  if (!WalkList(pg, start, xhead, seen, &count, &top, &xlast, &stop, problem)) return false;
  if (stop != nullptr) {
    *problem = "thread-free list has a cycle";
    return false;
  }
  Block *flast = nullptr, *fhead = pg->free;
  if (!WalkList(pg, start, fhead, seen, &count, &top, &flast, &stop, problem)) return false;
  // free = (free's own blocks) + (the whole thread-free list).
  if (flast != nullptr) flast->next = xhead;
  else fhead = xhead;
  pg->free = fhead;
  pg->xfree.store(nullptr, std::memory_order_relaxed);
  pg->capacity = top;
  pg->used.store(top - count, std::memory_order_relaxed);
  return true;
}

Status Allocator::Verify() {
  std::lock_guard<std::mutex> g(mu_);
  for (uint64_t i = 0; i < hdr_->seg_hwm; ++i) {
    if (SegInfo(i) != kSegPages) continue;
    Segment* seg = SegAt(i);
    uint64_t free_slots = 0;
    for (unsigned s = kFirstDataSlot; s < kSlotsPerSegment;) {
      PageDesc* pg = &seg->pages[s];
      uint8_t kind = pg->kind.load(std::memory_order_relaxed);
      if (kind == kPageFree) {
        free_slots |= uint64_t{1} << s++;
        continue;
      }
      if (!PageDescSane(pg, s)) {
        return Status::Corruption(fmt::format("allocator: page desc of slot {} in segment {} "
                                              "is damaged", s, i));
      }
      if (kind == kPageSmall) {
        uint64_t seen[kMaxBlocksPerPage / 64] = {};
        uint32_t count = 0, top = 0;
        Block *last = nullptr, *stop = nullptr;
        const char* problem = nullptr;
        bool ok = WalkList(pg, PageStart(pg), pg->free, seen, &count, &top, &last, &stop, &problem) &&
                  stop == nullptr &&
                  WalkList(pg, PageStart(pg), pg->xfree.load(), seen, &count, &top, &last, &stop,
                           &problem) &&
                  stop == nullptr;
        if (ok && (top > pg->capacity || count > pg->capacity)) {
          problem = "free list holds blocks beyond the page's capacity";
          ok = false;
        }
        if (!ok) {
          return Status::Corruption(fmt::format(
              "allocator: heap page {} (block size {}): {}", static_cast<void*>(PageStart(pg)),
              pg->block_size, problem != nullptr ? problem : "a block is on its free lists twice"));
        }
      }
      s += pg->slots;
    }
    if (free_slots != seg->free_slots) {
      return Status::Corruption(fmt::format("allocator: segment {} free-slot map {:#x} disagrees "
                                            "with its page descs {:#x}", i, seg->free_slots,
                                            free_slots));
    }
  }
  return Status::Ok();
}

AllocatorStats Allocator::Stats() {
  AllocatorStats st;
  std::lock_guard<std::mutex> g(mu_);
  for (uint64_t i = 0; i < hdr_->seg_hwm; ++i) {
    uint32_t info = SegInfo(i);
    Segment* seg = SegAt(i);
    if (info == kSegPages) {
      ++st.segments;
      for (unsigned s = kFirstDataSlot; s < kSlotsPerSegment;) {
        PageDesc* pg = &seg->pages[s];
        uint8_t kind = pg->kind.load(std::memory_order_relaxed);
        if (kind == kPageSmall) {
          st.bytes_live += uint64_t{pg->used.load(std::memory_order_relaxed)} * pg->block_size;
        } else if (kind == kPageLarge) {
          st.bytes_live += uint64_t{pg->slots} << kSlotShift;
        }
        s += kind == kPageFree || pg->slots == 0 ? 1 : pg->slots;
      }
    } else if (info == kSegHugeHead) {
      st.segments += seg->huge_span;
      st.bytes_live += seg->huge_size;
      ++st.huge_objects;
    }
  }
  st.bytes_reserved = st.segments * kSegmentSize;
  st.bytes_capacity = seg_capacity_ * (kSlotsPerSegment - kFirstDataSlot) << kSlotShift;
  for (unsigned bin = 0; bin < kBinCount; ++bin) st.abandoned_pages += hdr_->abandoned[bin].count;
  for (unsigned i = 1; i < kMaxThreadHeaps; ++i) {
    st.thread_heaps += hdr_->heaps[i].incarnation == hdr_->incarnation;
  }
  st.abandoned_reclaimed = hdr_->abandoned_reclaimed;
  st.incarnation = hdr_->incarnation;
  st.corruptions = std::atomic_ref<uint64_t>(hdr_->corruptions).load(std::memory_order_relaxed);
  return st;
}

}  // namespace pheap
