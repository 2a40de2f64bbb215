// A persistent map built to a durable state three ways, in one run: a
// boost::unordered_map of --entries (10 M) uint64 pairs made with
// construct<>() in pheap::managed_heap and made durable with commit(),
// against the same program on boost::interprocess::managed_mapped_file
// (the baseline) made durable with flush() and, since Boost's flush() is
// msync(MS_ASYNC), msync(MS_SYNC) of the mapping; and on LLNL Metall's
// manager with flush() when built with -Dmetall_include. Each figure is
// the median of --runs runs, each in a fresh process and directory;
// "durable" is the time from the open to the durable state, build
// included. A ratio above 1 means pheap reached it faster.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/managed_mapped_file.hpp>
#include <boost/unordered_map.hpp>

#include <pheap/managed_heap.hpp>

#ifdef PHEAP_BENCH_METALL
#include <metall/metall.hpp>
#endif

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "bench/bench_util.h"

namespace {

namespace bip = boost::interprocess;
using pheap::bench::NowNs;
using Entry = std::pair<const uint64_t, uint64_t>;
template <typename Alloc>
using Map = boost::unordered_map<uint64_t, uint64_t, boost::hash<uint64_t>, std::equal_to<uint64_t>, Alloc>;

constexpr size_t kRegion = size_t{4} << 30;

// Distinct keys in a scattered order (an odd multiplier is a bijection).
inline uint64_t Key(uint64_t i) { return i * 0x9E3779B97F4A7C15ull; }

struct Times {
  double build_s = 0, durable_s = 0;  // from the open: the map built; durable
};

template <typename M>
void Fill(M* m, uint64_t entries) {
  for (uint64_t i = 0; i < entries; ++i) m->emplace(Key(i), i);
}

Times RunPheap(const std::string& dir, uint64_t entries) {
  const uint64_t t0 = NowNs();
  pheap::managed_heap seg(pheap::create_only, (dir + "/map").c_str(), kRegion);
  using Alloc = pheap::managed_heap::allocator_type<Entry>;
  auto* m = seg.construct<Map<Alloc>>("map")(0, boost::hash<uint64_t>(), std::equal_to<uint64_t>(),
                                             seg.get_allocator<Entry>());
  Fill(m, entries);
  const uint64_t t1 = NowNs();
  seg.commit();
  return {(t1 - t0) / 1e9, (NowNs() - t0) / 1e9};
}

Times RunBoost(const std::string& dir, uint64_t entries) {
  const uint64_t t0 = NowNs();
  bip::managed_mapped_file seg(bip::create_only, (dir + "/map.bin").c_str(), kRegion);
  using Alloc = bip::allocator<Entry, bip::managed_mapped_file::segment_manager>;
  auto* m = seg.construct<Map<Alloc>>("map")(0, boost::hash<uint64_t>(), std::equal_to<uint64_t>(),
                                             Alloc(seg.get_segment_manager()));
  Fill(m, entries);
  const uint64_t t1 = NowNs();
  seg.flush();  // MS_ASYNC: schedules writeback, makes nothing durable
  if (msync(seg.get_address(), seg.get_size(), MS_SYNC) != 0) std::perror("msync");
  return {(t1 - t0) / 1e9, (NowNs() - t0) / 1e9};
}

#ifdef PHEAP_BENCH_METALL
Times RunMetall(const std::string& dir, uint64_t entries) {
  const uint64_t t0 = NowNs();
  metall::manager seg(metall::create_only, (dir + "/metall").c_str());
  using Alloc = metall::manager::allocator_type<Entry>;
  auto* m = seg.construct<Map<Alloc>>("map")(0, boost::hash<uint64_t>(), std::equal_to<uint64_t>(),
                                             seg.get_allocator<Entry>());
  Fill(m, entries);
  const uint64_t t1 = NowNs();
  seg.flush();  // synchronous: msync(MS_SYNC) of its files
  return {(t1 - t0) / 1e9, (NowNs() - t0) / 1e9};
}
#endif

// Runs `f` in a child process and directory of its own (each store is
// new, the address space clean); its times.
Times InChild(const std::function<Times(const std::string&, uint64_t)>& f, uint64_t entries) {
  pheap::bench::TempDir dir;
  int fd[2];
  if (pipe(fd) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    Times t{};
    try {
      t = f(dir.path(), entries);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "managed_bench: %s\n", e.what());
    }
    (void)!write(fd[1], &t, sizeof(t));
    _exit(0);
  }
  close(fd[1]);
  Times t{};
  if (read(fd[0], &t, sizeof(t)) != sizeof(t)) t = {};
  close(fd[0]);
  waitpid(pid, nullptr, 0);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"a persistent map built to a durable state: pheap::managed_heap against managed_mapped_file"};
  uint64_t entries = 10000000;
  int runs = 3;
  app.add_option("--entries", entries, "map entries")->capture_default_str();
  app.add_option("--runs", runs, "runs of each (the median is shown)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  struct Row {
    const char* name;
    std::function<Times(const std::string&, uint64_t)> run;
    std::vector<double> build, durable;
  };
  std::vector<Row> rows = {{"managed_mapped_file + flush + msync(MS_SYNC)", RunBoost, {}, {}},
                           {"pheap::managed_heap + commit", RunPheap, {}, {}}};
#ifdef PHEAP_BENCH_METALL
  rows.push_back({"Metall manager + flush", RunMetall, {}, {}});
#endif
  // Interleaved, so that a slow spell of the machine falls on all of them.
  for (int r = 0; r < runs; ++r)
    for (Row& row : rows) {
      const Times t = InChild(row.run, entries);
      row.build.push_back(t.build_s);
      row.durable.push_back(t.durable_s);
    }
  const double base = pheap::bench::Median(rows[0].durable);
  fmt::print("| {} entries, median of {} | build s | to durable s | durable vs managed_mapped_file |\n", entries, runs);
  fmt::print("|---|---|---|---|\n");
  for (const Row& row : rows) {
    const double d = pheap::bench::Median(row.durable);
    fmt::print("| {} | {:.2f} | {:.2f} | {:.2f}x faster |\n", row.name, pheap::bench::Median(row.build), d,
               d > 0 ? base / d : 0);
  }
  return 0;
}
