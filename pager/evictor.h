// Which resident pages of a heap may be given back to the OS, and which of
// those to give back first, for a heap under a memory budget
// (PagerOptions::memory_max; docs/design.md, "Eviction").
//
// Every page carries a stamp, a uint32 per page in a lazily mapped array:
//
//   stamp(p) == 0   p is not resident as far as the pager knows (never
//                   placed, evicted, or discarded)
//   stamp(p) == s   p is resident, and its newest content is that of the
//                   cut numbered s, or it was filled from the store after
//                   cut s was taken (the pager numbers cuts from 1 at open)
//
// Stamps only grow while a page stays resident (Touch takes the maximum),
// so for a page not written since its last cut:
//
//   stamp(p) <= durable  =>  the store (and the replicas) hold p's content
//
// which is what makes p evictable: a missing fault brings the same bytes
// back. A page written since its last cut is not told apart here; the
// pager filters those out inside the pause (the tracker's dirty set). A
// lower stamp is an older write or fetch: Choose takes the lowest first.
//
// Thread safety: Touch and Forget from any thread (fault threads, the cut,
// Discard), lock-free; Choose from one thread at a time, beside them (a
// stamp that changes meanwhile is re-checked by the caller).
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "base/types.h"

namespace pheap {

class Evictor {
 public:
  explicit Evictor(uint64_t pages);
  ~Evictor();
  Evictor(const Evictor&) = delete;
  Evictor& operator=(const Evictor&) = delete;

  // The pages of `r` are resident with content as of stamp s (>= 1).
  void Touch(Run r, uint32_t s);
  // The pages of `r` are no longer resident.
  void Forget(Run r);
  uint32_t stamp(Pgno p) const { return Ref(p).load(std::memory_order_acquire); }
  // Pages with a stamp: the resident pages the pager knows of.
  uint64_t resident() const { return resident_.load(std::memory_order_relaxed); }

  // Up to `want` pages below `limit` with a stamp in [1, durable], lowest
  // stamps first; among pages of one stamp band, in address order from a
  // hand that moves on past what it took (so repeated calls go round the
  // region instead of taking the same low pages). Appends them to *out as
  // ascending runs; returns how many. Reads every stamp below `limit` up to
  // three times: about 1 ms per 256 MiB of region below it.
  uint64_t Choose(Pgno limit, uint32_t durable, uint64_t want, std::vector<Run>* out);
  // The pages of `r` with a stamp in [1, durable] get stamp 1, the lowest,
  // so Choose takes them first (advice dont-need); a page stamped higher
  // meanwhile keeps its stamp. Appends them to *out as ascending runs;
  // returns how many.
  uint64_t Demote(Run r, uint32_t durable, std::vector<Run>* out);

 private:
  std::atomic_ref<uint32_t> Ref(Pgno p) const { return std::atomic_ref<uint32_t>(stamps_[p]); }
  uint64_t pages_;
  uint32_t* stamps_;
  uint64_t bytes_;
  std::atomic<uint64_t> resident_{0};
  Pgno hand_ = 0;  // Choose's only
};

}  // namespace pheap
