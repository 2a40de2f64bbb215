// The persistent allocator: malloc/free over an arena inside the region, with
// every piece of its state inside that arena, so any point-in-time snapshot
// of the region holds an allocator a later process can attach to. The words
// (segment, slot, heap page, block, bin, thread heap, abandoned) and the
// crash-consistency argument are in heap/alloc_types.h.
//
// Thread safety: every method may be called from any thread at once, except
// where a comment says otherwise. Locks are process-local members of this
// object; none lives in the arena.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "base/status.h"
#include "heap/alloc_types.h"

namespace pheap {

// What the allocator needs from the layer that owns the region.
class ArenaHooks {
 public:
  virtual ~ArenaHooks() = default;
  // Gives [addr, addr + len) back to the OS. On success the range reads as
  // zeros afterwards (the engine zaps the pages and records that; a test
  // uses madvise). On failure the allocator keeps treating the bytes as
  // dirty. May be called with the allocator's lock held: must not call back
  // into the allocator.
  // REQUIRES: addr and len are multiples of kPageSize.
  virtual Status Discard(void* addr, size_t len) = 0;
};

struct AllocatorOptions {
  // Checking mode: free lists are validated, every block carries a canary
  // after the requested bytes, double frees and writes past the end are
  // reported with PHEAP_LOG_ERROR. Costs a few times the release path.
  bool checking = false;
  // In checking mode: abort() on the first problem (default), or log it,
  // count it in AllocatorStats::corruptions and leave the bad block alone.
  bool abort_on_corruption = true;
};

struct AllocatorStats {
  uint64_t bytes_live = 0;       // in blocks handed out (approximate while
                                 // other threads run: a block freed by a
                                 // non-owner counts until its page collects)
  uint64_t bytes_reserved = 0;   // in segments taken from the arena
  uint64_t bytes_capacity = 0;   // the most blocks can hold: every segment's
                                 // data slots (fixed while attached)
  uint64_t segments = 0;         // pages segments + segments of huge objects
  uint64_t huge_objects = 0;
  uint64_t abandoned_pages = 0;  // now waiting for an owner
  uint64_t abandoned_reclaimed = 0;  // ever taken over (persists)
  uint64_t thread_heaps = 0;     // slots in use by this incarnation
  uint64_t incarnation = 0;
  uint64_t corruptions = 0;      // reported by checking mode (persists)
};

class Allocator {
 public:
  Allocator();
  // Detaches if attached.
  ~Allocator();
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  // Formats the arena if its header magic is absent (a fresh arena reads as
  // zeros), else attaches to it as a new incarnation: every thread heap of
  // the previous one is abandoned, free lists are merged and validated, empty
  // heap pages and free segments are released. Allocates nothing.
  // REQUIRES: not attached; no other thread uses this object during Attach;
  //           base and size are multiples of kPageSize and the range is
  //           mapped read-write; `hooks` outlives the attachment.
  // Errors: InvalidArgument if the range is too small for a header and one
  //         segment; Corruption if the header is for another range or version.
  Status Attach(void* arena_base, size_t arena_size, ArenaHooks* hooks,
                const AllocatorOptions& options = {});

  // Forgets the arena without touching it further (what the process's end
  // does). Pointers handed out stay valid bytes in the region; the next
  // Attach treats this incarnation as dead.
  // REQUIRES: no other thread is inside or will call this object again.
  void Detach();

  bool attached() const { return hdr_ != nullptr; }

  // The hooks given to Attach, and a way to put another in front of them
  // (the preload library runs every Discard as pheap code, so whatever the
  // engine allocates on the way comes from glibc instead of this allocator,
  // whose lock the caller holds).
  // REQUIRES (set_hooks): attached; no other thread uses this object yet;
  //           `hooks` outlives the attachment.
  ArenaHooks* hooks() const { return hooks_; }
  void set_hooks(ArenaHooks* hooks) { hooks_ = hooks; }

  // Returns a block of at least n bytes, or nullptr when the arena is full.
  // Aligned to 8, and to 16 when n is a multiple of 16 (enough for any type
  // of that size). Malloc(0) returns a unique minimal block.
  void* Malloc(size_t n);
  // Malloc's fast path alone: a block from the calling thread's free list,
  // or nullptr when Malloc would take its slow path (so a caller can keep
  // its own slow path out of line and the fast one free of a stack frame).
  void* MallocFast(size_t n);
  // Zeroed count * n bytes; nullptr on overflow or a full arena.
  void* Calloc(size_t count, size_t n);
  // Resizes in place when the block's size class already fits n or a large
  // object can grow into free slots after it; else moves. Realloc(nullptr, n)
  // is Malloc(n); Realloc(p, 0) frees p and returns nullptr. On failure
  // returns nullptr and p stays valid.
  // REQUIRES: p is nullptr or live from this allocator.
  void* Realloc(void* p, size_t n);
  // A block of n bytes at a multiple of `align`; nullptr if align is not a
  // power of two or the arena is full.
  void* AlignedAlloc(size_t align, size_t n);
  // Any thread may free, including one that never allocated.
  // REQUIRES: p is nullptr or live from this allocator (checking mode reports
  //           violations instead of corrupting).
  void Free(void* p);
  // Bytes usable at p (>= requested; exactly the request in checking mode).
  // REQUIRES: p live from this allocator.
  size_t UsableSize(const void* p) const;
  // True if p points into a live heap page's block area, a live large run or
  // a live huge object of this arena. Does not walk free lists, so a free
  // block of a live heap page also answers true.
  bool Owns(const void* p) const;

  // Walks the metadata under the lock.
  AllocatorStats Stats();
  // Validates every heap page's free lists and the segment bitmaps.
  // REQUIRES: no other thread allocates or frees meanwhile.
  Status Verify();
  // Releases abandoned heap pages whose blocks were all freed since, and
  // with them any segment left empty.
  void Collect();
  // Gives the calling thread's heap back as its exit would (its pages become
  // abandoned or are released). The thread may allocate again afterwards.
  void ReleaseThreadHeap();

  // fork() support (pthread_atfork order): ForkPrepare takes the allocator's
  // process-local locks, so the child never inherits one held by a thread
  // that does not exist there; ForkRelease drops them in parent and child.
  void ForkPrepare() {
    overflow_mu_.lock();  // the order AllocGeneric nests them in
    mu_.lock();
  }
  void ForkRelease() {
    mu_.unlock();
    overflow_mu_.unlock();
  }

 private:
  struct HeapBinding {
    Allocator* self;
    alloc::ThreadHeap* heap;
  };

  // allocator.cc: size-class paths.
  void* MallocSlow(size_t n);
  void FreeImpl(void* p, uint64_t token);
  void FreeRemote(alloc::PageDesc* pg, alloc::Block* b);
  // The block holding p: [*begin, *begin + *size). False if p is in no live
  // heap page block area, large run or huge object.
  bool Extent(const void* p, uint8_t** begin, size_t* size) const;
  void* AllocGeneric(size_t n, size_t align, bool* zeroed);
  void FreeSpecial(void* p, uint32_t seg_info);
  void FreeLarge(alloc::PageDesc* pg, void* p);
  void* ReallocMove(void* p, size_t old_usable, size_t n);
  // alloc_slow.cc: thread heaps and heap pages.
  alloc::ThreadHeap* CurrentHeap();
  void* AllocSmall(alloc::ThreadHeap* h, unsigned bin);
  alloc::PageDesc* FindPage(alloc::ThreadHeap* h, unsigned bin);
  bool EnsureFree(alloc::PageDesc* pg);
  void CollectPage(alloc::PageDesc* pg);
  void ExtendFreeList(alloc::PageDesc* pg);
  alloc::PageDesc* ReclaimAbandoned(alloc::ThreadHeap* h, unsigned bin);
  alloc::PageDesc* NewSmallPage(alloc::ThreadHeap* h, unsigned bin);
  void PageEmptied(alloc::ThreadHeap* h, alloc::PageDesc* pg);
  void ReleaseHeap(alloc::ThreadHeap* h);
  static void ThreadExit(void* binding);
  // alloc_segment.cc: segments, slot runs, large and huge objects, Discard.
  // All REQUIRE mu_ held except AllocLarge, GrowLargeInPlace, AllocHuge and
  // FreeHuge, which take it.
  alloc::PageDesc* AllocRun(unsigned slots, unsigned align_slots, bool* zeroed);
  void ReleaseRun(alloc::Segment* seg, unsigned first, unsigned count, bool discard);
  void RetirePage(alloc::PageDesc* pg);
  alloc::Segment* NewSegment();
  void FreeSegment(alloc::Segment* seg);
  void* AllocLarge(size_t n, size_t align, bool* zeroed);
  bool GrowLargeInPlace(alloc::PageDesc* pg, size_t n);
  void* AllocHuge(size_t n, size_t align, bool* zeroed);
  void FreeHuge(uint64_t head);
  bool DiscardOrZero(void* addr, size_t len, bool must_zero);
  // alloc_recover.cc: recovery scan (Attach, Verify and Stats live there too).
  void Recover();
  void RecoverPagesSegment(alloc::Segment* seg);
  bool MergeLists(alloc::PageDesc* pg, const char** problem);
  // alloc_check.cc: checking mode.
  void* MallocChecked(size_t n, size_t align);
  void FreeChecked(void* p);
  void ReportCorruption(const char* what, const void* p, size_t block_size);
  bool CheckFreeHead(alloc::PageDesc* pg);
  static size_t RequestedSize(const uint8_t* begin, size_t size);

  // Address helpers.
  uint64_t SegIndex(uintptr_t a) const { return (a - segs_base_) >> alloc::kSegmentShift; }
  alloc::Segment* SegAt(uint64_t i) const {
    return reinterpret_cast<alloc::Segment*>(segs_base_ + (i << alloc::kSegmentShift));
  }
  static alloc::Segment* SegOf(const void* p) {
    return reinterpret_cast<alloc::Segment*>(reinterpret_cast<uintptr_t>(p) &
                                             ~(alloc::kSegmentSize - 1));
  }
  static uint8_t* PageStart(const alloc::PageDesc* pg) {
    return reinterpret_cast<uint8_t*>(SegOf(pg)) + (size_t{pg->index} << alloc::kSlotShift);
  }
  static alloc::PageDesc* PageOf(const void* p) {
    alloc::PageDesc* d = &SegOf(p)->pages[(reinterpret_cast<uintptr_t>(p) >> alloc::kSlotShift) &
                                          (alloc::kSlotsPerSegment - 1)];
    return d - d->back;
  }
  bool InSegments(uintptr_t a) const {
    return a >= segs_base_ && a < segs_base_ + (seg_capacity_ << alloc::kSegmentShift);
  }
  uint32_t SegInfo(uint64_t i) const { return seg_info_[i].load(std::memory_order_acquire); }
  void SetSegInfo(uint64_t i, uint32_t v) { seg_info_[i].store(v, std::memory_order_release); }
  // Map bit helpers (under mu_).
  static void SetBit(uint64_t* map, uint64_t i, bool on) {
    if (on) map[i / 64] |= uint64_t{1} << (i % 64);
    else map[i / 64] &= ~(uint64_t{1} << (i % 64));
  }
  static bool TestBit(const uint64_t* map, uint64_t i) { return (map[i / 64] >> (i % 64)) & 1; }

  alloc::ArenaHeader* hdr_ = nullptr;
  uintptr_t segs_base_ = 0;
  uint64_t seg_capacity_ = 0;
  std::atomic<uint32_t>* seg_info_ = nullptr;
  uint64_t* free_map_ = nullptr;
  uint64_t* space_map_ = nullptr;
  ArenaHooks* hooks_ = nullptr;
  uint64_t id_ = 0;       // this attachment, unique in the process
  uint64_t fast_id_ = 0;  // id_, or a value no binding holds in checking mode
  bool checking_ = false;
  bool abort_on_corruption_ = true;
  bool key_created_ = false;
  pthread_key_t key_{};
  std::mutex mu_;           // segments, slots, abandoned lists, heap table
  std::mutex overflow_mu_;  // heap 0, shared by threads beyond the table
  alloc::ThreadHeap overflow_binding_heap_;  // process-local, always empty
  HeapBinding bindings_[alloc::kMaxThreadHeaps];
};

// --- fast paths -----------------------------------------------------------
// Inline, so that the C interface and the preload library's malloc reach the
// free list without a call; everything else is out of line.

inline void* Allocator::MallocFast(size_t n) {
  using namespace alloc;
  if (PHEAP_UNLIKELY(tls_binding.owner != fast_id_ || n > kSmallMax)) return nullptr;
  PageDesc* pg = tls_binding.heap->direct[BinOf(n)];
  Block* b = pg->free;
  if (PHEAP_UNLIKELY(b == nullptr)) return nullptr;
  Block* next = b->next;
  pg->free = next;
  // The next pop of this bin loads next->next: start the miss now, so that
  // a list whose blocks left the cache costs overlapped misses rather than
  // one serial miss per malloc. (A prefetch of null or any address is
  // harmless.)
  __builtin_prefetch(next);
  pg->used.store(pg->used.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return b;
}

inline void* Allocator::Malloc(size_t n) {
  if (void* b = MallocFast(n); PHEAP_LIKELY(b != nullptr)) return b;
  return MallocSlow(n);
}

inline void Allocator::Free(void* p) {
  if (p == nullptr) return;
  if (PHEAP_UNLIKELY(checking_)) return FreeChecked(p);
  FreeImpl(p, fast_id_);
}

inline void Allocator::FreeImpl(void* p, uint64_t token) {
  using namespace alloc;
  uint32_t info = seg_info_[SegIndex(reinterpret_cast<uintptr_t>(p))].load(std::memory_order_relaxed);
  if (PHEAP_UNLIKELY(info != kSegPages)) return FreeSpecial(p, info);
  PageDesc* pg = PageOf(p);
  if (PHEAP_UNLIKELY(pg->kind.load(std::memory_order_relaxed) != kPageSmall)) return FreeLarge(pg, p);
  Block* b = static_cast<Block*>(p);
  if (PHEAP_UNLIKELY(pg->heap.load(std::memory_order_relaxed) != tls_binding.heap || tls_binding.owner != token))
    return FreeRemote(pg, b);
  b->next = pg->free;
  pg->free = b;
  uint32_t used = pg->used.load(std::memory_order_relaxed) - 1;
  pg->used.store(used, std::memory_order_relaxed);
  if (PHEAP_UNLIKELY(used == 0)) PageEmptied(tls_binding.heap, pg);
}

}  // namespace pheap
