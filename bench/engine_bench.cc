// Engine benchmarks, each against a named baseline measured in the same run:
//   first write     pheap region (per tracking mode) vs plain anonymous memory
//   commit pause    1..16384 dirty pages in populated 1 GiB and 8 GiB regions
//   durable commit  pheap Commit() vs msync(MS_SYNC) of a MAP_SHARED file
//   tracking        commit pause and durable commit, hybrid-wp vs async-wp
//                   (and msync), new or the same dirty pages each commit,
//                   in populated 1, 8 and (--16g) 16 GiB regions
//   steady          a random 1% of a populated 8 GiB region written
//                   between commits: pause, commit and throughput,
//                   hybrid-wp vs async-wp vs msync of a MAP_SHARED file
//   cold reopen     1 GiB image touched sequentially / randomly vs the same
//                   data through a mapped file in the page cache
//   compaction      space on disk per live byte and commit latency over a
//                   long run of one-page commits, background compaction on
//                   vs off
// Every figure is the median of --runs runs. Output is Markdown.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench/bench_util.h"
#include "heap/engine.h"
#include "pager/kernel_probe.h"

using namespace pheap;
using namespace pheap::bench;

namespace {

int g_runs = 5;
constexpr uint64_t kGiB = uint64_t{1} << 30;

std::unique_ptr<Engine> OpenOrDie(const std::string& dir, const std::string& name, uint64_t size,
                                  TrackingMode mode = TrackingMode::kAuto, bool map_stored = true,
                                  const std::function<void(EngineOptions*)>& adjust = nullptr) {
  // PHEAP_* variables apply (e.g. PHEAP_DIRECT_WRITE=0), the ones set here win.
  auto config = Config::Parse(nullptr, Engine::ConfigKeys());
  auto opts = config.ok() ? Engine::OptionsFromConfig(*config) : Result<EngineOptions>(config.status());
  if (!opts.ok()) {
    fmt::print(stderr, "bench: {}\n", opts.status().ToString());
    std::exit(1);
  }
  EngineOptions o = std::move(*opts);
  o.dir = dir;
  o.size = size;
  o.pager.mode = mode;
  o.pager.map_stored = map_stored;
  if (adjust) adjust(&o);
  auto e = Engine::Open(name, o);
  if (!e.ok()) {
    fmt::print(stderr, "bench: {}\n", e.status().ToString());
    std::exit(1);
  }
  return std::move(*e);
}

void CommitOrDie(Engine& e) {
  auto r = e.Commit();
  if (!r.ok()) {
    fmt::print(stderr, "bench: commit: {}\n", r.status().ToString());
    std::exit(1);
  }
}

// ns per page to write one word into each of `pages` pages at p.
double TouchWrite(uint8_t* p, uint64_t pages, uint64_t salt) {
  uint64_t t0 = NowNs();
  for (uint64_t i = 0; i < pages; ++i) *reinterpret_cast<volatile uint64_t*>(p + i * kPageSize) = i + salt;
  return static_cast<double>(NowNs() - t0) / static_cast<double>(pages);
}

std::vector<TrackingMode> Modes() {
  std::vector<TrackingMode> m;
  for (TrackingMode t : {TrackingMode::kAsyncWp, TrackingMode::kSyncWp, TrackingMode::kMprotect})
    if (ChooseMode(Pager::Probe(), t).ok()) m.push_back(t);
  return m;
}

void FirstWrite() {
  const uint64_t pages = 32768;  // 128 MiB
  fmt::print("## First write per page ({} fresh pages, median of {})\n\n", pages, g_runs);
  double plain = MedianOf(g_runs, [&] {
    void* p = mmap(nullptr, pages * kPageSize, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    double ns = TouchWrite(static_cast<uint8_t*>(p), pages, 1);
    munmap(p, pages * kPageSize);
    return ns;
  });
  fmt::print("| memory | first write ns/page | vs plain anonymous | rewrite after commit ns/page |\n");
  fmt::print("|---|---|---|---|\n");
  fmt::print("| plain anonymous mmap (baseline) | {:.0f} | 1.00x | - |\n", plain);
  for (TrackingMode mode : Modes()) {
    std::vector<double> first, again;
    for (int r = 0; r < g_runs; ++r) {
      TempDir dir;
      auto e = OpenOrDie(dir.path(), "firstwrite", kGiB, mode);
      auto* base = static_cast<uint8_t*>(e->base());
      first.push_back(TouchWrite(base, pages, 1));
      CommitOrDie(*e);
      again.push_back(TouchWrite(base, pages, 2));
    }
    double f = Median(first);
    fmt::print("| pheap {} | {:.0f} | {:.2f}x | {:.0f} |\n", TrackingModeName(mode), f, f / plain,
               Median(again));
  }
  fmt::print("\n");
}

// Writes `k` distinct random pages of [0, pages).
void DirtyRandom(uint8_t* base, uint64_t pages, uint64_t k, uint64_t* seed) {
  std::vector<bool> seen(pages, false);
  for (uint64_t n = 0; n < k;) {
    uint64_t p = Rand(seed) % pages;
    if (seen[p]) continue;
    seen[p] = true;
    *reinterpret_cast<volatile uint64_t*>(base + p * kPageSize) = *seed;
    ++n;
  }
}

struct PauseRow { double pause_us, commit_us; };

// Writes every page of e's region, committing every GiB so staging stays
// bounded; then, under hybrid-wp, commits until idle chunks have gone
// cold (a few to a few dozen per commit).
void Populate(Engine& e, uint64_t size) {
  auto* base = static_cast<uint8_t*>(e.base());
  const uint64_t pages = size / kPageSize;
  for (uint64_t done = 0; done < pages;) {
    const uint64_t n = std::min<uint64_t>(kGiB / kPageSize, pages - done);
    TouchWrite(base + done * kPageSize, n, 7);
    CommitOrDie(e);
    done += n;
  }
  // A pause moves at most 32 chunks, fewer when each takes long.
  const uint64_t settle = std::max<uint64_t>(400, size / (2 << 20) / 2);
  for (uint64_t i = 0; i < settle && e.pager().stats().hot_chunks > 0; ++i) CommitOrDie(e);
}

// Populates a region of `size`, committing every GiB so staging stays
// bounded, then measures commits of k random dirty pages.
std::vector<PauseRow> CommitPauses(const std::string& dir, uint64_t size, const std::vector<uint64_t>& ks) {
  auto e = OpenOrDie(dir, "pause", size);
  auto* base = static_cast<uint8_t*>(e->base());
  const uint64_t pages = size / kPageSize;
  Populate(*e, size);
  std::vector<PauseRow> rows;
  uint64_t seed = 42;
  for (uint64_t k : ks) {
    std::vector<double> pause, commit;
    for (int r = 0; r < g_runs; ++r) {
      DirtyRandom(base, pages, k, &seed);
      uint64_t t0 = NowNs();
      CommitOrDie(*e);
      commit.push_back(static_cast<double>(NowNs() - t0) / 1e3);
      pause.push_back(static_cast<double>(e->pager().stats().last_pause_ns) / 1e3);
    }
    rows.push_back({Median(pause), Median(commit)});
  }
  return rows;
}

// The baseline's file: `size` bytes in dir, mapped MAP_SHARED, every page
// written and synced; unmapped and removed when it goes.
class SyncedFile {
 public:
  SyncedFile(const std::string& dir, uint64_t size) : path_(dir + "/msync.data"), size_(size) {
    fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    void* m = fd_ >= 0 && ftruncate(fd_, static_cast<off_t>(size)) == 0
                  ? mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0)
                  : MAP_FAILED;
    if (m == MAP_FAILED) {
      perror("msync file");
      std::exit(1);
    }
    base_ = static_cast<uint8_t*>(m);
    TouchWrite(base_, size / kPageSize, 7);
    Sync();
  }
  ~SyncedFile() {
    munmap(base_, size_);
    close(fd_);
    unlink(path_.c_str());
  }
  uint8_t* base() const { return base_; }
  void Sync() const { msync(base_, size_, MS_SYNC); }

 private:
  std::string path_;
  uint64_t size_;
  int fd_ = -1;
  uint8_t* base_ = nullptr;
};

// msync(MS_SYNC) of k random dirty pages of a populated MAP_SHARED file.
std::vector<double> MsyncLatency(const std::string& dir, uint64_t size, const std::vector<uint64_t>& ks) {
  const SyncedFile f(dir, size);
  const uint64_t pages = size / kPageSize;
  std::vector<double> out;
  uint64_t seed = 42;
  for (uint64_t k : ks) {
    out.push_back(MedianOf(g_runs, [&] {
      DirtyRandom(f.base(), pages, k, &seed);
      uint64_t t0 = NowNs();
      f.Sync();
      return static_cast<double>(NowNs() - t0) / 1e3;
    }));
  }
  return out;
}

void Commits(bool big) {
  const std::vector<uint64_t> ks = {1, 64, 1024, 16384};
  std::vector<uint64_t> sizes = {kGiB};
  if (big) sizes.push_back(8 * kGiB);
  fmt::print("## Commit pause and durable commit latency (median of {}; tracking {})\n\n", g_runs,
             TrackingModeName(Modes().front()));
  fmt::print("| region | dirty pages | pause us | durable commit us | msync(MS_SYNC) us (baseline) | commit / msync |\n");
  fmt::print("|---|---|---|---|---|---|\n");
  for (uint64_t size : sizes) {
    TempDir dir;
    std::vector<PauseRow> rows = CommitPauses(dir.path(), size, ks);
    std::vector<double> ms = MsyncLatency(dir.path(), size, ks);
    for (size_t i = 0; i < ks.size(); ++i)
      fmt::print("| {} GiB | {} | {:.0f} | {:.0f} | {:.0f} | {:.2f}x |\n", size / kGiB, ks[i],
                 rows[i].pause_us, rows[i].commit_us, ms[i], rows[i].commit_us / ms[i]);
  }
  fmt::print("\n");
}

uint64_t MapsLines() {
  uint64_t n = 0;
  if (FILE* f = std::fopen("/proc/self/maps", "r")) {
    for (int c; (c = std::fgetc(f)) != EOF;) n += c == '\n';
    std::fclose(f);
  }
  return n;
}

// The write-protect modes this kernel offers, async-wp first.
std::vector<TrackingMode> WpModes() {
  std::vector<TrackingMode> modes;
  for (TrackingMode t : {TrackingMode::kAsyncWp, TrackingMode::kHybridWp})
    if (ChooseMode(Pager::Probe(), t).ok()) modes.push_back(t);
  return modes;
}

// hybrid-wp against async-wp (and msync) on a populated region: the k
// dirty pages are new random pages every commit (each may land in a cold
// chunk: a fault, and the whole chunk in the cut), or the same k pages
// again (their chunks stay hot: the steady state of a working set).
void Tracking(bool big, bool huge) {
  const std::vector<uint64_t> ks = {1, 64, 1024, 16384};
  std::vector<uint64_t> sizes = {kGiB};
  if (big) sizes.push_back(8 * kGiB);
  if (huge) sizes.push_back(16 * kGiB);
  const std::vector<TrackingMode> modes = WpModes();
  fmt::print("## Commit pause by tracking mode (median of {})\n\n", g_runs);
  fmt::print(
      "| region | dirty pages | pattern | tracking | pause us | durable commit us | pages in the cut | "
      "hot chunks | VMAs | msync us (baseline) |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|\n");
  for (uint64_t size : sizes) {
    TempDir dir;
    const std::vector<double> ms = MsyncLatency(dir.path(), size, ks);
    for (TrackingMode mode : modes) {
      auto e = OpenOrDie(dir.path(), fmt::format("tracking{}", static_cast<int>(mode)), size, mode);
      auto* base = static_cast<uint8_t*>(e->base());
      const uint64_t pages = size / kPageSize;
      Populate(*e, size);
      uint64_t seed = 42;
      for (size_t ki = 0; ki < ks.size(); ++ki) {
        const uint64_t k = ks[ki];
        for (bool same : {false, true}) {
          std::vector<uint64_t> fixed;
          for (uint64_t i = 0; i < k; ++i) fixed.push_back(Rand(&seed) % pages);
          std::vector<double> pause, commit, cut, hot, vmas;
          for (int r = -1; r < g_runs; ++r) {  // r = -1 warms the same pages' chunks
            if (same) {
              for (uint64_t p : fixed) *reinterpret_cast<volatile uint64_t*>(base + p * kPageSize) = seed + r;
            } else {
              DirtyRandom(base, pages, k, &seed);
            }
            const uint64_t t0 = NowNs();
            CommitOrDie(*e);
            if (r < 0) continue;
            const PagerStats st = e->pager().stats();
            commit.push_back(static_cast<double>(NowNs() - t0) / 1e3);
            pause.push_back(static_cast<double>(st.last_pause_ns) / 1e3);
            cut.push_back(static_cast<double>(st.last_dirty_pages));
            hot.push_back(static_cast<double>(st.hot_chunks));
            vmas.push_back(static_cast<double>(MapsLines()));
          }
          fmt::print("| {} GiB | {} | {} | {} | {:.0f} | {:.0f} | {:.0f} | {:.0f} | {:.0f} | {:.0f} |\n", size / kGiB,
                     k, same ? "same pages" : "new pages", TrackingModeName(mode), Median(pause), Median(commit),
                     Median(cut), Median(hot), Median(vmas), ms[ki]);
        }
      }
    }
  }
  fmt::print("\n");
}

// The steady state of a program that writes a random 1% of a populated
// region between commits, for --rounds rounds after one to warm up: the
// writes' time (write faults included), the pause, the durable commit, and
// rounds per second. The baseline writes the same pages of a populated
// MAP_SHARED file and makes them durable with msync(MS_SYNC).
void Steady(bool big, int rounds) {
  const uint64_t size = big ? 8 * kGiB : kGiB, pages = size / kPageSize, k = pages / 100;
  struct Row {
    std::vector<double> write_ms, pause_us, commit_ms, round_ms, cut;
  };
  auto print = [&](const std::string& what, const Row& r) {
    fmt::print("| {} | {:.1f} | {} | {} | {:.1f} | {:.1f} | {:.2f} | {} |\n", what, Median(r.write_ms),
               r.pause_us.empty() ? "-" : fmt::format("{:.0f}", Median(r.pause_us)),
               r.pause_us.empty() ? "-" : fmt::format("{:.0f}", Percentile(r.pause_us, 0.99)), Median(r.commit_ms),
               Median(r.round_ms), 1e3 / Median(r.round_ms),
               r.cut.empty() ? "-" : fmt::format("{:.0f}", Median(r.cut)));
  };
  fmt::print("## Steady state: a random 1% of a {} GiB region ({} pages) written between commits ({} rounds)\n\n",
             size / kGiB, k, rounds);
  fmt::print(
      "| tracking | writes ms | pause us (median) | pause us (p99) | durable commit ms | round ms | rounds/s | "
      "pages in the cut |\n");
  fmt::print("|---|---|---|---|---|---|---|---|\n");
  // Rounds of writes then `durable` over `base`, the first unmeasured;
  // `after` adds what else a round reports.
  auto rounds_of = [&](uint8_t* base, const std::function<void()>& durable, const std::function<void(Row*)>& after) {
    Row r;
    uint64_t seed = 42;
    for (int i = -1; i < rounds; ++i) {
      const uint64_t t0 = NowNs();
      DirtyRandom(base, pages, k, &seed);
      const uint64_t t1 = NowNs();
      durable();
      const uint64_t t2 = NowNs();
      if (i < 0) continue;
      r.write_ms.push_back((t1 - t0) / 1e6);
      r.commit_ms.push_back((t2 - t1) / 1e6);
      r.round_ms.push_back((t2 - t0) / 1e6);
      after(&r);
    }
    return r;
  };
  TempDir dir;
  {
    const SyncedFile f(dir.path(), size);
    print("msync(MS_SYNC) of a MAP_SHARED file (baseline)", rounds_of(
                                                                f.base(), [&] { f.Sync(); }, [](Row*) {}));
  }
  // hybrid-wp as it is, and with chunks written twice before a commit
  // going hot.
  struct Variant {
    TrackingMode mode;
    uint32_t warm_faults;
  };
  std::vector<Variant> variants;
  for (TrackingMode mode : WpModes()) {
    variants.push_back({mode, PagerOptions{}.hybrid_warm_faults});
    if (mode == TrackingMode::kHybridWp) variants.push_back({mode, 2});
  }
  for (const Variant& v : variants) {
    auto e = OpenOrDie(dir.path(), fmt::format("steady{}-{}", static_cast<int>(v.mode), v.warm_faults), size, v.mode,
                       true, [&](EngineOptions* o) { o->pager.hybrid_warm_faults = v.warm_faults; });
    Populate(*e, size);
    const Row r = rounds_of(
        static_cast<uint8_t*>(e->base()), [&] { CommitOrDie(*e); },
        [&](Row* row) {
          const PagerStats st = e->pager().stats();
          row->pause_us.push_back(st.last_pause_ns / 1e3);
          row->cut.push_back(static_cast<double>(st.last_dirty_pages));
        });
    print(fmt::format("pheap {}{}", TrackingModeName(v.mode),
                      v.mode == TrackingMode::kHybridWp ? fmt::format(", hybrid_warm_faults {}", v.warm_faults) : ""),
          r);
  }
  fmt::print("\n");
}

double TouchRead(const uint8_t* base, const std::vector<uint64_t>& order) {
  uint64_t t0 = NowNs();
  uint64_t sum = 0;
  for (uint64_t p : order) sum += *reinterpret_cast<const volatile uint64_t*>(base + p * kPageSize);
  double s = static_cast<double>(NowNs() - t0) / 1e9;
  if (sum == 42) fmt::print(" ");  // keep the loads
  return s;
}

void ColdReopen() {
  const uint64_t size = kGiB, pages = size / kPageSize;
  TempDir dir;
  {
    auto e = OpenOrDie(dir.path(), "cold", size);
    auto* base = static_cast<uint8_t*>(e->base());
    for (uint64_t p = 0; p < pages; ++p) std::memset(base + p * kPageSize, static_cast<int>(p), kPageSize);
    CommitOrDie(*e);
  }
  std::string path = dir.path() + "/cold.data";
  {
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    std::vector<uint8_t> page(kPageSize);
    for (uint64_t p = 0; p < pages; ++p) {
      std::memset(page.data(), static_cast<int>(p), kPageSize);
      if (pwrite(fd, page.data(), kPageSize, static_cast<off_t>(p * kPageSize)) != static_cast<ssize_t>(kPageSize)) std::exit(1);
    }
    fsync(fd);
    close(fd);
  }
  // A large commit bypasses the page cache (O_DIRECT): read the store's
  // files once so that both sides start from the page cache.
  std::vector<uint8_t> buf(1 << 20);
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (!f.is_regular_file()) continue;
    int fd = open(f.path().c_str(), O_RDONLY);
    while (fd >= 0 && read(fd, buf.data(), buf.size()) > 0) {
    }
    if (fd >= 0) close(fd);
  }
  std::vector<uint64_t> seq(pages), rnd(pages);
  std::iota(seq.begin(), seq.end(), 0);
  rnd = seq;
  uint64_t seed = 9;
  for (uint64_t i = pages - 1; i > 0; --i) std::swap(rnd[i], rnd[Rand(&seed) % (i + 1)]);

  std::vector<double> first_access_us, open_ms;
  std::vector<uint64_t> mapped_pages, copied_pages;
  // map_stored: runs of stored pages mapped from the store's files (the
  // default), or every page copied into the region.
  auto pheap_touch = [&](const std::vector<uint64_t>& order, bool map_stored) {
    return MedianOf(g_runs, [&] {
      uint64_t t0 = NowNs();
      auto e = OpenOrDie(dir.path(), "cold", size, TrackingMode::kAuto, map_stored);
      uint64_t t1 = NowNs();
      volatile uint8_t first = *static_cast<uint8_t*>(e->base());
      (void)first;
      uint64_t t2 = NowNs();
      if (map_stored) {
        open_ms.push_back(static_cast<double>(t1 - t0) / 1e6);
        first_access_us.push_back(static_cast<double>(t2 - t1) / 1e3);
      }
      const double gbs = static_cast<double>(size) / 1e9 / TouchRead(static_cast<uint8_t*>(e->base()), order);
      const PagerStats st = e->pager().stats();
      if (map_stored) {
        mapped_pages.push_back(st.pages_mapped);
        copied_pages.push_back(st.pages_fetched);
      }
      return gbs;
    });
  };
  auto file_touch = [&](const std::vector<uint64_t>& order) {
    return MedianOf(g_runs, [&] {
      int fd = open(path.c_str(), O_RDONLY);
      auto* m = static_cast<uint8_t*>(mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0));
      double gbs = static_cast<double>(size) / 1e9 / TouchRead(m, order);
      munmap(m, size);
      close(fd);
      return gbs;
    });
  };
  double ps = pheap_touch(seq, true), pr = pheap_touch(rnd, true);
  double cs = pheap_touch(seq, false), cr = pheap_touch(rnd, false);
  double fs = file_touch(seq), fr = file_touch(rnd);
  fmt::print("## Cold reopen of a 1 GiB image (median of {}; store and file both in the page cache)\n\n", g_runs);
  fmt::print("| touch order | pheap GB/s | pheap, every page copied, GB/s | mapped file GB/s (baseline) | pheap / file | "
             "copied / file |\n|---|---|---|---|---|---|\n");
  fmt::print("| sequential | {:.2f} | {:.2f} | {:.2f} | {:.2f}x | {:.2f}x |\n", ps, cs, fs, ps / fs, cs / fs);
  fmt::print("| random | {:.2f} | {:.2f} | {:.2f} | {:.2f}x | {:.2f}x |\n", pr, cr, fr, pr / fr, cr / fr);
  fmt::print("\nopen {:.1f} ms, then first access {:.0f} us (medians); of the {} pages, the sequential touch "
             "found {} mapped from the store and {} copied (first run)\n\n",
             Median(open_ms), Median(first_access_us), pages, mapped_pages.at(0), copied_pages.at(0));
}

uint64_t LogFileBytes(const std::string& path) {
  uint64_t n = 0;
  for (const auto& de : std::filesystem::directory_iterator(path)) {
    std::error_code ec;
    uint64_t size = de.path().extension() == ".pheap" ? std::filesystem::file_size(de.path(), ec) : 0;
    if (!ec) n += size;
  }
  return n;
}

void Compaction() {
  constexpr uint64_t kLive = 2048, kCommits = 5000, kLogFile = uint64_t{4} << 20;  // 8 MiB live
  fmt::print("## Compaction ({} one-page commits over a {} MiB live image, log_file_size {} MiB, median of {})\n\n",
             kCommits, kLive * kPageSize >> 20, kLogFile >> 20, g_runs);
  struct Figures {
    std::vector<double> p50, p99, final_amp, max_amp;
  };
  Figures on, off;
  for (int r = 0; r < g_runs; ++r) {
    for (bool compact : {false, true}) {
      TempDir dir;
      auto e = OpenOrDie(dir.path(), "compaction", kGiB, TrackingMode::kAuto, true, [&](EngineOptions* o) {
        o->compact = compact;
        o->store.log_file_bytes = kLogFile;
      });
      auto* base = static_cast<uint8_t*>(e->base());
      for (uint64_t p = 0; p < kLive; ++p) base[p * kPageSize] = 1;
      CommitOrDie(*e);
      const std::string path = dir.path() + "/compaction";
      std::vector<double> lat;
      double max_amp = 0;
      uint64_t seed = 42 + r;
      for (uint64_t i = 0; i < kCommits; ++i) {
        *reinterpret_cast<uint64_t*>(base + Rand(&seed) % kLive * kPageSize) = i;
        uint64_t t0 = NowNs();
        CommitOrDie(*e);
        lat.push_back(static_cast<double>(NowNs() - t0) / 1e3);
        if (i % 100 == 0)
          max_amp = std::max(max_amp, static_cast<double>(LogFileBytes(path)) / static_cast<double>(kLive * kPageSize));
      }
      Figures& f = compact ? on : off;
      f.p50.push_back(Percentile(lat, 0.5));
      f.p99.push_back(Percentile(lat, 0.99));
      f.final_amp.push_back(static_cast<double>(LogFileBytes(path)) / static_cast<double>(kLive * kPageSize));
      f.max_amp.push_back(max_amp);
    }
  }
  fmt::print("| compaction | commit p50 us | p99 us | p50 vs off | p99 vs off | bytes on disk / live, at the end | at most |\n");
  fmt::print("|---|---|---|---|---|---|---|\n");
  for (auto [name, f] : {std::pair<const char*, Figures*>{"off (baseline)", &off}, {"on", &on}})
    fmt::print("| {} | {:.0f} | {:.0f} | {:.2f}x | {:.2f}x | {:.2f} | {:.2f} |\n", name, Median(f->p50), Median(f->p99),
               Median(f->p50) / Median(off.p50), Median(f->p99) / Median(off.p99), Median(f->final_amp),
               Median(f->max_amp));
  fmt::print("\n");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pheap engine benchmarks"};
  std::vector<std::string> only;
  bool big = true, huge = false;
  int rounds = 30;
  app.add_option("--runs", g_runs, "runs per figure (median reported)")->capture_default_str();
  app.add_option("--only", only, "first-write, commit, tracking, steady, reopen, compaction");
  app.add_flag("!--no-8g", big, "skip the 8 GiB region (steady: use 1 GiB)");
  app.add_flag("--16g", huge, "tracking: add a 16 GiB region (needs 17 GiB of memory free)");
  app.add_option("--rounds", rounds, "steady: commits measured")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto want = [&](const char* s) { return only.empty() || std::find(only.begin(), only.end(), s) != only.end(); };
  fmt::print("# pheap engine benchmarks\n\n");
  if (want("first-write")) FirstWrite();
  if (want("commit")) Commits(big);
  if (want("tracking")) Tracking(big, huge);
  if (want("steady")) Steady(big, rounds);
  if (want("reopen")) ColdReopen();
  if (want("compaction")) Compaction();
  return 0;
}
