// Which pages of another process's memory are resident, read from its page
// table (/proc/PID/pagemap): how `pheap inspect` tells which pages of a
// heap its writer holds in memory.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"

namespace pheap {

// Whether each page of [addr, addr + pages * kPageSize) is present in the
// memory of process `pid` (swapped out or never touched: not).
// REQUIRES: addr % kPageSize == 0.
// Errors: IoError with the errno: ENOENT when the process is gone, EACCES
// when its page table is not ours to read (another user's, unprivileged).
Result<std::vector<bool>> ResidentPages(long pid, uint64_t addr, uint64_t pages);

}  // namespace pheap
