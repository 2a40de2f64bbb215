// FaultAroundOff: read faults that map the touched page alone.
//
// On a read fault in a file mapping the kernel also maps the neighbours of
// the page, up to 64 KiB of them that the page cache holds ("fault-around",
// /sys/kernel/debug/fault_around_bytes). It saves faults, but every page it
// maps counts in the process's RSS, used or not. The preload library runs
// inside every program: its own text would be resident almost whole, and
// its calls into the C library would widen the program's footprint there.
//
// The kernel never faults around in a range registered for userfaultfd
// write-protect (it could not mark the neighbours), and asynchronous
// write-protect may be registered on any mapping. Nothing in these ranges
// is ever write-protected, so no fault is reported and nothing else about
// them changes. The registration lasts while the FaultAroundOff lives, and a
// forked child does not inherit it.
//
// Thread safety: Add and Remove from any thread, not concurrently.
#pragma once

#include <cstdint>
#include <memory>

#include "base/status.h"

namespace pheap {

// [start, start + len), page aligned.
struct MappedRange {
  uint64_t start = 0;
  uint64_t len = 0;
};

// The read-only PT_LOAD segments (text, constants) of the loaded object
// that contains `addr`, page aligned; at most `max` of them into `out`.
// Returns how many, 0 if no object contains `addr`.
int ReadOnlySegmentsOf(const void* addr, MappedRange* out, int max);

class FaultAroundOff {
 public:
  // A userfaultfd of its own, a user-mode-only one where this process may
  // not have a full one. Errors: Unsupported when the kernel has neither or
  // no asynchronous write-protect.
  static Result<std::unique_ptr<FaultAroundOff>> Open();
  ~FaultAroundOff();  // every range faults around again
  FaultAroundOff(const FaultAroundOff&) = delete;
  FaultAroundOff& operator=(const FaultAroundOff&) = delete;

  // From now on a read fault in `r` maps the faulting page alone. Pages
  // mapped before stay mapped. REQUIRES: r is mapped and not registered
  // with another userfaultfd (not inside a heap's region).
  Status Add(MappedRange r);
  // `r` faults around again.
  Status Remove(MappedRange r);

 private:
  explicit FaultAroundOff(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace pheap
