// The model behind the heap crash oracle: operation k of the list either
// appends a node whose size and bytes depend only on k, or removes the node
// at a position chosen by k. Replaying operations 1..C gives the exact list
// after C operations, computed without looking at the heap.
#pragma once

#include "tests/support/test_util.h"

#include <cstdint>
#include <vector>

namespace pheaptest::oracle {

using pheaptest::Mix;

struct Op {
  bool remove;
  uint64_t position;  // for remove: index = position % count
  uint64_t size;      // for append: payload bytes
};

inline Op OpFor(uint64_t seed, uint64_t k, uint64_t count) {
  uint64_t r = Mix(seed ^ Mix(k));
  Op op;
  op.remove = count > 0 && (r % 5 < 2 || count > 3000);
  op.position = r >> 8;
  // Mostly small nodes, some large ones so every allocator path is used.
  op.size = (r >> 40) % 16 == 0 ? 4096 + (r >> 20) % 300000 : 8 + (r >> 20) % 1500;
  return op;
}

inline uint8_t PayloadByte(uint64_t k, uint64_t i) { return static_cast<uint8_t>(Mix(k) + i * 131); }

// The list after `ops` operations: each element is the k that appended it.
inline std::vector<uint64_t> Replay(uint64_t seed, uint64_t ops) {
  std::vector<uint64_t> list;
  for (uint64_t k = 1; k <= ops; ++k) {
    Op op = OpFor(seed, k, list.size());
    if (op.remove) list.erase(list.begin() + static_cast<long>(op.position % list.size()));
    else list.push_back(k);
  }
  return list;
}

// The heap-resident structures (the root "state").
struct Node {
  Node* next;
  uint64_t k;
  uint64_t size;
  uint8_t* payload;  // a separate allocation of `size` bytes
};

constexpr int kMaxWriters = 8;

struct State {
  uint64_t seed;
  uint64_t ops;    // operations applied
  uint64_t count;  // nodes in the list
  Node* head;
  uint64_t* pair_a[kMaxWriters];  // each in its own 4 KiB block
  uint64_t* pair_b[kMaxWriters];
  // Ballast for a heap larger than its memory budget (or null): operation k
  // writes k into the first and last word of page k % ballast_pages.
  uint64_t* ballast;
  uint64_t ballast_pages;
};

// What ballast page i holds after `ops` operations: the last k <= ops with
// k % pages == i, or 0.
inline uint64_t BallastAfter(uint64_t ops, uint64_t i, uint64_t pages) {
  if (ops < i || (i == 0 && ops < pages)) return 0;
  return ops - (ops - i) % pages;
}

}  // namespace pheaptest::oracle
