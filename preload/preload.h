// The preload library's shared state: which allocator serves a call.
//
// Routing rule, applied by every interposed function (malloc_shim.cc):
//   - the heap is not open (yet, or it failed to open): glibc;
//   - the calling thread is inside pheap code or is one of pheap's own
//     threads (t_bypass > 0): glibc, so pheap never allocates in the region
//     it serves (a fault thread faulting on the region would wait for
//     itself, and a commit must not take the allocator's lock while the
//     program's threads, which may hold it, are paused);
//   - otherwise: the persistent heap's allocator.
// free/realloc/malloc_usable_size route by address instead: a pointer
// inside the region belongs to the heap, any other to glibc (what the loader
// and libraries allocated before the heap opened, and pheap's own memory).
#pragma once

#include <signal.h>

#include <atomic>
#include <cstdint>

#include "heap/allocator.h"
#include "heap/heap_registry.h"

namespace pheap::preload {

// > 0 while the thread runs pheap code; 1 for good on pheap's threads.
extern constinit thread_local int t_bypass;

// The heap's region and allocator are heap/heap_registry.h's process heap,
// published (release) once the heap is open and never withdrawn, so
// pointers into the region stay valid until the process ends.
inline bool InRegion(const void* p) { return InProcessHeap(p); }

// The allocator of a block InRegion found (or null before the heap opens).
inline Allocator* HeapAllocator() { return ProcessHeapAllocator(std::memory_order_relaxed); }

// The allocator for a new block, or null for glibc.
inline Allocator* Route() {
  Allocator* a = ProcessHeapAllocator(std::memory_order_acquire);
  return __builtin_expect(a != nullptr && t_bypass == 0, 1) ? a : nullptr;
}

// Marks the current scope as pheap code.
class Bypass {
 public:
  Bypass() { ++t_bypass; }
  ~Bypass() { --t_bypass; }
  Bypass(const Bypass&) = delete;
  Bypass& operator=(const Bypass&) = delete;
};

// The heap ran out of room for n bytes: glibc serves the block (warned
// once, and not for a block larger than the region, which never fit).
void WarnRegionFull(size_t n);

// sigaction(SIGTERM, act, old) while SIGTERM's handler is pheap's: the
// program's view is read and set as signal_shim.cc describes, and true is
// returned. False once the handler is the program's or was never pheap's:
// the call goes to the C library.
bool SigtermAction(const struct sigaction* act, struct sigaction* old);

// sigaction as the program calls it: a handler is installed behind a
// trampoline of pheap's (signal_shim.cc), and reads back as the program's.
int ProgramSigaction(int sig, const struct sigaction* act, struct sigaction* old);

// The final commit, once, and only in the process that opened the heap:
// from atexit, and from _exit and _Exit, which skip atexit handlers.
void AtExit();

}  // namespace pheap::preload
