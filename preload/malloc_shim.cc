// The interposed malloc family and every operator new/delete form. Each is
// a few instructions over Route()/InRegion() (preload.h): the persistent
// heap's allocator when the heap is open and the caller is the program,
// glibc otherwise. Semantics follow glibc's: malloc(0) returns a unique
// block, realloc(NULL, n) is malloc(n), realloc(p, 0) frees p and returns
// NULL, free(NULL) does nothing, failures set errno to ENOMEM.
#include <errno.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "base/types.h"
#include "preload/libc_syms.h"
#include "preload/preload.h"

namespace pheap::preload {
namespace {

inline bool PowerOfTwo(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

void* Malloc(size_t n) {
  if (Allocator* a = Route()) {
    if (void* p = a->Malloc(n); __builtin_expect(p != nullptr, 1)) return p;
    WarnRegionFull(n);
  }
  return InLibc(&LibcAllocator::malloc, n);
}

void* AlignedMalloc(size_t align, size_t n) {
  if (align <= 8) return Malloc(n);  // every block is 8-aligned
  if (!PowerOfTwo(align)) align = std::bit_ceil(align);
  if (Allocator* a = Route()) {
    if (void* p = a->AlignedAlloc(align, n); p != nullptr) return p;
    WarnRegionFull(n);
  }
  return InLibc(&LibcAllocator::memalign, align, n);
}

void Free(void* p) {
  if (InRegion(p)) {
    HeapAllocator()->Free(p);
  } else if (p != nullptr) {
    InLibc(&LibcAllocator::free, p);
  }
}

void* Calloc(size_t count, size_t n) {
  if (n != 0 && count > SIZE_MAX / n) {
    errno = ENOMEM;
    return nullptr;
  }
  if (Allocator* a = Route()) {
    if (void* p = a->Calloc(count, n); p != nullptr) return p;
    WarnRegionFull(count * n);
  }
  return InLibc(&LibcAllocator::calloc, count, n);
}

void* Realloc(void* p, size_t n) {
  if (p == nullptr) return Malloc(n);
  if (!InRegion(p)) return InLibc(&LibcAllocator::realloc, p, n);  // glibc's block stays glibc's
  Allocator* a = HeapAllocator();
  if (n == 0) {
    a->Free(p);
    return nullptr;
  }
  if (void* q = a->Realloc(p, n); q != nullptr) return q;
  WarnRegionFull(n);
  void* q = InLibc(&LibcAllocator::malloc, n);
  if (q == nullptr) return nullptr;  // p stays valid
  std::memcpy(q, p, std::min(n, a->UsableSize(p)));
  a->Free(p);
  return q;
}

size_t UsableSize(void* p) {
  if (InRegion(p)) return HeapAllocator()->UsableSize(p);
  return p == nullptr ? 0 : Libc().malloc_usable_size(p);
}

// operator new: retry through the new-handler, then throw (or return null).
void* New(size_t n, size_t align, bool nothrow) {
  for (;;) {
    void* p = align > 16 ? AlignedMalloc(align, n) : Malloc(n);
    if (p != nullptr) return p;
    std::new_handler h = std::get_new_handler();
    if (h == nullptr) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    h();
  }
}

}  // namespace
}  // namespace pheap::preload

namespace pp = pheap::preload;

extern "C" {

void* malloc(size_t n) { return pp::Malloc(n); }
void free(void* p) { pp::Free(p); }
void* calloc(size_t count, size_t n) { return pp::Calloc(count, n); }
void* realloc(void* p, size_t n) { return pp::Realloc(p, n); }
void* reallocarray(void* p, size_t count, size_t n) {
  if (n != 0 && count > SIZE_MAX / n) {
    errno = ENOMEM;
    return nullptr;
  }
  return pp::Realloc(p, count * n);
}
void* memalign(size_t align, size_t n) { return pp::AlignedMalloc(align, n); }
void* aligned_alloc(size_t align, size_t n) { return pp::AlignedMalloc(align, n); }
int posix_memalign(void** out, size_t align, size_t n) {
  if (align % sizeof(void*) != 0 || !pp::PowerOfTwo(align)) return EINVAL;
  void* p = pp::AlignedMalloc(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void* valloc(size_t n) { return pp::AlignedMalloc(pheap::kPageSize, n); }
void* pvalloc(size_t n) {
  return pp::AlignedMalloc(pheap::kPageSize, (n + pheap::kPageSize - 1) & ~(pheap::kPageSize - 1));
}
size_t malloc_usable_size(void* p) { return pp::UsableSize(p); }

// The __libc_* aliases glibc exports for the same functions.
void* __libc_malloc(size_t n) { return pp::Malloc(n); }
void __libc_free(void* p) { pp::Free(p); }
void* __libc_calloc(size_t count, size_t n) { return pp::Calloc(count, n); }
void* __libc_realloc(void* p, size_t n) { return pp::Realloc(p, n); }
void* __libc_memalign(size_t align, size_t n) { return pp::AlignedMalloc(align, n); }
void* __libc_valloc(size_t n) { return valloc(n); }
void* __libc_pvalloc(size_t n) { return pvalloc(n); }

// Tuning and statistics: glibc's answers for glibc's part (what the loader
// and pheap itself allocate), with the persistent heap's figures added
// where the structure has a place for them.
int mallopt(int param, int value) { return pp::InLibc(&pp::LibcAllocator::mallopt, param, value); }

int malloc_trim(size_t pad) {
  if (pheap::Allocator* a = pheap::ProcessHeapAllocator()) a->Collect();
  return pp::InLibc(&pp::LibcAllocator::malloc_trim, pad);
}

struct mallinfo2 mallinfo2(void) {
  struct mallinfo2 m = pp::InLibc(&pp::LibcAllocator::mallinfo2);
  if (pheap::Allocator* a = pheap::ProcessHeapAllocator()) {
    pheap::AllocatorStats s = a->Stats();
    m.arena += s.bytes_reserved;
    m.uordblks += s.bytes_live;
    m.fordblks += s.bytes_reserved > s.bytes_live ? s.bytes_reserved - s.bytes_live : 0;
  }
  return m;
}

struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo m {};
  // The old structure's int fields wrap past 2 GiB, as glibc's do.
  m.arena = static_cast<int>(m2.arena);
  m.ordblks = static_cast<int>(m2.ordblks);
  m.smblks = static_cast<int>(m2.smblks);
  m.hblks = static_cast<int>(m2.hblks);
  m.hblkhd = static_cast<int>(m2.hblkhd);
  m.usmblks = static_cast<int>(m2.usmblks);
  m.fsmblks = static_cast<int>(m2.fsmblks);
  m.uordblks = static_cast<int>(m2.uordblks);
  m.fordblks = static_cast<int>(m2.fordblks);
  m.keepcost = static_cast<int>(m2.keepcost);
  return m;
}

void malloc_stats(void) {
  pp::InLibc(&pp::LibcAllocator::malloc_stats);
  if (pheap::Allocator* a = pheap::ProcessHeapAllocator()) {
    pheap::AllocatorStats s = a->Stats();
    dprintf(2, "pheap heap: in use bytes = %llu, reserved bytes = %llu, segments = %llu\n",
            static_cast<unsigned long long>(s.bytes_live), static_cast<unsigned long long>(s.bytes_reserved),
            static_cast<unsigned long long>(s.segments));
  }
}

int malloc_info(int options, FILE* out) { return pp::InLibc(&pp::LibcAllocator::malloc_info, options, out); }

}  // extern "C"

// Every operator new/delete form.
void* operator new(size_t n) { return pp::New(n, 0, false); }
void* operator new[](size_t n) { return pp::New(n, 0, false); }
void* operator new(size_t n, const std::nothrow_t&) noexcept { return pp::New(n, 0, true); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return pp::New(n, 0, true); }
void* operator new(size_t n, std::align_val_t a) { return pp::New(n, static_cast<size_t>(a), false); }
void* operator new[](size_t n, std::align_val_t a) { return pp::New(n, static_cast<size_t>(a), false); }
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return pp::New(n, static_cast<size_t>(a), true);
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return pp::New(n, static_cast<size_t>(a), true);
}
void operator delete(void* p) noexcept { pp::Free(p); }
void operator delete[](void* p) noexcept { pp::Free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { pp::Free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { pp::Free(p); }
void operator delete(void* p, size_t) noexcept { pp::Free(p); }
void operator delete[](void* p, size_t) noexcept { pp::Free(p); }
void operator delete(void* p, std::align_val_t) noexcept { pp::Free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { pp::Free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { pp::Free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { pp::Free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { pp::Free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { pp::Free(p); }
