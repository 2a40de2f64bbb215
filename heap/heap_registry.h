// The open heaps of this process, found by address without a lock: for
// pheap_of(), and for the preload library's free(), which asks on every
// call and must stay a couple of loads and a compare.
//
// A heap publishes its slot once fully open and clears it before closing.
// A lookup racing with a close may see the slot just emptied: it answers
// "none", as it would a moment later.
#pragma once

#include <atomic>
#include <cstdint>

namespace pheap {

class Allocator;
class PersistentHeap;

struct OpenHeapSlot {
  std::atomic<uintptr_t> base{0};
  std::atomic<uint64_t> size{0};               // 0: empty
  std::atomic<PersistentHeap*> heap{nullptr};  // published (release) after base and size
  std::atomic<Allocator*> alloc{nullptr};      // slot 0 only, published last
};

inline constexpr int kMaxOpenHeaps = 64;
// Slot 0 holds the process heap, the one that serves the program's malloc
// (PersistentHeap::ServeProcessMalloc); every other open heap takes one of
// the rest. Written under PersistentHeap's registry lock only.
extern OpenHeapSlot g_open_heaps[kMaxOpenHeaps];

// Whether p lies in the process heap's region (false while there is none).
inline bool InProcessHeap(const void* p) {
  const OpenHeapSlot& s = g_open_heaps[0];
  return reinterpret_cast<uintptr_t>(p) - s.base.load(std::memory_order_relaxed) <
         s.size.load(std::memory_order_relaxed);
}

// The process heap's allocator, or null. Once set it stays for the
// process: the process heap is never closed.
inline Allocator* ProcessHeapAllocator(std::memory_order order = std::memory_order_acquire) {
  return g_open_heaps[0].alloc.load(order);
}

// The size of the process heap's region (0 while there is none).
inline uint64_t ProcessHeapSize() { return g_open_heaps[0].size.load(std::memory_order_relaxed); }

// The open heap whose region holds p, or null.
inline PersistentHeap* HeapContaining(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  for (const OpenHeapSlot& s : g_open_heaps) {
    PersistentHeap* h = s.heap.load(std::memory_order_acquire);
    if (h != nullptr && a - s.base.load(std::memory_order_relaxed) < s.size.load(std::memory_order_relaxed)) return h;
  }
  return nullptr;
}

}  // namespace pheap
