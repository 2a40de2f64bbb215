// Small helpers shared by the benchmarks: a monotonic clock, medians over
// repeated runs, a temporary directory that cleans up after itself, and a
// file written the way a store writes (the baselines' stand-in for one).
#pragma once

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace pheap::bench {

inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

inline double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Runs `f` `runs` times and returns the median of what it returns.
inline double MedianOf(int runs, const std::function<double()>& f) {
  std::vector<double> v;
  for (int i = 0; i < runs; ++i) v.push_back(f());
  return Median(v);
}

class TempDir {
 public:
  TempDir() {
    const char* root = std::getenv("PHEAP_BENCH_DIR");
    std::string t = std::string(root ? root : "/tmp") + "/pheap-bench-XXXXXX";
    path_ = mkdtemp(t.data()) ? t : std::string();
  }
  ~TempDir() { if (!path_.empty()) std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A file that receives frames appended at increasing offsets, written with
// O_DIRECT as pheap's stores write large epochs (where `direct` and the
// file system allow it), else through the page cache. Frames not aligned
// for O_DIRECT, such as a received ZeroMQ message, go through an aligned
// copy of at most `max_frame` bytes. Removed when destroyed, unless `keep`.
class FrameFile {
 public:
  FrameFile(const std::string& path, bool direct, size_t max_frame, bool keep = false)
      : path_(path), keep_(keep) {
    if (direct) fd_ = ::open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC | O_DIRECT, 0600);
    direct_ = fd_ >= 0;
    if (fd_ < 0) fd_ = ::open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (direct_) bounce_ = static_cast<char*>(std::aligned_alloc(kAlign, max_frame));
  }
  ~FrameFile() {
    ::close(fd_);
    if (!keep_) ::unlink(path_.c_str());
    std::free(bounce_);
  }
  FrameFile(const FrameFile&) = delete;
  FrameFile& operator=(const FrameFile&) = delete;
  bool ok() const { return fd_ >= 0; }
  // REQUIRES: size <= max_frame, a multiple of 4096 with O_DIRECT.
  bool Append(const void* data, size_t size) {
    const void* from = data;
    if (direct_ && reinterpret_cast<uintptr_t>(data) % kAlign != 0) {
      std::memcpy(bounce_, data, size);
      from = bounce_;
    }
    const bool ok = ::pwrite(fd_, from, size, off_) == static_cast<ssize_t>(size);
    off_ += static_cast<off_t>(size);
    return ok;
  }
  bool Sync() { return ::fdatasync(fd_) == 0; }
  // The next Append overwrites the file from its start.
  void Rewind() { off_ = 0; }

 private:
  static constexpr size_t kAlign = 4096;
  std::string path_;
  bool keep_;
  int fd_ = -1;
  bool direct_ = false;
  char* bounce_ = nullptr;
  off_t off_ = 0;
};

inline uint64_t Rand(uint64_t* s) {  // xorshift64*
  *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

}  // namespace pheap::bench
