// Small helpers shared by the benchmarks: a monotonic clock, medians over
// repeated runs, and a temporary directory that cleans up after itself.
#pragma once

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
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

inline uint64_t Rand(uint64_t* s) {  // xorshift64*
  *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

}  // namespace pheap::bench
