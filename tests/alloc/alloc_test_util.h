// Arenas for allocator tests: memory at a fixed address,
// private anonymous or a MAP_SHARED memfd (so forked children share it), and
// ArenaHooks that discard with madvise and count what they were asked.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "heap/allocator.h"

namespace pheap::testing {

// Inside the application ranges of both ASan and TSan (gcc 12) on x86-64,
// above where the kernel places PIE executables.
inline constexpr uintptr_t kTestArenaBase = uintptr_t{0x566000000000};

class MadviseHooks : public pheap::ArenaHooks {
 public:
  explicit MadviseHooks(bool shared) : shared_(shared) {}
  pheap::Status Discard(void* addr, size_t len) override;
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> bytes{0};

 private:
  bool shared_;
};

// One mapping at kTestArenaBase + offset; unmapped by the destructor.
class TestArena {
 public:
  // shared: a memfd mapped MAP_SHARED (children of fork see the same bytes).
  TestArena(size_t size, bool shared, uintptr_t offset = 0);
  ~TestArena();
  TestArena(const TestArena&) = delete;
  TestArena& operator=(const TestArena&) = delete;
  bool ok() const { return base_ != nullptr; }
  void* base() const { return base_; }
  size_t size() const { return size_; }
  MadviseHooks& hooks() { return hooks_; }

 private:
  void* base_ = nullptr;
  size_t size_;
  int fd_ = -1;
  MadviseHooks hooks_;
};

// Resident set of the process in bytes (from /proc/self/statm).
uint64_t ResidentBytes();

}  // namespace pheap::testing
