// The statistics record a program run under the preload library keeps in
// its heap, under the root kPreloadStatsRoot, so they outlive the process:
// `pheap inspect` prints them. Written before each commit, so the record in
// epoch E describes the commits before E. Plain integers only: the record
// is read back from the store by a process that runs none of this code.
// The format lives in heap/, below both its writer (preload/) and its
// reader (tools/), which depend on heap/ and not on each other.
#pragma once

#include <cstdint>

#include "base/status.h"
#include "store/page_store.h"

namespace pheap {

inline constexpr char kPreloadStatsRoot[] = "pheap.preload.stats";
inline constexpr char kPreloadStatsType[] = "pheap::PreloadStats/1";
inline constexpr uint64_t kPreloadStatsMagic = 0x5453444c45525050ull;  // "PPRELDST"

struct PreloadStats {
  uint64_t magic;
  uint32_t version;       // 1
  uint32_t pid;           // the process that wrote it last
  uint64_t commits;       // commits with a measured pause, in this process
  uint64_t commit_ms;     // the period asked for (0: only the final commit)
  uint64_t pause_p50_ns;  // threads stopped during a commit's cut
  uint64_t pause_p99_ns;
  uint64_t pause_max_ns;
  uint64_t last_dirty_pages;
  uint64_t paused_threads;  // in the last commit
  char program[64];         // NUL-terminated, truncated
};
static_assert(sizeof(PreloadStats) == 136);

// The record as of the store's durable image (heap/stored_image.h). NotFound
// if the heap has no such root (it never ran under the preload library);
// Corruption if the root points outside the region or at bytes that are
// not a record.
Result<PreloadStats> ReadPreloadStats(PageStore& store);

}  // namespace pheap
