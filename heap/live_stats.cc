#include "heap/live_stats.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include <fmt/format.h>

namespace pheap {
namespace {

// Header words (docs/live-stats.md).
constexpr size_t kMagicWord = 0, kVersionWord = 1, kSeqWord = 2;
constexpr size_t kWords = sizeof(LiveStats) / 8;
// A writer is mid-write for microseconds; a reader that finds it so this
// many times in a row gives up rather than spin.
constexpr int kReadTries = 1000;

uint64_t* Words(void* map) { return static_cast<uint64_t*>(map); }

}  // namespace

void CopyLiveString(char* out, size_t n, const std::string& s) {
  const size_t len = std::min(n - 1, s.size());
  std::memcpy(out, s.data(), len);
  std::memset(out + len, 0, n - len);
}

LiveStatsFile::LiveStatsFile(std::string path, void* map, bool writable)
    : path_(std::move(path)), map_(map), writable_(writable) {}

LiveStatsFile::~LiveStatsFile() { ::munmap(map_, kLiveFileBytes); }

Result<std::unique_ptr<LiveStatsFile>> LiveStatsFile::Create(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("creating live statistics file " + path, errno);
  // Never shorter than a page: a reader still mapping an earlier file would
  // take SIGBUS past its end.
  void* map = ::ftruncate(fd, kLiveFileBytes) == 0
                  ? ::mmap(nullptr, kLiveFileBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                  : MAP_FAILED;
  const int err = errno;
  ::close(fd);
  if (map == MAP_FAILED) return Status::FromErrno("mapping live statistics file " + path, err);
  uint64_t* w = Words(map);
  __atomic_store_n(&w[kVersionWord], uint64_t{kLiveVersion} | (uint64_t{sizeof(LiveStats)} << 32), __ATOMIC_RELAXED);
  __atomic_store_n(&w[kMagicWord], kLiveMagic, __ATOMIC_RELEASE);
  return std::unique_ptr<LiveStatsFile>(new LiveStatsFile(path, map, true));
}

Result<std::unique_ptr<LiveStatsFile>> LiveStatsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("no live statistics file " + path);
    return Status::FromErrno("opening live statistics file " + path, errno);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < kLiveFileBytes) {
    ::close(fd);
    return Status::Corruption(fmt::format("{} is not a live statistics file ({} bytes)", path, st.st_size));
  }
  void* map = ::mmap(nullptr, kLiveFileBytes, PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);
  if (map == MAP_FAILED) return Status::FromErrno("mapping live statistics file " + path, err);
  return std::unique_ptr<LiveStatsFile>(new LiveStatsFile(path, map, false));
}

void LiveStatsFile::Publish(const LiveStats& s) {
  if (!writable_) return;
  uint64_t* w = Words(map_);
  uint64_t* seq = &w[kSeqWord];
  uint64_t* data = w + kLiveHeaderBytes / 8;
  const uint64_t at = __atomic_load_n(seq, __ATOMIC_RELAXED) & ~uint64_t{1};
  __atomic_store_n(seq, at + 1, __ATOMIC_RELAXED);
  // Each word a release store, not a fence (which TSan cannot follow): the
  // odd sequence is visible before any of the data.
  for (size_t i = 0; i < kWords; ++i) {
    uint64_t v;
    std::memcpy(&v, reinterpret_cast<const char*>(&s) + i * 8, 8);
    __atomic_store_n(&data[i], v, __ATOMIC_RELEASE);
  }
  __atomic_store_n(seq, at + 2, __ATOMIC_RELEASE);
}

Result<LiveStats> LiveStatsFile::Read() const {
  const uint64_t* w = Words(map_);
  const uint64_t magic = __atomic_load_n(&w[kMagicWord], __ATOMIC_ACQUIRE);
  if (magic == 0) return Status::NotFound(path_ + ": nothing published yet");
  if (magic != kLiveMagic)
    return Status::Corruption(fmt::format("{} is not a live statistics file (magic {:#x})", path_, magic));
  const uint64_t version = __atomic_load_n(&w[kVersionWord], __ATOMIC_RELAXED);
  // Fields are only ever appended: a shorter snapshot lacks the newest.
  const uint64_t bytes = version >> 32;
  if ((version & 0xffffffff) != kLiveVersion || bytes < offsetof(LiveStats, dirty_pages))
    return Status::Unsupported(fmt::format("{} has live statistics format {} ({} bytes); this pheap reads format {}",
                                           path_, version & 0xffffffff, version >> 32, kLiveVersion));
  const uint64_t* seq = &w[kSeqWord];
  const uint64_t* data = w + kLiveHeaderBytes / 8;
  LiveStats out;
  const size_t words = std::min<size_t>(kWords, bytes / 8);
  for (int tries = 0; tries < kReadTries; ++tries) {
    const uint64_t before = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
    if (before == 0) return Status::NotFound(path_ + ": nothing published yet");
    if (before & 1) {
      ::sched_yield();
      continue;
    }
    // Acquire loads, not a fence (which TSan cannot follow): the copy is
    // read before the second look at the sequence.
    // What a shorter snapshot lacks reads as unknown.
    out.dirty_pages = out.memory_max = out.resident_pages = out.evictions = out.refetches = kLiveUnknown;
    for (size_t i = 0; i < words; ++i) {
      const uint64_t v = __atomic_load_n(&data[i], __ATOMIC_ACQUIRE);
      std::memcpy(reinterpret_cast<char*>(&out) + i * 8, &v, 8);
    }
    if (__atomic_load_n(seq, __ATOMIC_RELAXED) == before) {
      // Strings from another process end within their fields, whatever it wrote.
      out.heap[sizeof(out.heap) - 1] = out.exe[sizeof(out.exe) - 1] = out.tracking[sizeof(out.tracking) - 1] = '\0';
      for (auto& r : out.replica) r.endpoint[sizeof(r.endpoint) - 1] = '\0';
      if (out.replica_count > kLiveReplicas) out.replica_count = kLiveReplicas;
      return out;
    }
  }
  return Status::Busy(path_ + ": the writer was mid-update at every try");
}

}  // namespace pheap
