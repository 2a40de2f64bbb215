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

#include <errno.h>
#include <signal.h>

#include <atomic>
#include <cstdint>

#include "heap/allocator.h"
#include "heap/heap_registry.h"
#include "pager/safepoint.h"

namespace pheap::preload {

// > 0 while the thread runs pheap code; 1 for good on pheap's threads.
extern constinit thread_local int t_bypass;

// The heap's region and allocator are heap/heap_registry.h's process heap,
// published (release) once the heap is open and never withdrawn, so
// pointers into the region stay valid until the process ends.
inline bool InRegion(const void* p) { return InProcessHeap(p); }

// Whether [p, p + n) touches the region.
inline bool InHeap(const void* p, size_t n) {
  return p != nullptr && n != 0 && (InRegion(p) || InRegion(static_cast<const char*>(p) + n - 1));
}

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

// Whether a sleeping call of this thread is listed (Asleep): a program
// thread, once the heap is open.
inline bool SleepsListed() { return t_bypass == 0 && HeapAllocator() != nullptr; }

// `mask`, a mask a sleeping call installs for itself, with the safepoint
// signal kept blocked as Asleep left it, in *copy; null stays null (the
// call keeps the thread's mask, where Asleep blocked it).
inline const sigset_t* KeepSafepointBlocked(const sigset_t* mask, sigset_t* copy) {
  if (mask == nullptr) return nullptr;
  *copy = *mask;
  sigaddset(copy, SafepointSignal());
  return copy;
}

// Runs a sleeping call of the C library as SafepointSleepBegin describes,
// when SleepsListed. REQUIRES (while it lives): nothing the call writes
// lies in the heap.
class Asleep {
 public:
  Asleep() : on_(SleepsListed()) {
    if (on_) SafepointSleepBegin();
  }
  ~Asleep() {  // also when a cancellation unwinds the call
    if (!on_) return;
    const int saved = errno;
    SafepointSleepEnd();
    errno = saved;
  }
  Asleep(const Asleep&) = delete;
  Asleep& operator=(const Asleep&) = delete;

 private:
  const bool on_;
};

// What a sleeping call writes through `caller` (time left, a signal's
// info), received in a copy of its own where *caller lies in the heap, and
// copied there when this ends. Declared before the Asleep it outlives, so
// the copy lands after the sleep, past any pause in progress.
template <class T>
class SleepOutput {
 public:
  explicit SleepOutput(T* caller) : caller_(caller) {
    if (InHeap(caller, sizeof(T))) {
      own_ = *caller;
      pass_ = &own_;
    }
  }
  ~SleepOutput() {
    if (pass_ == &own_) *caller_ = own_;
  }
  SleepOutput(const SleepOutput&) = delete;
  SleepOutput& operator=(const SleepOutput&) = delete;
  T* get() { return pass_; }

 private:
  T* const caller_;
  T own_{};
  T* pass_ = caller_;
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
