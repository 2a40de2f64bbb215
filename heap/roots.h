// Roots: the named entry points of a heap, kept in the superblock's table.
//
// Thread safety: a Roots object serialises its own calls with a process-
// local mutex; Lock() exposes it so a commit can cut between root updates.
#pragma once

#include <mutex>
#include <string>

#include "base/status.h"
#include "base/thread.h"
#include "heap/superblock.h"

namespace pheap {

// A root's type as the table holds it: `type` itself up to kRootTypeMax
// bytes; a longer one (a C++ type nested a few templates deep) keeps its
// first bytes and ends in '#' and a hash of the whole, so it still tells
// types apart.
std::string StoredRootType(const std::string& type);
// A stored type for a person: the C++ API's tag ("<mangled>/<size>/<align>")
// demangled, as "std::vector<int> (24 bytes, align 8)"; any other as it is.
std::string ReadableRootType(const std::string& stored);

class Roots {
 public:
  // REQUIRES: sb is a formatted superblock that outlives this object.
  // `fresh`: this process formatted it just now, so every slot is free and
  // lookups need not read the table's 256 KiB (each page a fault).
  Roots(Superblock* sb, bool fresh) : sb_(sb), used_(fresh ? 0 : kRootCapacity) {}

  // The pointer under `name`, or NotFound. With a non-empty `type`, a root
  // stored with another non-empty type is an InvalidArgument naming both.
  Result<void*> Get(const std::string& name, const std::string& type) const;
  // Stores p under `name` with `type` (may be empty, of any length:
  // StoredRootType); p == nullptr clears. Errors: a bad name, a full table.
  Status Set(const std::string& name, void* p, const std::string& type);
  // Calls f(name, type, ptr) for every root, in slot order.
  template <typename F>
  void ForEach(F f) const;

  std::mutex& mutex() const { return mu_; }

 private:
  int Find(const std::string& name, uint64_t hash) const;  // slot or -1
  Superblock* sb_;
  size_t used_;  // slots at and past it are free; under mu_
  mutable std::mutex mu_;
};

template <typename F>
void Roots::ForEach(F f) const {
  HoldingCommitLocks held;  // every commit takes mu_ too
  std::lock_guard<std::mutex> l(mu_);
  for (size_t i = 0; i < used_; ++i) {
    const RootSlot& s = sb_->roots[i];
    if (s.seq.load(std::memory_order_acquire) == 0) continue;
    if (Find(s.name, s.name_hash) != static_cast<int>(i)) continue;  // superseded
    f(s.name, s.type, reinterpret_cast<void*>(s.ptr.load(std::memory_order_relaxed)));
  }
}

}  // namespace pheap
