// Not a test: prints what the tracking modes cost on this machine.
//   1. first-write cost per page (fresh pages above hwm) in each mode, next
//      to plain anonymous memory;
//   2. commit pause for 1, 64, 1024 and 16384 dirty pages in a 1 GiB region
//      whose every page is populated, without and with the copy before the
//      pause (PagerOptions::precopy);
//   3. hybrid-wp's first write to a chunk: a fresh one (a missing fault
//      that moves it at once) and a populated cold one (a write-protect
//      fault served page by page until the next commit).
// Usage: pager_measure [region_mib]   (default 1024)
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "base/page_io.h"
#include "pager/kernel_probe.h"
#include "pager/pager.h"

using namespace pheap;

namespace {

constexpr uint64_t kBase = uint64_t{0x3100} << 32;

struct NullStore : PageSource, EpochSink {
  Status ReadRun(Pgno, uint32_t count, uint8_t* out, uint64_t* present) override {
    std::memset(out, 0, uint64_t{count} * kPageSize);
    if (present) std::memset(present, 0, (count + 63) / 64 * 8);
    return Status::Ok();
  }
  Status Persist(const SealedEpoch&) override { return Status::Ok(); }
};

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double TouchUs(uint8_t* p, uint64_t pages) {
  double t0 = Now();
  for (uint64_t i = 0; i < pages; ++i) p[i * kPageSize] = 1;
  return (Now() - t0) * 1e6 / static_cast<double>(pages);
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t region = (argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1024) << 20;
  const uint64_t pages = region / kPageSize;
  NullStore store;
  {
    void* p = mmap(nullptr, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    std::printf("first write, plain anonymous memory: %.2f us/page\n", TouchUs(static_cast<uint8_t*>(p), 16384));
    munmap(p, 64 << 20);
  }
  for (TrackingMode m : {TrackingMode::kAsyncWp, TrackingMode::kSyncWp, TrackingMode::kMprotect}) {
    if (!ChooseMode(CachedKernelFeatures(), m).ok()) {
      std::printf("%s: not supported here\n", TrackingModeName(m));
      continue;
    }
    for (bool precopy : {false, true}) {
      if (precopy && m == TrackingMode::kMprotect) continue;  // always copies inside the pause
      PagerOptions o;
      o.mode = m;
      o.precopy = precopy;
      ImageInfo img{1, 0, 1, kBase, region, 0};
      auto r = Pager::Open(img, &store, &store, o);
      if (!r.ok()) { std::printf("%s: %s\n", TrackingModeName(m), r.status().ToString().c_str()); continue; }
      Pager& pager = *r.value();
      auto* base = static_cast<uint8_t*>(pager.base());
      if (!precopy) {
        std::printf("first write, %s: %.2f us/page (fresh)", TrackingModeName(m), TouchUs(base, 16384));
        (void)pager.Commit();
        std::printf(", %.2f us/page (after a commit)\n", TouchUs(base, 16384));
      }
      // Populate the whole region, commit it away, then measure the pause.
      TouchUs(base, pages);
      if (!pager.Commit().ok()) return 1;
      std::mt19937_64 rng(42);
      for (uint64_t dirty : {1, 64, 1024, 16384}) {
        double best = 1e30, sum = 0;
        const int reps = 5;
        for (int rep = 0; rep < reps; ++rep) {
          for (uint64_t i = 0; i < dirty; ++i) base[(rng() % pages) * kPageSize + 8] = static_cast<uint8_t>(rep);
          if (!pager.Commit().ok()) return 1;
          double ms = static_cast<double>(pager.stats().last_pause_ns) / 1e6;
          best = std::min(best, ms);
          sum += ms;
        }
        std::printf("  commit pause, %-8s precopy=%d, %5lu random dirty pages, %lu MiB populated: best %.3f ms, mean %.3f ms\n",
                    TrackingModeName(m), precopy, static_cast<unsigned long>(dirty),
                    static_cast<unsigned long>(region >> 20), best, sum / reps);
      }
    }
  }
  for (bool huge : {true, false}) {
    if (!ChooseMode(CachedKernelFeatures(), TrackingMode::kHybridWp).ok()) break;
    PagerOptions o;
    o.mode = TrackingMode::kHybridWp;
    o.hybrid_idle_cuts = 1;
    o.hybrid_huge_pages = huge;
    ImageInfo img{1, 0, 1, kBase, region, 0};
    auto r = Pager::Open(img, &store, &store, o);
    if (!r.ok()) return 1;
    Pager& pager = *r.value();
    auto* base = static_cast<uint8_t*>(pager.base());
    const uint64_t chunks = std::min<uint64_t>(region >> 21, 256), chunk_pages = 512;
    std::vector<double> fresh, cold, again;
    for (uint64_t c = 0; c < chunks; ++c) {
      const double t0 = Now();
      base[c * chunk_pages * kPageSize] = 1;
      fresh.push_back((Now() - t0) * 1e6);
    }
    for (uint64_t c = 0; c < chunks; ++c) std::memset(base + c * chunk_pages * kPageSize, 2, 2 << 20);
    for (int i = 0; i < 3 || pager.stats().hot_chunks > 0; ++i)
      if (!pager.Commit().ok() || i > 100) return 1;
    for (uint64_t c = 0; c < chunks; ++c) {
      double t0 = Now();
      base[(c * chunk_pages + 7) * kPageSize] = 3;
      cold.push_back((Now() - t0) * 1e6);
      t0 = Now();
      base[(c * chunk_pages + 8) * kPageSize] = 3;
      again.push_back((Now() - t0) * 1e6);
    }
    auto median = [](std::vector<double> v) {
      std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
      return v[v.size() / 2];
    };
    std::printf(
        "hybrid-wp (%s pages) first write to a chunk, median of %lu: fresh %.1f us, populated cold %.1f us "
        "(its next page %.1f us)\n",
        huge ? "huge" : "4 KiB", static_cast<unsigned long>(chunks), median(fresh), median(cold), median(again));
  }
  return 0;
}
