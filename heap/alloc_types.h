// The words of the allocator, defined once. Everything in heap/alloc_* uses
// them in exactly this sense (base/types.h defines page, region, run, epoch).
//
//   arena      [arena_base, arena_base + arena_size): the part of the region
//              the heap layer gives the allocator. It starts with the arena
//              header; segments follow from the first kSegmentSize boundary
//              after it. A fresh arena reads as zeros.
//   segment    kSegmentSize bytes at a kSegmentSize-aligned address. Segment i
//              lives at segs_base + i * kSegmentSize. Its kind is seg_info[i]:
//              free, pages (split into slots) or a huge object's head or
//              continuation.
//   slot       kSlotSize bytes of a pages segment. Slot 0 holds the segment
//              header (Segment: bitmaps and one PageDesc per slot) and never
//              user data, so an overflow out of user data rarely reaches
//              allocator state. Slots 1..63 hold heap pages and large runs.
//   heap page  A run of 1..kMaxPageSlots slots carved into blocks of one size
//              class. Described by the PageDesc of its first slot (the head);
//              every other slot's desc says how far back the head is.
//              ("page" alone always means the 4 KiB OS page.)
//   block      One allocation unit of a heap page. A free block's first word
//              links it into a free list; nothing else marks it.
//   bin        Size class of small blocks: 8..64 B in steps of 8, then four
//              classes per power of two up to kSmallMax (80, 96, 112, 128,
//              160, ...). Above 64 B a request n gets a block of at most
//              1.25 * n - so internal waste <= 25% - and blocks of a size
//              that is a multiple of 16 start at 16-aligned addresses.
//   large      Objects over kSmallMax (or needing alignment > kSlotSize):
//              a run of whole slots inside one segment, 64 KiB-granular
//              (waste < 64 KiB / 256 KiB = 25%).
//   huge       Objects that do not fit a segment's 63 data slots: their own
//              run of segments; the object starts after the head's header
//              slot (or at the next multiple of the requested alignment).
//   thread heap  A slot of the header's table: per bin a queue of the heap
//              pages the thread allocates from. A thread-local binding in the
//              process caches the calling thread's slot.
//   free list / thread-free list  Each small heap page has `free`, touched
//              only by its owner, and `xfree`, onto which any other thread
//              pushes with one CAS. The owner moves xfree into free when free
//              runs dry (collect).
//   abandoned  A heap page with no owner: its thread exited, or the process
//              that owned it is gone. Kept on a per-bin list; any thread
//              needing a page of that bin reclaims it.
//   incarnation  Counter in the header, +1 on every attach. A thread heap
//              whose incarnation differs from the header's is not in use.
//
// Invariants (quiescent state; "==" where a crash may leave the left side
// stale, recovery recomputes it):
//   segs_base % kSegmentSize == 0;  seg_hwm <= seg_capacity
//   seg_info[i] == free for i >= seg_hwm
//   seg_info[i] == free  =>  segment i reads as zeros        (A)
//   dirty bit s of a pages segment clear  =>  slot s reads as zeros  (B)
//   small page: reserved == slots * kSlotSize / block_size;
//               capacity <= reserved;  free and xfree hold distinct blocks
//               with index < capacity;  used == capacity - |free| - |xfree|
//               + (blocks pushed to xfree not yet collected, counted as used)
//   free_slots bit s  <=>  slot s is covered by no live heap page/large run
//   free_map / space_map are derived from seg_info / free_slots.
//   No lock object is ever stored in the arena.
//
// Crash consistency. A commit may stop a thread between any two instructions
// of any allocator call and the next process sees exactly that memory. The
// argument:
//  1. Linked structures that a crash could leave half-edited (heap queues,
//     abandoned lists, free_slots, free_map, space_map, used) are never trusted
//     by a new incarnation: attach rebuilds them by scanning seg_info and the
//     PageDescs. Thread heaps of the dead process are reset; all their pages
//     become abandoned.
//  2. Every state change that recovery does read is published by one store,
//     made after everything it publishes is written: a page's `kind`, a huge
//     object's seg_info head entry, a free list head. Pop and push of `free`
//     are single stores; the xfree push is one CAS.
//  3. Collect keeps every block reachable at every instant: the owner links
//     xfree's head after free's tail (or makes it free's head), then CASes
//     xfree from that head to null, re-linking to the new head if others
//     pushed. So at any instant free's chain either ends in null or runs into
//     a suffix of xfree's chain; recovery merges the two lists with a bitmap,
//     keeping each block once.
//  4. Lazy free-list extension links the new blocks first, then sets `free`,
//     then raises `capacity`; recovery raises capacity to cover every block it
//     finds on a list.
//  5. A free is published by its first store (large run: kind = free; huge:
//     the head's seg_info entry), before the lock is taken; the slots or
//     segments stay reserved in the derived maps until released under it.
//     Memory is zeroed before the metadata claims it is (a pages segment is
//     discarded before its seg_info entry says free; a dirty bit is cleared
//     only after its Discard succeeded). Recovery discards any free
//     segment whose header is not zero and any continuation without a head, so
//     (A) holds again before anyone allocates.
//  6. What a crash can lose: a block popped by a Malloc that had not yet
//     returned (or whose caller had not yet stored the pointer), and a block
//     whose Free had not yet reached its publishing store. That is at most one
//     object per thread that was inside the allocator, the same loss as any
//     value held only in a register. Nothing else leaks: empty pages and free
//     segments found by recovery are released at once.
//
// Build variants. Checking mode (AllocatorOptions::checking, chosen at attach)
// routes every call through separate checked paths (alloc_check.cc); the
// release fast path pays one predictable branch in Free and none in Malloc.
// No statistics are kept in the fast path; Stats() walks the metadata.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "base/types.h"

#define PHEAP_LIKELY(x) __builtin_expect(!!(x), 1)
#define PHEAP_UNLIKELY(x) __builtin_expect(!!(x), 0)

namespace pheap::alloc {

inline constexpr unsigned kSegmentShift = 22;
inline constexpr size_t kSegmentSize = size_t{1} << kSegmentShift;  // 4 MiB
inline constexpr unsigned kSlotShift = 16;
inline constexpr size_t kSlotSize = size_t{1} << kSlotShift;  // 64 KiB
inline constexpr unsigned kSlotsPerSegment = kSegmentSize / kSlotSize;  // 64
inline constexpr unsigned kFirstDataSlot = 1;
inline constexpr unsigned kMaxLargeSlots = kSlotsPerSegment - kFirstDataSlot;
inline constexpr uint64_t kDataSlotsMask = ~uint64_t{1};  // slots 1..63
inline constexpr size_t kSmallMax = size_t{256} << 10;
inline constexpr unsigned kMaxPageSlots = 16;
inline constexpr size_t kMaxLargeSize = size_t{kMaxLargeSlots} << kSlotShift;
inline constexpr unsigned kBinCount = 57;  // bins 1..56; bin 0 unused
inline constexpr unsigned kMaxThreadHeaps = 512;  // heap 0: shared overflow heap
inline constexpr size_t kMinAlign = 8;
inline constexpr size_t kExtendBytes = 4096;  // lazy free-list growth step

inline constexpr uint64_t kArenaMagic = 0x7068656170616c63ull;  // "phepalc"
inline constexpr uint32_t kArenaVersion = 1;

static_assert(kSegmentSize % kPageSize == 0 && kSlotSize % kPageSize == 0);

// --- size classes ---------------------------------------------------------

// Bin of a request of n bytes, 0 < n <= kSmallMax.
inline unsigned BinOfLarge(size_t n) {
  size_t m = n - 1;
  unsigned k = 63 - static_cast<unsigned>(std::countl_zero(m));  // 2^k <= m
  return 8 + (k - 6) * 4 + static_cast<unsigned>(m >> (k - 2)) - 3;
}
inline constexpr size_t BinSize(unsigned bin) {
  if (bin <= 8) return size_t{bin} * 8;
  unsigned j = bin - 9, k = 6 + j / 4, i = j % 4 + 1;
  return (size_t{1} << k) + size_t{i} * (size_t{1} << (k - 2));
}
extern const std::array<uint8_t, 129> kSmallBinTable;  // [(n + 7) / 8] for n <= 1024
inline unsigned BinOf(size_t n) {
  return n <= 1024 ? kSmallBinTable[(n + 7) >> 3] : BinOfLarge(n);
}
// Slots of a heap page of `bin`: room for at least 8 blocks, at most 16 slots.
inline constexpr unsigned PageSlots(unsigned bin) {
  size_t s = (BinSize(bin) * 8 + kSlotSize - 1) / kSlotSize;
  return s < 1 ? 1 : (s > kMaxPageSlots ? kMaxPageSlots : static_cast<unsigned>(s));
}
static_assert(BinSize(kBinCount - 1) == kSmallMax);

// --- in-arena structures --------------------------------------------------

struct Block {
  Block* next;
};

struct ThreadHeap;

enum PageKind : uint8_t { kPageFree = 0, kPageSmall = 1, kPageLarge = 2 };

// One per slot, in the segment header. Only a run's head desc carries the
// kind and the fields below `back`.
struct PageDesc {
  Block* free;                     // owner only (or the lock holder if abandoned)
  std::atomic<Block*> xfree;       // pushed by other threads, one CAS
  std::atomic<ThreadHeap*> heap;   // owner; null when abandoned or large
  PageDesc* next;                  // queue links: owner's bin queue or
  PageDesc* prev;                  //   the abandoned list of its bin
  std::atomic<uint32_t> used;      // blocks out (incl. pushed, uncollected)
  uint32_t capacity;               // blocks ever linked into a free list
  uint32_t reserved;               // blocks that fit the run
  uint32_t block_size;
  uint16_t slots;                  // run length
  uint16_t back;                   // this slot's distance to its run's head
  std::atomic<uint8_t> kind;       // PageKind; the publishing store
  uint8_t bin;
  uint8_t index;                   // slot number of this desc
  uint8_t pad_[1];
};

struct PageQueue {
  PageDesc* first;
  PageDesc* last;
  uint32_t count;
};

struct Segment {
  uint64_t free_slots;   // bit s: slot s free (derived; under the lock)
  uint64_t dirty_slots;  // bit s: slot s may be non-zero (under the lock)
  uint64_t huge_span;    // huge head: segments spanned
  uint64_t huge_start;   // huge head: address of the object
  uint64_t huge_size;    // huge head: usable bytes from huge_start
  uint64_t pad_[3];
  PageDesc pages[kSlotsPerSegment];
};
static_assert(sizeof(Segment) <= kSlotSize);

// seg_info entry: kind in the low 2 bits; a continuation keeps its distance
// to the head above them.
enum SegKind : uint32_t { kSegFree = 0, kSegPages = 1, kSegHugeHead = 2, kSegHugeCont = 3 };

struct ThreadHeap {
  PageDesc* direct[kBinCount];  // fast path: queue head, or the empty page
  PageQueue queues[kBinCount];
  uint64_t incarnation;         // == header's while a thread holds it
  uint64_t pad_;
};

// The calling thread's heap for the attachment whose id is `owner`. One
// binding per thread: a thread that alternates between two attachments
// re-binds on the slow path (through the attachment's pthread key).
struct TlsBinding {
  uint64_t owner;
  ThreadHeap* heap;
};
// initial-exec: one %fs-relative load instead of a __tls_get_addr call (the
// library is linked into the program or preloaded, never dlopen'ed late).
extern constinit thread_local TlsBinding tls_binding
    __attribute__((tls_model("initial-exec")));

struct ArenaHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t pad0_;
  uint64_t arena_base;
  uint64_t arena_size;
  uint64_t incarnation;
  uint64_t segs_base;
  uint64_t seg_capacity;
  uint64_t seg_hwm;             // segments [0, seg_hwm) were ever used
  uint64_t seg_info_offset;     // from the header: uint32_t[seg_capacity]
  uint64_t free_map_offset;     // uint64_t[words]: segment free, below hwm
  uint64_t space_map_offset;    // uint64_t[words]: pages segment with a free slot
  uint64_t abandoned_reclaimed; // pages taken over from dead or exited threads
  uint64_t corruptions;         // problems checking mode reported
  PageDesc empty_page;          // free == nullptr forever: sends the fast path slow
  PageQueue abandoned[kBinCount];
  ThreadHeap heaps[kMaxThreadHeaps];
};

inline size_t MapWords(uint64_t segments) { return (segments + 63) / 64; }

}  // namespace pheap::alloc
