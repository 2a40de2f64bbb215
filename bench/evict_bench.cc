// A heap four times its memory cgroup's limit, written and read in order
// and at random, against the same pages in a file mapped MAP_SHARED under
// the same limit: the kernel's own page cache eviction, the baseline a
// mapped store is measured against. Each side runs in a fresh process, in
// a fresh cgroup of --limit-mib, in a fresh directory; the heap's budget is
// its default (a third of the cgroup's limit). Phases, timed each:
//   write in order   every page, then durable (commit; msync(MS_SYNC))
//   read in order    every page, checked
//   read at random   a quarter as many random pages, checked (a mapped
//                    file under a limit pays a disk read of 128 KiB for each)
//   write at random  a quarter of the pages at random, then durable
// Figures are medians of --runs; a ratio above 1 means pheap was faster.
// Needs root (it makes cgroups).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "base/config.h"
#include "bench/bench_util.h"
#include "heap/engine.h"
#include "tests/support/memory_group.h"

namespace {

using pheap::bench::NowNs;

enum Phase { kWriteSeq, kReadSeq, kReadRandom, kWriteRandom, kPhases };
constexpr std::array<const char*, kPhases> kPhaseNames = {"write in order", "read in order", "read at random",
                                                          "write at random"};

// What one side's process reports back through a pipe.
struct Result {
  double seconds[kPhases] = {};
  // pheap only: pages given back and faulted in again during the random
  // reads, the commits' pause quantiles, and the eviction counters.
  double random_evictions = 0, random_refetches = 0;
  double pause_p50_us = 0, pause_p99_us = 0, pause_max_us = 0;
  double evictions = 0, early_commits = 0, eviction_pauses = 0;
  bool ok = false;
};

inline uint64_t Value(uint64_t p, uint64_t round) { return (p * 0x9E3779B97F4A7C15ull) ^ round; }

// The four phases over `pages` pages at `base`; `durable` makes the writes
// durable; `between` runs after each phase (the pheap side's counters).
template <typename Durable, typename Between>
bool RunPhases(uint64_t* base, uint64_t pages, Result* r, Durable durable, Between between) {
  std::vector<uint8_t> round(pages, 1);
  auto page = [&](uint64_t p) { return base + p * 512; };
  uint64_t t = NowNs();
  for (uint64_t p = 0; p < pages; ++p) page(p)[0] = page(p)[511] = Value(p, 1);
  if (!durable()) return false;
  r->seconds[kWriteSeq] = (NowNs() - t) / 1e9;
  between(kWriteSeq);
  t = NowNs();
  for (uint64_t p = 0; p < pages; ++p)
    if (page(p)[0] != Value(p, 1)) return false;
  r->seconds[kReadSeq] = (NowNs() - t) / 1e9;
  between(kReadSeq);
  std::mt19937_64 rng(pages);
  t = NowNs();
  for (uint64_t i = 0; i < pages / 4; ++i) {
    const uint64_t p = rng() % pages;
    if (page(p)[511] != Value(p, 1)) return false;
  }
  r->seconds[kReadRandom] = (NowNs() - t) / 1e9;
  between(kReadRandom);
  t = NowNs();
  for (uint64_t i = 0; i < pages / 4; ++i) {
    const uint64_t p = rng() % pages;
    round[p] = 2;
    page(p)[0] = page(p)[511] = Value(p, 2);
  }
  if (!durable()) return false;
  r->seconds[kWriteRandom] = (NowNs() - t) / 1e9;
  between(kWriteRandom);
  for (uint64_t p = 0; p < pages; p += 7)
    if (page(p)[0] != Value(p, round[p])) return false;
  return true;
}

Result RunPheap(const std::string& dir, uint64_t pages) {
  Result r;
  const std::string text = fmt::format("dir={};size={}", dir, 2 * pages * pheap::kPageSize);
  auto cfg = pheap::Config::Parse(text.c_str(), pheap::Engine::ConfigKeys());
  if (!cfg.ok()) return r;
  auto o = pheap::Engine::OptionsFromConfig(*cfg);
  if (!o.ok()) return r;
  auto e = pheap::Engine::Open("evict", *o);
  if (!e.ok()) {
    std::fprintf(stderr, "evict_bench: %s\n", e.status().ToString().c_str());
    return r;
  }
  pheap::Pager& pager = (*e)->pager();
  pheap::PagerStats before{};
  r.ok = RunPhases(
      static_cast<uint64_t*>((*e)->base()), pages, &r, [&] { return (*e)->Commit().ok(); },
      [&](int phase) {
        const pheap::PagerStats now = pager.stats();
        if (phase == kReadRandom) {
          r.random_evictions = static_cast<double>(now.evictions - before.evictions);
          r.random_refetches = static_cast<double>(now.refetches - before.refetches);
        }
        before = now;
      });
  const pheap::PagerStats s = pager.stats();
  const pheap::PauseSummary ps = pager.pauses();
  r.pause_p50_us = ps.p50_ns / 1e3;
  r.pause_p99_us = ps.p99_ns / 1e3;
  r.pause_max_us = ps.max_ns / 1e3;
  r.evictions = static_cast<double>(s.evictions);
  r.early_commits = static_cast<double>(s.early_commits);
  r.eviction_pauses = static_cast<double>(s.eviction_pauses);
  return r;
}

Result RunFile(const std::string& dir, uint64_t pages) {
  Result r;
  const std::string path = dir + "/evict.data";
  const size_t bytes = pages * pheap::kPageSize;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) return r;
  void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return r;
  r.ok = RunPhases(
      static_cast<uint64_t*>(m), pages, &r, [&] { return ::msync(m, bytes, MS_SYNC) == 0; }, [](int) {});
  ::munmap(m, bytes);
  ::close(fd);
  return r;
}

// Runs one side in a child that joins a fresh group of `limit` bytes.
Result InGroup(bool pheap_side, uint64_t limit, uint64_t pages) {
  Result r;
  const pheaptest::MemoryGroup g = pheaptest::MakeMemoryGroup("evict-bench", limit);
  if (g.dir.empty()) {
    std::fprintf(stderr, "evict_bench: %s\n", g.why_not.c_str());
    return r;
  }
  pheap::bench::TempDir dir;
  int fds[2];
  if (::pipe(fds) != 0) return r;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    Result c;
    if (g.Join()) c = pheap_side ? RunPheap(dir.path(), pages) : RunFile(dir.path(), pages);
    ssize_t n = ::write(fds[1], &c, sizeof(c));
    _exit(n == sizeof(c) ? 0 : 1);
  }
  ::close(fds[1]);
  Result got;
  if (::read(fds[0], &got, sizeof(got)) == static_cast<ssize_t>(sizeof(got))) r = got;
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (g.OomKills() > 0) {
    std::fprintf(stderr, "evict_bench: the %s side was OOM-killed\n", pheap_side ? "pheap" : "mapped file");
    r.ok = false;
  }
  g.Remove();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A heap four times its memory cgroup's limit against a mapped file under the same limit"};
  uint64_t limit_mib = 32;
  int runs = 3;
  std::string only;
  app.add_option("--limit-mib", limit_mib, "the cgroup's memory limit; the heap is four times it");
  app.add_option("--runs", runs, "runs per side; figures are medians");
  app.add_option("--only", only, "run one side alone (for a profile): pheap or file")
      ->check(CLI::IsMember({"pheap", "file"}));
  CLI11_PARSE(app, argc, argv);
  if (!only.empty()) {
    const Result r = InGroup(only == "pheap", limit_mib << 20, 4 * (limit_mib << 20) / pheap::kPageSize);
    for (int ph = 0; ph < kPhases; ++ph) fmt::print("{}: {:.3f} s\n", kPhaseNames[ph], r.seconds[ph]);
    return r.ok ? 0 : 1;
  }
  const uint64_t limit = limit_mib << 20, pages = 4 * limit / pheap::kPageSize;
  std::vector<Result> heap, file;
  for (int i = 0; i < runs; ++i) {
    file.push_back(InGroup(false, limit, pages));
    heap.push_back(InGroup(true, limit, pages));
    if (!file.back().ok || !heap.back().ok) {
      std::fprintf(stderr, "evict_bench: run %d failed (a check, an open or a cgroup)\n", i);
      return 1;
    }
  }
  auto med = [](const std::vector<Result>& v, auto field) {
    std::vector<double> x;
    for (const Result& r : v) x.push_back(field(r));
    return pheap::bench::Median(x);
  };
  fmt::print("heap {} MiB, cgroup limit {} MiB, heap budget {:.1f} MiB (the default), medians of {}\n\n", 4 * limit_mib,
             limit_mib, limit_mib / 3.0, runs);
  fmt::print("| phase | mapped file s | pheap s | pheap vs mapped file |\n|---|---|---|---|\n");
  for (int ph = 0; ph < kPhases; ++ph) {
    const double f = med(file, [&](const Result& r) { return r.seconds[ph]; });
    const double h = med(heap, [&](const Result& r) { return r.seconds[ph]; });
    fmt::print("| {} | {:.3f} | {:.3f} | {:.2f}x |\n", kPhaseNames[ph], f, h, f / h);
  }
  const double rr = med(heap, [](const Result& r) { return r.seconds[kReadRandom]; });
  const double ev = med(heap, [](const Result& r) { return r.random_evictions; });
  fmt::print("\nrandom reads: {:.0f} pages given back, {:.0f} faulted in again: {:.1f} us per page given back\n", ev,
             med(heap, [](const Result& r) { return r.random_refetches; }), ev > 0 ? rr * 1e6 / ev : 0.0);
  fmt::print(
      "commit pauses: p50 {:.0f} us, p99 {:.0f} us, max {:.0f} us; {:.0f} evictions, {:.0f} eviction pauses, "
      "{:.0f} early commits per run\n",
      med(heap, [](const Result& r) { return r.pause_p50_us; }),
      med(heap, [](const Result& r) { return r.pause_p99_us; }),
      med(heap, [](const Result& r) { return r.pause_max_us; }), med(heap, [](const Result& r) { return r.evictions; }),
      med(heap, [](const Result& r) { return r.eviction_pauses; }),
      med(heap, [](const Result& r) { return r.early_commits; }));
  return 0;
}
