// Not a test: prints what opening a stored heap, reading all of it, and a
// small commit cost in each userfaultfd tracking mode (async-wp serves the
// image lazily; async-wp-user places it at open).
// Usage: open_measure [stored_mib]   (default 256)
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "heap/engine.h"
#include "pager/kernel_probe.h"

using namespace pheap;

namespace {

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t pages = (argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 256) << 20 >> kPageShift;
  char tmpl[] = "/tmp/pheap-open-measure-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 1;
  EngineOptions o;
  o.dir = tmpl;
  o.size = uint64_t{4} << 30;
  o.compact = false;
  {
    auto e = Engine::Open("measure", o);
    if (!e.ok()) {
      std::printf("%s\n", e.status().ToString().c_str());
      return 1;
    }
    auto* base = static_cast<uint8_t*>((*e)->base());
    for (uint64_t p = 0; p < pages; ++p) base[p * kPageSize + 8] = static_cast<uint8_t>(p | 1);
    if (!(*e)->Commit().ok()) return 1;
  }
  for (int round = 0; round < 3; ++round) {
    for (TrackingMode m : {TrackingMode::kAsyncWp, TrackingMode::kAsyncWpUser}) {
      if (!ChooseMode(CachedKernelFeatures(), m).ok()) {
        std::printf("%s: not supported here\n", TrackingModeName(m));
        continue;
      }
      o.pager.mode = m;
      double t0 = Now();
      auto e = Engine::Open("measure", o);
      if (!e.ok()) {
        std::printf("%s\n", e.status().ToString().c_str());
        return 1;
      }
      double t1 = Now();
      auto* base = static_cast<uint8_t*>((*e)->base());
      uint64_t sum = 0;
      for (uint64_t p = 0; p < pages; ++p) sum += base[p * kPageSize + 8];
      double t2 = Now();
      std::mt19937_64 rng(42);
      double best = 1e30;
      for (int rep = 0; rep < 5; ++rep) {
        for (int i = 0; i < 64; ++i) base[(rng() % pages) * kPageSize + 16] = static_cast<uint8_t>(rep);
        if (!(*e)->Commit().ok()) return 1;
        best = std::min(best, static_cast<double>((*e)->pager().stats().last_pause_ns) / 1e6);
      }
      PagerStats s = (*e)->pager().stats();
      std::printf(
          "%-13s %5lu MiB stored: open %7.1f ms, then reading every page %7.1f ms (open+read %7.1f ms); "
          "%lu mapped, %lu copied; commit of 64 dirty pages: pause %.3f ms (best of 5) [%lu]\n",
          TrackingModeName(m), static_cast<unsigned long>(pages >> 8), (t1 - t0) * 1e3, (t2 - t1) * 1e3,
          (t2 - t0) * 1e3, static_cast<unsigned long>(s.pages_mapped), static_cast<unsigned long>(s.pages_fetched),
          best, static_cast<unsigned long>(sum));
    }
  }
  std::filesystem::remove_all(tmpl);
  return 0;
}
