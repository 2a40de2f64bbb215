// Segments and slot runs: carving heap pages and large runs out of pages
// segments, huge objects out of runs of segments, and giving memory back to
// the OS through ArenaHooks::Discard. Everything here runs under mu_.
#include <bit>
#include <cstring>

#include <fmt/format.h>

#include "base/log.h"
#include "heap/alloc_internal.h"
#include "heap/allocator.h"

namespace pheap {

using namespace alloc;

namespace {

// First slot s, a multiple of `step`, with slots [s, s + n) all set in
// `free_slots`; -1 if none.
int FindRun(uint64_t free_slots, unsigned n, unsigned step) {
  uint64_t want = RunMask(0, n);
  for (unsigned s = step; s + n <= kSlotsPerSegment; s += step) {
    if (((free_slots >> s) & want) == want) return static_cast<int>(s);
  }
  return -1;
}

}  // namespace

bool Allocator::DiscardOrZero(void* addr, size_t len, bool must_zero) {
  Status s = hooks_->Discard(addr, len);
  if (s.ok()) return true;
  PHEAP_LOG_WARN("allocator: discarding {} bytes at {} failed ({}); {}", len, addr,
                 s.ToString(), must_zero ? "zeroing them instead" : "keeping them");
  if (must_zero) memset(addr, 0, len);
  return must_zero;
}

Segment* Allocator::NewSegment() {
  uint64_t idx = hdr_->seg_hwm;
  for (uint64_t w = 0, words = MapWords(hdr_->seg_hwm); w < words; ++w) {
    if (free_map_[w] != 0) {
      idx = w * 64 + static_cast<uint64_t>(std::countr_zero(free_map_[w]));
      break;
    }
  }
  if (idx >= seg_capacity_) {
    // The caller reports it (the C API's error, the preload library's
    // one-time warning); a program retrying would otherwise flood the log.
    PHEAP_LOG_INFO("allocator: arena at {} is full ({} segments)",
                   static_cast<void*>(hdr_), seg_capacity_);
    return nullptr;
  }
  if (idx == hdr_->seg_hwm) ++hdr_->seg_hwm;
  else SetBit(free_map_, idx, false);
  Segment* seg = SegAt(idx);  // reads as zeros: invariant (A)
  seg->free_slots = kDataSlotsMask;
  seg->dirty_slots = 0;
  for (unsigned s = 0; s < kSlotsPerSegment; ++s) seg->pages[s].index = static_cast<uint8_t>(s);
  SetSegInfo(idx, kSegPages);
  SetBit(space_map_, idx, true);
  return seg;
}

// REQUIRES: every data slot of seg is free.
void Allocator::FreeSegment(Segment* seg) {
  uint64_t idx = SegIndex(reinterpret_cast<uintptr_t>(seg));
  SetBit(space_map_, idx, false);
  // Zero first, then say so: a crash in between leaves a pages segment with
  // no pages, which recovery frees again.
  DiscardOrZero(seg, kSegmentSize, /*must_zero=*/true);
  SetSegInfo(idx, kSegFree);
  SetBit(free_map_, idx, true);
}

PageDesc* Allocator::AllocRun(unsigned slots, unsigned align_slots, bool* zeroed) {
  if (FindRun(kDataSlotsMask, slots, align_slots) < 0) return nullptr;  // never fits
  Segment* seg = nullptr;
  int s = -1;
  for (uint64_t w = 0, words = MapWords(hdr_->seg_hwm); w < words && s < 0; ++w) {
    for (uint64_t bits = space_map_[w]; bits != 0 && s < 0; bits &= bits - 1) {
      seg = SegAt(w * 64 + static_cast<uint64_t>(std::countr_zero(bits)));
      s = FindRun(seg->free_slots, slots, align_slots);
    }
  }
  if (s < 0) {
    seg = NewSegment();
    if (seg == nullptr) return nullptr;
    s = FindRun(seg->free_slots, slots, align_slots);
  }
  uint64_t mask = RunMask(static_cast<unsigned>(s), slots);
  seg->free_slots &= ~mask;
  if (seg->free_slots == 0) SetBit(space_map_, SegIndex(reinterpret_cast<uintptr_t>(seg)), false);
  if (zeroed != nullptr) *zeroed = (seg->dirty_slots & mask) == 0;
  seg->dirty_slots |= mask;  // before anyone writes the run: invariant (B)
  for (unsigned k = 1; k < slots; ++k) seg->pages[s + k].back = static_cast<uint16_t>(k);
  PageDesc* pg = &seg->pages[s];
  pg->back = 0;
  pg->slots = static_cast<uint16_t>(slots);
  return pg;
}

void Allocator::ReleaseRun(Segment* seg, unsigned first, unsigned count, bool discard) {
  uint64_t mask = RunMask(first, count);
  if (discard && DiscardOrZero(reinterpret_cast<uint8_t*>(seg) + (size_t{first} << kSlotShift),
                               size_t{count} << kSlotShift, false)) {
    seg->dirty_slots &= ~mask;
  }
  seg->free_slots |= mask;
  SetBit(space_map_, SegIndex(reinterpret_cast<uintptr_t>(seg)), true);
  if (seg->free_slots == kDataSlotsMask) FreeSegment(seg);
}

// REQUIRES: every block of pg is free and pg is on no queue.
void Allocator::RetirePage(PageDesc* pg) {
  pg->kind.store(kPageFree, std::memory_order_release);
  pg->heap.store(nullptr, std::memory_order_relaxed);
  pg->free = nullptr;
  pg->xfree.store(nullptr, std::memory_order_relaxed);
  ReleaseRun(SegOf(pg), pg->index, pg->slots, /*discard=*/false);
}

// --- large objects: runs of slots -------------------------------------------

void* Allocator::AllocLarge(size_t n, size_t align, bool* zeroed) {
  size_t slots = (n + kSlotSize - 1) >> kSlotShift;
  unsigned align_slots = align > kSlotSize ? static_cast<unsigned>(align >> kSlotShift) : 1;
  if (slots > kMaxLargeSlots) return nullptr;
  std::lock_guard<std::mutex> g(mu_);
  PageDesc* pg = AllocRun(static_cast<unsigned>(slots), align_slots, zeroed);
  if (pg == nullptr) return nullptr;
  pg->free = nullptr;
  pg->xfree.store(nullptr, std::memory_order_relaxed);
  pg->heap.store(nullptr, std::memory_order_relaxed);
  pg->used.store(0, std::memory_order_relaxed);
  pg->block_size = 0;
  pg->kind.store(kPageLarge, std::memory_order_release);
  return PageStart(pg);
}

bool Allocator::GrowLargeInPlace(PageDesc* pg, size_t n) {
  size_t slots = (n + kSlotSize - 1) >> kSlotShift;
  if (slots > kSlotsPerSegment - pg->index) return false;
  std::lock_guard<std::mutex> g(mu_);
  Segment* seg = SegOf(pg);
  unsigned extra_first = pg->index + pg->slots;
  uint64_t extra = RunMask(extra_first, static_cast<unsigned>(slots) - pg->slots);
  if ((seg->free_slots & extra) != extra) return false;
  seg->free_slots &= ~extra;
  if (seg->free_slots == 0) SetBit(space_map_, SegIndex(reinterpret_cast<uintptr_t>(seg)), false);
  seg->dirty_slots |= extra;
  for (unsigned s = extra_first; s < pg->index + slots; ++s) {
    seg->pages[s].back = static_cast<uint16_t>(s - pg->index);
  }
  pg->slots = static_cast<uint16_t>(slots);  // publishes the growth
  return true;
}

// --- huge objects: runs of segments ----------------------------------------

void* Allocator::AllocHuge(size_t n, size_t align, bool* zeroed) {
  size_t lead = align > kSlotSize ? align : kSlotSize;
  if (n > kMaxRegionSize || lead > kMaxRegionSize) return nullptr;
  uint64_t k = (lead + n + kSegmentSize - 1) >> kSegmentShift;
  std::lock_guard<std::mutex> g(mu_);
  uint64_t hwm = hdr_->seg_hwm, first = 0, run = 0;
  for (uint64_t j = 0; j < seg_capacity_ && run < k; ++j) {
    if (j >= hwm || TestBit(free_map_, j)) {
      if (run++ == 0) first = j;
    } else {
      run = 0;
    }
  }
  if (run < k) {
    PHEAP_LOG_INFO("allocator: no run of {} free segments for {} bytes{} in the arena at {}", k, n,
                   align > kSlotSize ? fmt::format(" aligned to {}", align) : "", static_cast<void*>(hdr_));
    return nullptr;
  }
  for (uint64_t j = first; j < first + k && j < hwm; ++j) SetBit(free_map_, j, false);
  if (first + k > hwm) hdr_->seg_hwm = first + k;
  Segment* seg = SegAt(first);  // all k read as zeros: invariant (A)
  uintptr_t base = reinterpret_cast<uintptr_t>(seg);
  uintptr_t start = RoundUp(base + kSlotSize, lead);
  seg->huge_span = k;
  seg->huge_start = start;
  seg->huge_size = base + (k << kSegmentShift) - start;
  seg->dirty_slots = ~uint64_t{0};  // a freed head that is not zero gets discarded
  for (uint64_t j = 1; j < k; ++j) SetSegInfo(first + j, static_cast<uint32_t>(j << 2) | kSegHugeCont);
  SetSegInfo(first, kSegHugeHead);
  if (zeroed != nullptr) *zeroed = true;
  return reinterpret_cast<void*>(start);
}

void Allocator::FreeHuge(uint64_t head) {
  Segment* seg = SegAt(head);
  uint64_t k = seg->huge_span;
  // alloc_types.h, point 5; published before waiting for the lock (the
  // segments stay reserved in free_map until released below).
  SetSegInfo(head, kSegFree);
  std::lock_guard<std::mutex> g(mu_);
  DiscardOrZero(seg, k << kSegmentShift, /*must_zero=*/true);
  for (uint64_t j = 0; j < k; ++j) {
    if (j > 0) SetSegInfo(head + j, kSegFree);
    SetBit(free_map_, head + j, true);
  }
}

}  // namespace pheap
