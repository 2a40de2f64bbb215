// The words of pheap, defined once. Every other file uses them in exactly
// this sense.
//
//   page      A 4 KiB OS page: the unit the kernel protects and faults, and
//             the unit pheap tracks, stores and ships. (The allocator's own
//             "heap pages" are defined in heap/alloc_types.h; they are never
//             called just "page" outside heap/.)
//   region    The fixed-address virtual range [base, base + size) that holds
//             one heap. base and size are multiples of kPageSize, recorded in
//             the store and reused on every open, so raw pointers stay valid.
//   pgno      A page's number inside its region: (addr - base) / kPageSize.
//   run       Contiguous pages [first, first + count).
//   epoch     The number of a commit. Epoch 0 is the empty heap; commit n
//             produces epoch n. An epoch is durable once its commit record is
//             on disk (and, with peers, on a write quorum of replicas).
//   term      The writer generation of a heap. A writer claims a term when it
//             opens for writing; stores refuse pages from an older term.
//   hwm       High-water mark: one past the highest pgno the durable image
//             holds. Pages at or above hwm were never stored, so the kernel's
//             own zero-fill serves them.
//   log file  One append-only file of the page store (store/): a file
//             header, then page records grouped by epoch, each group closed by
//             a commit record.
//   heap id   XXH3-64 of the heap name: names a heap in every record and
//             message, and seeds its default base and its replica placement.
//   staging   The copy a commit makes of the pages written since the last
//             one, taken while the program is paused and held until its
//             epoch is durable (pager/staging.h). Config staging_max bounds
//             what epochs not yet durable hold; staging_keep, what stays
//             faulted in between commits.
//   inbox     What a peer holds of the epoch it is receiving, per heap, until
//             the writer's COMMIT (replication/peer_heap_internal.h): memory
//             up to --inbox-memory, then a file, up to --inbox-limit, past
//             which it answers INBOX_FULL.
//
// Invariants:
//   base % kPageSize == 0, size % kPageSize == 0
//   kMinRegionSize <= size <= kMaxRegionSize
//   kMinRegionBase <= base, base + size <= kUserAddressLimit
//   term <= kMaxTerm, epoch <= kMaxEpoch (so term + 1 and epoch + 1 never wrap)
//   pgno < size / kPageSize;  hwm <= size / kPageSize
//   epochs of one heap are consecutive: durable epoch e implies e-1 durable.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pheap {

inline constexpr size_t kPageSize = 4096;
inline constexpr unsigned kPageShift = 12;

// x86-64 with 4-level paging gives user space 47 bits. The region must stay
// below the area where the kernel places ordinary mmaps and the stack.
inline constexpr uint64_t kUserAddressLimit = uint64_t{1} << 47;
inline constexpr uint64_t kMaxRegionSize = uint64_t{1} << 45;  // 32 TiB
// Linux maps nothing below vm.mmap_min_addr (64 KiB by default), so no
// region starts there; and no heap is smaller than 16 pages.
inline constexpr uint64_t kMinRegionBase = uint64_t{64} << 10;
inline constexpr uint64_t kMinRegionSize = uint64_t{64} << 10;

// Terms and epochs only ever grow by one, so these are never reached in
// practice (2^62 commits at a million a second take 146,000 years). A peer
// refuses anything above them, so none it stores can overflow when the next
// writer adds one; and it refuses a term more than kMaxTermStep above the one
// it promised, so no single message can use the range up and leave a heap
// whose terms no writer can exceed (docs/wire-protocol.md, "Limits").
inline constexpr uint64_t kMaxTerm = (uint64_t{1} << 62) - 1;
inline constexpr uint64_t kMaxEpoch = (uint64_t{1} << 62) - 1;
inline constexpr uint64_t kMaxTermStep = uint64_t{1} << 32;

// Default placement: heap id picks one of kDefaultSlots slots of
// kDefaultSlotSize starting at kDefaultBase. A heap larger than a slot, or a
// collision, is fixed by the `base` config key.
#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer accepts application mappings only in a few ranges; this
// one (below the shared libraries) is free in practice. Test builds only.
inline constexpr uint64_t kDefaultBase = uint64_t{0x7e80} << 32;
inline constexpr uint64_t kDefaultSlotSize = uint64_t{16} << 30;
inline constexpr uint64_t kDefaultSlots = 24;
#else
// The slots span [17 TiB, 81 TiB): above ASan's shadow, which ends just past
// 16 TiB, and below 0x555555554000, where the kernel loads a position-
// independent executable (and its brk) at a random offset of up to 16 TiB.
// Slots inside that range would collide with some program now and then.
inline constexpr uint64_t kDefaultBase = uint64_t{0x1100} << 32;  // 17 TiB
inline constexpr uint64_t kDefaultSlotSize = uint64_t{64} << 30;  // 64 GiB
inline constexpr uint64_t kDefaultSlots = 1024;                    // 64 TiB
static_assert(kDefaultBase + kDefaultSlots * kDefaultSlotSize <= uint64_t{0x5555} << 32);
#endif
inline constexpr uint64_t kDefaultRegionSize = uint64_t{16} << 30; // 16 GiB

inline constexpr size_t kMaxHeapNameLength = 200;

using Pgno = uint64_t;
using Epoch = uint64_t;
using Term = uint64_t;
using HeapId = uint64_t;

struct Run {
  Pgno first = 0;
  uint64_t count = 0;
  Pgno end() const { return first + count; }
};

inline constexpr uint64_t PagesFor(uint64_t bytes) {
  return (bytes + kPageSize - 1) >> kPageShift;
}

// How the pager learns which pages the program wrote (pager/dirty_tracker.h).
enum class TrackingMode : uint8_t {
  kAuto = 0,     // best the kernel offers, in the order below
  kAsyncWp,      // UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN (kernel 6.7+)
  kSyncWp,       // userfaultfd write-protect faults served by a thread
  kMprotect,     // mprotect(PROT_READ) + SIGSEGV handler
  kAsyncWpUser,  // kAsyncWp on a user-mode-only userfaultfd (any user), image loaded at open
  kHybridWp,     // kAsyncWp for written 2 MiB chunks, a sync-WP userfaultfd for idle ones
};

const char* TrackingModeName(TrackingMode m);
// Parses "auto", "async-wp", "sync-wp", "mprotect", "async-wp-user", "hybrid-wp"; false if unknown.
bool ParseTrackingMode(const char* s, TrackingMode* out);

}  // namespace pheap
