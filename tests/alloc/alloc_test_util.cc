#include "tests/alloc/alloc_test_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace pheap::testing {

pheap::Status MadviseHooks::Discard(void* addr, size_t len) {
  calls.fetch_add(1, std::memory_order_relaxed);
  bytes.fetch_add(len, std::memory_order_relaxed);
  // A shared mapping keeps its file pages under MADV_DONTNEED; MADV_REMOVE
  // punches them out so the range reads as zeros, as the contract says.
  if (madvise(addr, len, shared_ ? MADV_REMOVE : MADV_DONTNEED) != 0) {
    return pheap::Status::FromErrno("madvise of the test arena", errno);
  }
  return pheap::Status::Ok();
}

TestArena::TestArena(size_t size, bool shared, uintptr_t offset) : size_(size), hooks_(shared) {
  int flags = MAP_FIXED_NOREPLACE | MAP_NORESERVE;
  if (shared) {
    fd_ = memfd_create("pheap-alloc-test", MFD_CLOEXEC);
    if (fd_ < 0 || ftruncate(fd_, static_cast<off_t>(size)) != 0) return;
    flags |= MAP_SHARED;
  } else {
    flags |= MAP_PRIVATE | MAP_ANONYMOUS;
  }
  void* want = reinterpret_cast<void*>(kTestArenaBase + offset);
  void* p = mmap(want, size, PROT_READ | PROT_WRITE, flags, fd_, 0);
  if (p == MAP_FAILED || p != want) {
    perror("mapping the test arena");
    if (p != MAP_FAILED) munmap(p, size);
    return;
  }
  base_ = p;
}

TestArena::~TestArena() {
  if (base_ != nullptr) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

uint64_t ResidentBytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0, resident = 0;
  if (f != nullptr) {
    if (fscanf(f, "%lu %lu", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return uint64_t{resident} * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace pheap::testing
