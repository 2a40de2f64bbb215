// The allocator's public paths: the fast paths of Malloc and Free, and the
// size-class dispatch behind them. Heap pages, segments, large and huge
// objects are in alloc_slow.cc; attach and recovery in alloc_recover.cc;
// checking mode in alloc_check.cc.
#include "heap/allocator.h"

#include <cstring>

#include "base/log.h"
#include "heap/alloc_internal.h"

namespace pheap {

namespace alloc {

namespace {
// A block of more than 16 bytes is 16-aligned, as glibc, jemalloc and
// mimalloc promise (alignof(max_align_t)) and SSE loads on malloc'd memory
// assume: such requests skip the 24-, 40- and 56-byte bins, whose blocks
// lie 8 bytes off every other time. Blocks of 8 and 16 bytes hold nothing
// that needs more than their size.
constexpr std::array<uint8_t, 129> MakeSmallBinTable() {
  std::array<uint8_t, 129> t{};
  unsigned bin = 1;
  for (size_t w = 0; w < t.size(); ++w) {
    size_t n = w == 0 ? 1 : w * 8;
    if (n > 16) n = (n + 15) & ~size_t{15};
    while (BinSize(bin) < n) ++bin;
    t[w] = static_cast<uint8_t>(bin);
  }
  return t;
}
static_assert(MakeSmallBinTable()[3] == 4 && MakeSmallBinTable()[5] == 6 && MakeSmallBinTable()[7] == 8,
              "24, 40 and 56 bytes take the 32-, 48- and 64-byte bins");
}  // namespace

const std::array<uint8_t, 129> kSmallBinTable = MakeSmallBinTable();
constinit thread_local TlsBinding tls_binding __attribute__((tls_model("initial-exec"))) = {0, nullptr};

}  // namespace alloc

using namespace alloc;

Allocator::Allocator() = default;

Allocator::~Allocator() { Detach(); }

// --- the paths behind the inline fast paths (allocator.h) ----------------

// Not the owner: one CAS onto the thread-free list; the owner (or whoever
// reclaims the page) collects it.
void Allocator::FreeRemote(PageDesc* pg, Block* b) {
  Block* head = pg->xfree.load(std::memory_order_relaxed);
  do {
    b->next = head;
  } while (!pg->xfree.compare_exchange_weak(head, b, std::memory_order_release,
                                            std::memory_order_relaxed));
}

// --- dispatch -------------------------------------------------------------

void* Allocator::MallocSlow(size_t n) {
  if (checking_) return MallocChecked(n, 0);
  return AllocGeneric(n, 0, nullptr);
}

void* Allocator::AllocGeneric(size_t n, size_t align, bool* zeroed) {
  if (zeroed != nullptr) *zeroed = false;
  if (align <= kSlotSize) {
    // A multiple of align up to 64 KiB always maps to a bin whose block size
    // is a multiple of align, and heap pages start on slot boundaries, so
    // such blocks are aligned.
    size_t need = align > kMinAlign ? RoundUp(n > align ? n : align, align) : n;
    if (need <= kSmallMax) {
      unsigned bin = BinOf(need);
      ThreadHeap* h = CurrentHeap();
      if (h != nullptr) return AllocSmall(h, bin);
      std::lock_guard<std::mutex> g(overflow_mu_);
      return AllocSmall(&hdr_->heaps[0], bin);
    }
  }
  if (n <= kMaxLargeSize && align < kSegmentSize) {
    void* p = AllocLarge(n, align, zeroed);
    if (p != nullptr) return p;
  }
  return AllocHuge(n, align, zeroed);
}

void Allocator::FreeSpecial(void* p, uint32_t info) {
  uint32_t kind = info & 3;
  uint64_t idx = SegIndex(reinterpret_cast<uintptr_t>(p));
  if (kind == kSegHugeHead || kind == kSegHugeCont) {
    uint64_t head = kind == kSegHugeCont ? idx - (info >> 2) : idx;
    if (SegInfo(head) == kSegHugeHead &&
        SegAt(head)->huge_start == reinterpret_cast<uintptr_t>(p)) {
      return FreeHuge(head);
    }
  }
  PHEAP_LOG_ERROR("free({}): not an object of the arena at {:#x}; ignored",
                  p, reinterpret_cast<uintptr_t>(hdr_));
}

void Allocator::FreeLarge(PageDesc* pg, void* p) {
  if (pg->kind.load(std::memory_order_relaxed) != kPageLarge || PageStart(pg) != p) {
    PHEAP_LOG_ERROR("free({}): not the start of a live block; ignored", p);
    return;
  }
  // Published before waiting for the lock, so a crash while waiting loses
  // nothing; the run's slots stay reserved in free_slots until released.
  pg->kind.store(kPageFree, std::memory_order_release);
  std::lock_guard<std::mutex> g(mu_);
  ReleaseRun(SegOf(pg), pg->index, pg->slots, /*discard=*/true);
}

// --- the rest of the family ----------------------------------------------

void* Allocator::Calloc(size_t count, size_t n) {
  size_t total;
  if (__builtin_mul_overflow(count, n, &total)) return nullptr;
  if (checking_ || total <= kSmallMax) {
    void* p = Malloc(total);
    if (p != nullptr) memset(p, 0, total);
    return p;
  }
  bool zeroed = false;
  void* p = AllocGeneric(total, 0, &zeroed);
  if (p != nullptr && !zeroed) memset(p, 0, total);
  return p;
}

void* Allocator::AlignedAlloc(size_t align, size_t n) {
  if (align == 0 || (align & (align - 1)) != 0) return nullptr;
  if (align <= kMinAlign) return Malloc(n);
  if (checking_) return MallocChecked(n, align);
  return AllocGeneric(n, align, nullptr);
}

void* Allocator::Realloc(void* p, size_t n) {
  if (p == nullptr) return Malloc(n);
  if (n == 0) {
    Free(p);
    return nullptr;
  }
  size_t usable = UsableSize(p);
  if (checking_) return ReallocMove(p, usable, n);
  // Keep the block while it fits and is not more than twice what is asked.
  if (n <= usable && (n >= usable / 2 || usable <= 64)) return p;
  if (n > usable && n <= kMaxLargeSize) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (SegInfo(SegIndex(a)) == kSegPages) {
      PageDesc* pg = PageOf(p);
      if (pg->kind.load(std::memory_order_relaxed) == kPageLarge && GrowLargeInPlace(pg, n)) {
        return p;
      }
    }
  }
  return ReallocMove(p, usable, n);
}

void* Allocator::ReallocMove(void* p, size_t old_usable, size_t n) {
  void* q = Malloc(n);
  if (q == nullptr) return nullptr;
  memcpy(q, p, old_usable < n ? old_usable : n);
  Free(p);
  return q;
}

bool Allocator::Extent(const void* p, uint8_t** begin, size_t* size) const {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (hdr_ == nullptr || !InSegments(a)) return false;
  uint64_t idx = SegIndex(a);
  uint32_t info = SegInfo(idx);
  switch (info & 3) {
    case kSegPages: {
      if ((a & (kSegmentSize - 1)) < kSlotSize) return false;  // the header
      const PageDesc* pg = PageOf(p);
      uint8_t* start = PageStart(pg);
      uint8_t kind = pg->kind.load(std::memory_order_acquire);
      if (kind == kPageSmall) {
        size_t off = a - reinterpret_cast<uintptr_t>(start);
        if (off >= size_t{pg->reserved} * pg->block_size) return false;
        *begin = start + off / pg->block_size * pg->block_size;
        *size = pg->block_size;
        return true;
      }
      if (kind == kPageLarge) {
        *begin = start;
        *size = size_t{pg->slots} << kSlotShift;
        return a < reinterpret_cast<uintptr_t>(start) + *size;  // a slot's stale `back`
      }
      return false;
    }
    case kSegHugeHead:
    case kSegHugeCont: {
      uint64_t head = (info & 3) == kSegHugeCont ? idx - (info >> 2) : idx;
      if (SegInfo(head) != kSegHugeHead) return false;
      const Segment* seg = SegAt(head);
      if (a < seg->huge_start || a >= seg->huge_start + seg->huge_size) return false;
      *begin = reinterpret_cast<uint8_t*>(seg->huge_start);
      *size = seg->huge_size;
      return true;
    }
    default:
      return false;
  }
}

size_t Allocator::UsableSize(const void* p) const {
  uint8_t* begin;
  size_t size;
  if (!Extent(p, &begin, &size)) return 0;
  if (checking_) return RequestedSize(begin, size);
  return size - static_cast<size_t>(static_cast<const uint8_t*>(p) - begin);
}

bool Allocator::Owns(const void* p) const {
  uint8_t* begin;
  size_t size;
  return Extent(p, &begin, &size);
}

}  // namespace pheap
