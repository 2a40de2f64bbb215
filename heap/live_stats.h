// Live statistics of an open heap, for `pheap top`: the file LIVE in the
// heap's store directory (byte layout in docs/live-stats.md). The process
// holding the heap maps it shared and rewrites it from a background thread
// of its own (Engine), a few times a second; a reader maps it read-only.
//
// Why a file and not a socket or /proc/PID/mem: the program does nothing
// per reader (no thread answers, no reader can stall it), a reader needs no
// ptrace right and no knowledge of the program's memory, and the file is
// found by the heap's name or, as a mapped file, in /proc/PID/maps. Why not
// a page of the region: every write there would dirty a page for the next
// commit, and the region's faults go to the pager.
//
// A reader never sees a torn snapshot and never blocks the writer: the
// writer makes the sequence word odd, writes the snapshot, makes it even
// (a seqlock); a reader copies the snapshot and keeps it only if the word
// was even and unchanged around the copy.
//
// Thread safety: one writer (Publish) at a time; Read from any number of
// threads and processes at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"

namespace pheap {

inline constexpr char kLiveFileName[] = "LIVE";
inline constexpr uint64_t kLiveMagic = 0x56494c5041454850ull;  // "PHEAPLIV"
inline constexpr uint32_t kLiveVersion = 1;
inline constexpr uint64_t kLiveFileBytes = 4096;
inline constexpr uint64_t kLiveHeaderBytes = 64;  // magic, version, size, sequence word
inline constexpr int kLiveReplicas = 8;

// LiveStats::state
inline constexpr uint64_t kLiveOpen = 1;
inline constexpr uint64_t kLiveClosed = 2;  // the heap was closed; the pid may still run
// LiveReplica::flags
inline constexpr uint64_t kLiveAnswered = 1;    // answered at open
inline constexpr uint64_t kLiveInstalling = 2;  // an image is being installed on it

struct LiveReplica {
  char endpoint[96];  // NUL-terminated, truncated
  uint64_t durable_epoch;
  uint64_t flags;
};

// One snapshot. Only integers and NUL-terminated strings: it is read by
// processes of other builds. Counters count since the heap was opened.
struct LiveStats {
  uint64_t pid;    // the process holding the heap
  uint64_t state;  // kLiveOpen or kLiveClosed
  uint64_t opened_unix_ns, updated_unix_ns;
  uint64_t snapshots;  // written so far, this one included
  char heap[64];       // the heap's name
  char exe[128];       // the holder's executable, truncated
  char tracking[16];   // TrackingModeName
  uint64_t base, size;
  uint64_t durable_epoch;
  uint64_t commits;  // durable commits
  uint64_t pause_cuts, pause_last_ns, pause_p50_ns, pause_p99_ns, pause_max_ns;
  uint64_t last_dirty_pages;     // written by the last commit
  uint64_t paused_threads;       // in the last commit
  uint64_t faults;               // missing faults served
  uint64_t pages_fetched;        // pages copied in from the page source (local store or replicas)
  uint64_t pages_mapped;         // pages mapped from the local store's files instead
  uint64_t pages_from_replicas;  // of pages_fetched, read from the replicas
  uint64_t replica_count;        // entries of replica[] in use
  LiveReplica replica[kLiveReplicas];
  // Written since the last commit, as of the last walk of the page tables
  // (Pager::WrittenSinceCut); kLiveUnknown where the mode cannot count.
  // Appended to version 1: a snapshot this short lacks it.
  uint64_t dirty_pages;
  // Eviction (PagerStats), appended to version 1 after dirty_pages: the
  // budget in force in bytes (0: none); the region's resident pages as the
  // pager last counted them (kLiveUnknown without a budget, where it does
  // not count); pages given back, and pages faulted in again after that.
  uint64_t memory_max;
  uint64_t resident_pages;
  uint64_t evictions;
  uint64_t refetches;
};
inline constexpr uint64_t kLiveUnknown = ~uint64_t{0};
static_assert(sizeof(LiveStats) % 8 == 0);
static_assert(kLiveHeaderBytes + sizeof(LiveStats) <= kLiveFileBytes);
static_assert(offsetof(LiveStats, refetches) == 1304, "docs/live-stats.md gives every offset");

// Copies `s` into `out` of `n` bytes, NUL-terminated and truncated.
void CopyLiveString(char* out, size_t n, const std::string& s);

class LiveStatsFile {
 public:
  // Creates (or takes over) the file at `path`, one page, mapped to write.
  // REQUIRES: the caller holds the heap's store lock (one writer per heap).
  static Result<std::unique_ptr<LiveStatsFile>> Create(const std::string& path);
  // Maps the file at `path` read-only. NotFound when there is none;
  // Corruption or Unsupported when it is not a live-statistics file this
  // build reads.
  static Result<std::unique_ptr<LiveStatsFile>> Open(const std::string& path);
  ~LiveStatsFile();
  LiveStatsFile(const LiveStatsFile&) = delete;
  LiveStatsFile& operator=(const LiveStatsFile&) = delete;

  // Writes one snapshot. REQUIRES: made by Create; one caller at a time.
  void Publish(const LiveStats& s);
  // The latest snapshot. Busy when the writer was mid-write at every try
  // (it never blocks it); NotFound when nothing was published yet.
  Result<LiveStats> Read() const;
  const std::string& path() const { return path_; }

 private:
  LiveStatsFile(std::string path, void* map, bool writable);
  std::string path_;
  void* map_;
  bool writable_;
};

}  // namespace pheap
