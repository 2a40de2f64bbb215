// Process-local pieces shared by the allocator's source files. Nothing here
// lives in the arena.
#pragma once

#include <cstdint>

#include "heap/alloc_types.h"

namespace pheap::alloc {

inline size_t RoundUp(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }
inline uint64_t RunMask(unsigned first, unsigned count) {
  return (count >= 64 ? ~uint64_t{0} : ((uint64_t{1} << count) - 1)) << first;
}

// Checking mode's trailer in the last 8 bytes of every block: a canary tied
// to the block's address (another value once freed) and how many bytes lie
// between the end of the request and the trailer.
struct CheckPad {
  uint32_t canary;
  uint32_t slack;
};
inline constexpr size_t kCheckPadSize = sizeof(CheckPad);
inline constexpr size_t kCheckFillMax = 64;  // slack bytes filled and verified
inline constexpr uint8_t kCheckFill = 0xde;

inline constexpr uint32_t kMaxBlocksPerPage = kSlotSize / kMinAlign;  // one slot of 8 B blocks

// Whether the head desc of the run at `slot` describes a run recovery can
// trust; anything else stays in use, untouched (recovery and any reader of
// a stored image judge a desc alike).
inline bool PageDescSane(const PageDesc* pg, unsigned slot) {
  if (pg->slots == 0 || slot + pg->slots > kSlotsPerSegment || pg->back != 0) return false;
  if (pg->kind.load(std::memory_order_relaxed) != kPageSmall) return true;
  return pg->bin > 0 && pg->bin < kBinCount && pg->block_size == BinSize(pg->bin) &&
         pg->reserved == (size_t{pg->slots} << kSlotShift) / pg->block_size && pg->reserved <= kMaxBlocksPerPage &&
         pg->capacity <= pg->reserved;
}

// Heap-queue edits; queues belong to one thread (or the lock holder).
void QueuePushFront(PageQueue& q, PageDesc* pg);
void QueuePushBack(PageQueue& q, PageDesc* pg);
void QueueRemove(PageQueue& q, PageDesc* pg);

// Blocks on pg's thread-free list, at most `limit` (a longer walk means a
// cycle: a block freed twice).
uint32_t CountList(const Block* b, uint32_t limit);

}  // namespace pheap::alloc
