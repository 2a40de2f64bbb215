// The slow path of small allocations: binding threads to thread heaps,
// finding a heap page with a free block (collect, extend, reclaim an
// abandoned page, or carve a new one), and giving a thread's pages back when
// it exits.
#include <cstring>

#include "base/log.h"
#include "heap/alloc_internal.h"
#include "heap/allocator.h"

namespace pheap {

using namespace alloc;

namespace alloc {

void QueuePushFront(PageQueue& q, PageDesc* pg) {
  pg->prev = nullptr;
  pg->next = q.first;
  if (q.first != nullptr) q.first->prev = pg;
  else q.last = pg;
  q.first = pg;
  ++q.count;
}

void QueuePushBack(PageQueue& q, PageDesc* pg) {
  pg->next = nullptr;
  pg->prev = q.last;
  if (q.last != nullptr) q.last->next = pg;
  else q.first = pg;
  q.last = pg;
  ++q.count;
}

void QueueRemove(PageQueue& q, PageDesc* pg) {
  if (pg->prev != nullptr) pg->prev->next = pg->next;
  else q.first = pg->next;
  if (pg->next != nullptr) pg->next->prev = pg->prev;
  else q.last = pg->prev;
  pg->next = pg->prev = nullptr;
  --q.count;
}

uint32_t CountList(const Block* b, uint32_t limit) {
  uint32_t n = 0;
  for (; b != nullptr && n <= limit; b = b->next) ++n;
  return n;
}

}  // namespace alloc

namespace {

// Pages examined per slow-path call before a new one is taken: bounds the
// walk over full pages, which rotate to the back of the queue.
constexpr unsigned kMaxPageScan = 8;

void SetDirect(ThreadHeap* h, unsigned bin, PageDesc* empty) {
  h->direct[bin] = h->queues[bin].first != nullptr ? h->queues[bin].first : empty;
}

// True if every block the page handed out is back on one of its lists.
// Blocks on the thread-free list still count in `used`; if they are all of
// them, nobody can legally push again, so the count is stable.
bool AllFree(const PageDesc* pg) {
  uint32_t used = pg->used.load(std::memory_order_relaxed);
  return used == 0 ||
         CountList(pg->xfree.load(std::memory_order_acquire), pg->reserved) == used;
}

}  // namespace

// --- thread heaps ---------------------------------------------------------

ThreadHeap* Allocator::CurrentHeap() {
  if (tls_binding.owner == id_) return tls_binding.heap == &overflow_binding_heap_ ? nullptr : tls_binding.heap;
  if (auto* b = static_cast<HeapBinding*>(pthread_getspecific(key_))) {
    tls_binding = {id_, b->heap};
    return b->heap;
  }
  unsigned slot = 0;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (unsigned i = 1; i < kMaxThreadHeaps; ++i) {
      ThreadHeap* h = &hdr_->heaps[i];
      if (h->incarnation == hdr_->incarnation) continue;
      memset(h->queues, 0, sizeof(h->queues));
      for (unsigned bin = 0; bin < kBinCount; ++bin) h->direct[bin] = &hdr_->empty_page;
      h->incarnation = hdr_->incarnation;
      slot = i;
      break;
    }
  }
  if (slot == 0) {  // table full: share heap 0 under overflow_mu_
    tls_binding = {id_, &overflow_binding_heap_};
    return nullptr;
  }
  bindings_[slot] = {this, &hdr_->heaps[slot]};
  pthread_setspecific(key_, &bindings_[slot]);
  tls_binding = {id_, &hdr_->heaps[slot]};
  return tls_binding.heap;
}

void Allocator::ThreadExit(void* arg) {
  auto* b = static_cast<HeapBinding*>(arg);
  Allocator* self = b->self;
  self->ReleaseHeap(b->heap);
  if (tls_binding.owner == self->id_) tls_binding = {0, nullptr};
}

void Allocator::ReleaseThreadHeap() {
  auto* b = static_cast<HeapBinding*>(pthread_getspecific(key_));
  if (b == nullptr) return;
  pthread_setspecific(key_, nullptr);
  ThreadExit(b);
}

void Allocator::ReleaseHeap(ThreadHeap* h) {
  std::lock_guard<std::mutex> g(mu_);
  for (unsigned bin = 1; bin < kBinCount; ++bin) {
    PageQueue& q = h->queues[bin];
    while (PageDesc* pg = q.first) {
      QueueRemove(q, pg);
      if (AllFree(pg)) {
        RetirePage(pg);
      } else {
        pg->heap.store(nullptr, std::memory_order_relaxed);
        QueuePushBack(hdr_->abandoned[bin], pg);
      }
    }
    h->direct[bin] = &hdr_->empty_page;
  }
  h->incarnation = 0;
}

void Allocator::Collect() {
  std::lock_guard<std::mutex> g(mu_);
  for (unsigned bin = 1; bin < kBinCount; ++bin) {
    PageQueue& q = hdr_->abandoned[bin];
    for (PageDesc *pg = q.first, *next; pg != nullptr; pg = next) {
      next = pg->next;
      CollectPage(pg);
      if (pg->used.load(std::memory_order_relaxed) != 0) continue;
      QueueRemove(q, pg);
      RetirePage(pg);
    }
  }
}

// --- heap pages -----------------------------------------------------------

void* Allocator::AllocSmall(ThreadHeap* h, unsigned bin) {
  PageDesc* pg = h->direct[bin];
  if (pg->free == nullptr) {
    pg = FindPage(h, bin);
    if (pg == nullptr) return nullptr;
  }
  Block* b = pg->free;
  pg->free = b->next;
  pg->used.store(pg->used.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return b;
}

PageDesc* Allocator::FindPage(ThreadHeap* h, unsigned bin) {
  PageQueue& q = h->queues[bin];
  for (unsigned i = 0, n = q.count; i < n && i < kMaxPageScan; ++i) {
    PageDesc* pg = q.first;
    if (EnsureFree(pg)) {
      SetDirect(h, bin, &hdr_->empty_page);
      return pg;
    }
    if (q.count > 1) {  // full: to the back, met again once frees arrive
      QueueRemove(q, pg);
      QueuePushBack(q, pg);
    }
  }
  PageDesc* pg = ReclaimAbandoned(h, bin);
  if (pg == nullptr) {
    pg = NewSmallPage(h, bin);
    if (pg == nullptr) return nullptr;
    ExtendFreeList(pg);
  }
  QueuePushFront(q, pg);
  SetDirect(h, bin, &hdr_->empty_page);
  return pg;
}

bool Allocator::EnsureFree(PageDesc* pg) {
  if (pg->free != nullptr) return true;
  CollectPage(pg);
  if (pg->free != nullptr) return true;
  if (pg->capacity < pg->reserved) ExtendFreeList(pg);
  return pg->free != nullptr;
}

// Moves the thread-free list to the end of `free` (alloc_types.h, point 3:
// until the CAS empties xfree, free's tail links into xfree's chain, which
// only ever grows at its head). Walks `free` to its tail, so the hot caller
// calls it with `free` empty.
// REQUIRES: the caller owns pg (or holds mu_ and pg is abandoned).
void Allocator::CollectPage(PageDesc* pg) {
  Block* head = pg->xfree.load(std::memory_order_acquire);
  if (head == nullptr) return;
  Block* tail = pg->free;
  if (tail != nullptr) {
    uint32_t limit = pg->reserved;
    while (tail->next != nullptr && limit-- > 0) tail = tail->next;
  }
  do {
    if (tail != nullptr) tail->next = head;
    else pg->free = head;
  } while (!pg->xfree.compare_exchange_weak(head, nullptr, std::memory_order_acq_rel,
                                            std::memory_order_acquire));
  uint32_t n = CountList(head, pg->reserved);
  uint32_t used = pg->used.load(std::memory_order_relaxed);
  if (PHEAP_UNLIKELY(n > used)) {
    // More blocks came back than were out: a block was freed twice and the
    // list is cyclic. Cut it off; the page keeps what it had.
    ReportCorruption("thread-free list longer than the blocks handed out (double free?)",
                     head, pg->block_size);
    if (tail != nullptr) tail->next = nullptr;
    else pg->free = nullptr;
    return;
  }
  pg->used.store(used - n, std::memory_order_relaxed);
}

// REQUIRES: pg->free == nullptr. Links the next kExtendBytes of never-used
// blocks, then publishes them (alloc_types.h, point 4).
void Allocator::ExtendFreeList(PageDesc* pg) {
  size_t bs = pg->block_size;
  uint32_t cap = pg->capacity;
  uint32_t n = static_cast<uint32_t>(kExtendBytes / bs);
  if (n == 0) n = 1;
  if (n > pg->reserved - cap) n = pg->reserved - cap;
  if (n == 0) return;
  uint8_t* first = PageStart(pg) + size_t{cap} * bs;
  uint8_t* b = first;
  for (uint32_t i = 1; i < n; ++i, b += bs) reinterpret_cast<Block*>(b)->next = reinterpret_cast<Block*>(b + bs);
  reinterpret_cast<Block*>(b)->next = nullptr;
  pg->free = reinterpret_cast<Block*>(first);
  pg->capacity = cap + n;
}

PageDesc* Allocator::ReclaimAbandoned(ThreadHeap* h, unsigned bin) {
  for (unsigned tries = 0; tries < kMaxPageScan; ++tries) {
    PageDesc* pg;
    {
      std::lock_guard<std::mutex> g(mu_);
      PageQueue& aq = hdr_->abandoned[bin];
      pg = aq.first;
      if (pg == nullptr) return nullptr;
      QueueRemove(aq, pg);
      pg->heap.store(h, std::memory_order_relaxed);
      ++hdr_->abandoned_reclaimed;
    }
    if (EnsureFree(pg)) return pg;
    QueuePushBack(h->queues[bin], pg);  // full: ours now, used once frees arrive
    SetDirect(h, bin, &hdr_->empty_page);
  }
  return nullptr;
}

PageDesc* Allocator::NewSmallPage(ThreadHeap* h, unsigned bin) {
  unsigned slots = PageSlots(bin);
  std::lock_guard<std::mutex> g(mu_);
  PageDesc* pg = AllocRun(slots, 1, nullptr);
  if (pg == nullptr) return nullptr;
  pg->free = nullptr;
  pg->xfree.store(nullptr, std::memory_order_relaxed);
  pg->heap.store(h, std::memory_order_relaxed);
  pg->next = pg->prev = nullptr;
  pg->used.store(0, std::memory_order_relaxed);
  pg->capacity = 0;
  pg->block_size = static_cast<uint32_t>(BinSize(bin));
  pg->reserved = static_cast<uint32_t>((size_t{slots} << kSlotShift) / pg->block_size);
  pg->bin = static_cast<uint8_t>(bin);
  pg->kind.store(kPageSmall, std::memory_order_release);
  return pg;
}

// The owner freed the last block of pg. Keeps the page if it is the one the
// bin allocates from (so a malloc/free loop does not churn pages).
void Allocator::PageEmptied(ThreadHeap* h, PageDesc* pg) {
  PageQueue& q = h->queues[pg->bin];
  if (q.first == pg) return;
  std::lock_guard<std::mutex> g(mu_);
  QueueRemove(q, pg);
  RetirePage(pg);
}

}  // namespace pheap
