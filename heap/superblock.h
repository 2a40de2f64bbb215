// The superblock: the first kSuperblockSize bytes of every heap's region.
// It holds what a new process needs to find its way into the heap: the
// format, the code identity of the last writer, and the named roots. The
// allocator's arena follows it.
//
//   region: [ superblock | allocator arena ............................ ]
//           base         base + kSuperblockSize                 base + size
//
// Like everything in the region it is captured by commits at arbitrary
// instants, so each update leaves it consistent at every instant (see
// roots.h). It holds no lock: locks are process-local.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/types.h"

namespace pheap {

inline constexpr uint64_t kSuperblockMagic = 0x31424b4150454850ull;  // "PHEAPKB1"
inline constexpr uint32_t kSuperblockVersion = 1;
inline constexpr uint64_t kSuperblockSize = uint64_t{256} << 10;
inline constexpr size_t kRootNameMax = 127;  // bytes, without the NUL
inline constexpr size_t kRootTypeMax = 127;

// Who wrote the heap: code pointers stored in it (vtables, function
// pointers) are valid only for the same executable at the same load bias.
struct CodeIdentity {
  uint8_t build_id[32];
  uint32_t build_id_len;
  uint32_t aslr_disabled;  // the writer ran with ADDR_NO_RANDOMIZE
  uint64_t load_bias;      // of the main executable
  char exe[256];           // for messages only
};

// One named root. A slot is published by its `seq` becoming non-zero (a
// release store, after every other field is written) and retired by `seq`
// going back to 0. When a name has several published slots, the highest
// seq wins, so a change of type can publish the new slot before retiring
// the old one and every instant shows one answer.
struct RootSlot {
  std::atomic<uint64_t> seq;
  std::atomic<uint64_t> ptr;
  uint64_t name_hash;
  char name[kRootNameMax + 1];
  char type[kRootTypeMax + 1];
};

struct SuperblockHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t root_capacity;
  uint64_t region_size;        // as of the last open (information only)
  std::atomic<uint64_t> next_root_seq;
  uint64_t opens;              // processes that opened the heap for writing
  CodeIdentity code;
  // Non-zero once the heap may hold code pointers: the C++ API constructed
  // a polymorphic type, or the program declared it (pheap_holds_code).
  // Only such a heap has its code identity checked at open. Heaps written
  // before this field read it as 0 (the header's padding was zero).
  std::atomic<uint32_t> holds_code;
  // The last writer's dirty-tracking mode (TrackingMode, base/types.h), for
  // inspection; 0 (auto) in heaps written before it was recorded.
  uint32_t tracking_mode;
};

inline constexpr size_t kRootCapacity =
    (kSuperblockSize - ((sizeof(SuperblockHeader) + 63) & ~size_t{63})) / sizeof(RootSlot);

struct Superblock {
  SuperblockHeader h;
  alignas(64) RootSlot roots[kRootCapacity];
};
static_assert(sizeof(Superblock) <= kSuperblockSize);
static_assert(offsetof(Superblock, roots) == 384, "the roots stay where heaps of format version 1 hold them");
static_assert(sizeof(RootSlot) == 280);

}  // namespace pheap
