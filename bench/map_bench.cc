// End to end: inserts into a std::unordered_map<uint64_t, uint64_t> that
// lives in a pheap heap (pheap::allocator) while another thread commits every
// --commit-ms, against the same map in ordinary memory with glibc malloc.
// A third run of pheap without commits separates what the commits cost.
// Each figure is the median of --runs runs; each pheap run uses a fresh heap.
//
// Commit pause: the public API does not expose the pager's pause, so two
// figures stand in for it: how long pheap_commit_async took (the cut, with
// writers stopped, plus the copy before it: an upper bound), and the longest
// stall the inserting thread itself saw while each commit was being taken.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <pheap/allocator.hpp>
#include <pheap/heap.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench/bench_util.h"

namespace {

using pheap::bench::NowNs;

using Entry = std::pair<const uint64_t, uint64_t>;
using PersistentMap =
    std::unordered_map<uint64_t, uint64_t, std::hash<uint64_t>, std::equal_to<uint64_t>, pheap::allocator<Entry>>;

// Distinct keys in a scattered order: multiplying by an odd constant is a
// bijection on 64-bit integers.
inline uint64_t Key(uint64_t i) { return i * 0x9E3779B97F4A7C15ull; }

// Stalls the inserting thread saw: spans of kChunk inserts that took longer
// than kStallNs without a rehash (a rehash is the map's own long step).
constexpr uint64_t kChunk = 64;
constexpr uint64_t kStallNs = 500000;
struct Stall {
  uint64_t begin_ns, end_ns;
};

template <typename Map>
double InsertAll(Map* m, uint64_t entries, std::vector<Stall>* stalls) {
  const uint64_t t0 = NowNs();
  uint64_t chunk_start = t0;
  size_t buckets = m->bucket_count();
  for (uint64_t i = 0; i < entries; ++i) {
    m->emplace(Key(i), i);
    if (i % kChunk == kChunk - 1) {
      uint64_t now = NowNs();
      if (now - chunk_start > kStallNs && m->bucket_count() == buckets) stalls->push_back({chunk_start, now});
      buckets = m->bucket_count();
      chunk_start = now;
    }
  }
  return static_cast<double>(NowNs() - t0) * 1e-9;
}

// Commits `h` every `period` until stopped; records each pheap_commit_async.
class Committer {
 public:
  Committer(pheap::handle* h, std::chrono::milliseconds period)
      : h_(h), thread_([this, period] { Loop(period); }) {}
  // Stops, then returns each commit_async's span and whether all succeeded.
  bool Stop(std::vector<Stall>* cuts) {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    *cuts = std::move(cuts_);
    return ok_;
  }

 private:
  void Loop(std::chrono::milliseconds period) {
    auto next = std::chrono::steady_clock::now() + period;
    std::unique_lock<std::mutex> l(mu_);
    while (!cv_.wait_until(l, next, [this] { return stop_; })) {
      l.unlock();
      uint64_t t0 = NowNs();
      int64_t e = pheap_commit_async(h_);
      uint64_t t1 = NowNs();
      if (e < 0 || pheap_wait(h_, e) < 0) {
        fmt::print(stderr, "map_bench: commit: {}\n", pheap_last_error());
        ok_ = false;
      } else {
        cuts_.push_back({t0, t1});
      }
      // The next commit is due a period after this one started, or now if
      // this one took longer.
      next = std::max(next + period, std::chrono::steady_clock::now());
      l.lock();
    }
  }

  pheap::handle* h_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool ok_ = true;
  std::vector<Stall> cuts_;
  std::thread thread_;  // last: starts after the members it uses
};

struct PheapRun {
  double seconds = 0;
  uint64_t commits = 0;
  std::vector<double> cut_ms;    // each pheap_commit_async
  std::vector<double> stall_ms;  // per commit: the inserter's longest stall overlapping it
};

// The longest stall overlapping [w.begin_ns, w.end_ns], in ms; stalls below
// kStallNs are not recorded and count as kStallNs.
double StallDuring(const Stall& w, const std::vector<Stall>& stalls) {
  uint64_t longest = kStallNs;
  for (const Stall& s : stalls) {
    if (s.begin_ns < w.end_ns && s.end_ns > w.begin_ns) longest = std::max(longest, s.end_ns - s.begin_ns);
  }
  return static_cast<double>(longest) * 1e-6;
}

double LongestMs(const std::vector<Stall>& stalls) {
  uint64_t longest = 0;
  for (const Stall& s : stalls) longest = std::max(longest, s.end_ns - s.begin_ns);
  return static_cast<double>(longest) * 1e-6;
}

PheapRun RunPheap(uint64_t entries, int commit_ms, const std::string& size, double* longest_ms) {
  pheap::bench::TempDir dir;
  pheap::Heap heap("map_bench", fmt::format("dir={};size={}", dir.path(), size));
  auto* m = heap.make<PersistentMap>(pheap::allocator<Entry>(heap));
  heap.set_root("map", m);
  heap.commit();
  PheapRun r;
  std::vector<Stall> stalls, cuts;
  std::optional<Committer> committer;  // none: what the commits cost shows by difference
  if (commit_ms > 0) committer.emplace(heap.c_handle(), std::chrono::milliseconds(commit_ms));
  r.seconds = InsertAll(m, entries, &stalls);
  if (committer && !committer->Stop(&cuts)) std::exit(1);
  if (m->size() != entries) {
    fmt::print(stderr, "map_bench: the persistent map holds {} entries, not {}\n", m->size(), entries);
    std::exit(1);
  }
  r.commits = cuts.size();
  for (const Stall& c : cuts) {
    r.cut_ms.push_back(static_cast<double>(c.end_ns - c.begin_ns) * 1e-6);
    r.stall_ms.push_back(StallDuring(c, stalls));
  }
  *longest_ms = LongestMs(stalls);
  return r;  // left in the heap: freeing it would dirty every page for the final commit
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pheap end to end: a persistent std::unordered_map with periodic commits"};
  uint64_t entries = 10000000;
  int runs = 3, commit_ms = 100;
  std::string size = "8G";
  app.add_option("--entries", entries, "entries to insert")->capture_default_str();
  app.add_option("--runs", runs, "runs per figure (median reported)")->capture_default_str();
  app.add_option("--commit-ms", commit_ms, "commit period of the pheap run")->capture_default_str();
  app.add_option("--size", size, "pheap region size")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::vector<double> glibc_s, bare_s, pheap_s, commits, cut_ms, stall_ms, glibc_longest, pheap_longest;
  for (int r = 0; r < runs; ++r) {
    {
      std::unordered_map<uint64_t, uint64_t> m;
      std::vector<Stall> stalls;
      glibc_s.push_back(InsertAll(&m, entries, &stalls));
      glibc_longest.push_back(LongestMs(stalls));
    }
    double longest = 0;
    bare_s.push_back(RunPheap(entries, 0, size, &longest).seconds);
    PheapRun p = RunPheap(entries, commit_ms, size, &longest);
    pheap_s.push_back(p.seconds);
    pheap_longest.push_back(longest);
    commits.push_back(static_cast<double>(p.commits));
    cut_ms.insert(cut_ms.end(), p.cut_ms.begin(), p.cut_ms.end());
    stall_ms.insert(stall_ms.end(), p.stall_ms.begin(), p.stall_ms.end());
  }
  using pheap::bench::Median;
  using pheap::bench::Percentile;
  const double g = static_cast<double>(entries) / Median(glibc_s);
  const double p = static_cast<double>(entries) / Median(pheap_s);
  const double b = static_cast<double>(entries) / Median(bare_s);
  fmt::print("## Persistent std::unordered_map ({:g} M inserts of uint64_t -> uint64_t, median of {} runs)\n\n",
             static_cast<double>(entries) * 1e-6, runs);
  fmt::print("| map in | M inserts/s | vs glibc | commits per run | commit_async ms median / p99 | "
             "inserter stall per commit ms median / p99 | longest stall ms |\n");
  fmt::print("|---|---:|---:|---:|---:|---:|---:|\n");
  fmt::print("| ordinary memory, glibc malloc | {:.2f} | 1.00x | - | - | - | {:.1f} |\n", g * 1e-6,
             Median(glibc_longest));
  fmt::print("| pheap, no commit while inserting | {:.2f} | {:.2f}x | - | - | - | - |\n", b * 1e-6, b / g);
  fmt::print("| pheap, commit every {} ms | {:.2f} | {:.2f}x | {:.0f} | {:.1f} / {:.1f} | {:.1f} / {:.1f} | {:.1f} |\n\n",
             commit_ms, p * 1e-6, p / g, Median(commits), Median(cut_ms), Percentile(cut_ms, 0.99),
             Median(stall_ms), Percentile(stall_ms, 0.99), Median(pheap_longest));
  fmt::print("Goal: pheap >= 0.8x glibc.\n\n"
             "- A commit starts {} ms after the previous one started, or as soon as that one is\n"
             "  durable if it took longer.\n"
             "- commit_async: how long the call took: the cut (writers stopped) and the copy before it\n"
             "  (writers running). The pager's own pause figure is not in the public API.\n"
             "- Inserter stall: the longest span of {} inserts without a rehash that overlapped the\n"
             "  commit, as the inserting thread saw it (spans under {:.1f} ms count as {:.1f}).\n"
             "- Longest stall: the same over the whole run; the glibc row is the machine's own noise.\n\n",
             commit_ms, kChunk, kStallNs * 1e-6, kStallNs * 1e-6);
  return 0;
}
