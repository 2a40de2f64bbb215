// Allocator throughput and memory overhead: pheap_malloc/pheap_free against
// the process's malloc on one harness, which calls through a two-entry
// function table so every allocator pays the same indirect call.
//
//   alloc_bench --allocator pheap|arena|system --pattern P --threads T
//       one measurement; prints one line of key=value results.
//   alloc_bench [--runs 5]
//       every pattern x {1, 2} threads x {glibc, mimalloc, jemalloc, pheap,
//       arena},
//       each run in a fresh child of this binary (the baselines are
//       `--allocator system` under LD_PRELOAD of the other malloc, or none
//       for glibc); prints medians as Markdown.
//
// Patterns (after the mimalloc-bench programs of the same names):
//   larson         each thread replaces random entries of 5000 live blocks
//                  of 8..1000 B; between rounds the arrays pass to the next
//                  thread, so with 2 threads half the frees are remote.
//   xmalloc        a producer allocates batches of 16..128 B blocks that a
//                  consumer thread frees, oldest first, through a queue of
//                  up to 256 batches (1 thread: it frees its own, as late).
//   cache-scratch  each thread frees a block the main thread allocated, then
//                  allocates, writes and frees 8 B blocks: an allocator that
//                  hands neighbouring bytes to two threads shows false sharing.
// `pheap` is a heap opened with pheap_open: the allocator inside a region
// whose writes are tracked. `arena` is the same allocator (heap/allocator.h)
// on plain anonymous memory, without the heap around it: its ratio to glibc
// is the allocator's own cost, and the gap to `pheap` what the region adds.
// Live bytes are tracked by the harness (requested sizes); the memory figure
// is the peak RSS the workload added over the peak of live bytes.
// No commit happens during a run: the figures are the allocator's.
#include <dlfcn.h>
#include <fcntl.h>
#include <immintrin.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <pheap/heap.hpp>  // the C API, with its handle spelled pheap::handle

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench/bench_util.h"
#include "heap/allocator.h"

extern char** environ;

namespace {

using pheap::bench::NowNs;
using pheap::bench::Rand;

// ---- The allocator under test: two function pointers and their context. ----

struct AllocFns {
  void* (*malloc)(void* ctx, size_t n);
  void (*free)(void* ctx, void* p);
  void* ctx;
};

void* SystemMalloc(void*, size_t n) { return malloc(n); }
void SystemFree(void*, void* p) { free(p); }
void* PheapMalloc(void* h, size_t n) { return pheap_malloc(static_cast<pheap::handle*>(h), n); }
void PheapFree(void* h, void* p) { pheap_free(static_cast<pheap::handle*>(h), p); }

void* ArenaMalloc(void* a, size_t n) { return static_cast<pheap::Allocator*>(a)->Malloc(n); }
void ArenaFree(void* a, void* p) { static_cast<pheap::Allocator*>(a)->Free(p); }

AllocFns g_fns;

// The arena of `--allocator arena`: anonymous memory, whose freed pages go
// back to the OS with madvise, as the heap's would.
class AnonymousArena : public pheap::ArenaHooks {
 public:
  explicit AnonymousArena(size_t size) : size_(size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : p;
  }
  ~AnonymousArena() override {
    if (base_ != nullptr) munmap(base_, size_);
  }
  AnonymousArena(const AnonymousArena&) = delete;
  AnonymousArena& operator=(const AnonymousArena&) = delete;
  void* base() const { return base_; }
  size_t size() const { return size_; }
  pheap::Status Discard(void* addr, size_t len) override {
    if (madvise(addr, len, MADV_DONTNEED) != 0) return pheap::Status::FromErrno("madvise", errno);
    return pheap::Status::Ok();
  }

 private:
  void* base_;
  size_t size_;
};

void* Alloc(size_t n) {
  void* p = g_fns.malloc(g_fns.ctx, n);
  if (p == nullptr) {
    fmt::print(stderr, "alloc_bench: out of memory allocating {} bytes\n", n);
    std::exit(1);
  }
  *static_cast<volatile char*>(p) = 1;  // touch it, as a program would
  return p;
}
void Free(void* p) { g_fns.free(g_fns.ctx, p); }

// ---- Live bytes: each thread counts its own and publishes every kPublish
// operations, then sums everyone's; a remote free makes a count negative. ----

constexpr int kMaxThreads = 64;
constexpr int kPublish = 256;

struct alignas(64) LiveCount {
  std::atomic<int64_t> bytes{0};
  int64_t peak = 0;  // written by the owner only, read after join
};
LiveCount g_live[kMaxThreads];
int g_threads = 1;

class LiveTracker {
 public:
  explicit LiveTracker(int t) : t_(t) {}
  ~LiveTracker() { Publish(); }
  void Add(int64_t delta) {
    mine_ += delta;
    if (++ops_ % kPublish == 0) Publish();
  }
  void Publish() {
    g_live[t_].bytes.store(mine_, std::memory_order_relaxed);
    int64_t sum = 0;
    for (int i = 0; i < g_threads; ++i) sum += g_live[i].bytes.load(std::memory_order_relaxed);
    g_live[t_].peak = std::max(g_live[t_].peak, sum);
  }

 private:
  int t_;
  int64_t mine_ = 0;
  uint64_t ops_ = 0;
};

// Waits for another thread on this 2-core machine without starving it.
void Backoff(int* spins) {
  if (++*spins < 64) {
    _mm_pause();
  } else {
    sched_yield();
  }
}

// ---- Patterns. Each runs on thread t of g_threads between `start` (which
// the main thread joins to take the start time) and its return; it returns
// the malloc+free pairs it completed. ----

struct Run {
  std::barrier<>* start;
  uint64_t ops;  // per thread
};

constexpr int kLarsonSlots = 5000;
constexpr int kLarsonRounds = 10;

struct LarsonArray {
  void* p[kLarsonSlots];
  uint32_t n[kLarsonSlots];
};
std::vector<LarsonArray> g_larson;

uint64_t Larson(int t, const Run& run) {
  LiveTracker live(t);
  uint64_t x = 0x9E3779B97F4A7C15ull * (t + 1);
  LarsonArray& own = g_larson[t];
  for (int i = 0; i < kLarsonSlots; ++i) {
    own.n[i] = static_cast<uint32_t>(8 + Rand(&x) % 993);
    own.p[i] = Alloc(own.n[i]);
    live.Add(own.n[i]);
  }
  run.start->arrive_and_wait();
  const uint64_t per_round = run.ops / kLarsonRounds;
  for (int round = 0; round < kLarsonRounds; ++round) {
    LarsonArray& a = g_larson[(t + round) % g_threads];
    for (uint64_t i = 0; i < per_round; ++i) {
      uint64_t r = Rand(&x);
      size_t s = r % kLarsonSlots;
      Free(a.p[s]);
      live.Add(-int64_t{a.n[s]});
      a.n[s] = static_cast<uint32_t>(8 + (r >> 32) % 993);
      a.p[s] = Alloc(a.n[s]);
      live.Add(a.n[s]);
    }
    run.start->arrive_and_wait();  // hand the arrays on together
  }
  return per_round * kLarsonRounds;
}

constexpr int kBatch = 256;
constexpr int kRingBatches = 256;  // up to ~4.7 MB live per pair

struct Batch {
  void* p[kBatch];
  uint32_t n[kBatch];
};
struct Ring {  // one producer, one consumer
  Batch slots[kRingBatches];
  alignas(64) std::atomic<uint64_t> head{0};  // batches produced
  alignas(64) std::atomic<uint64_t> tail{0};  // batches consumed
};
std::vector<Ring> g_rings;

void FillBatch(Batch* b, uint64_t* x, LiveTracker* live) {
  for (int i = 0; i < kBatch; ++i) {
    b->n[i] = static_cast<uint32_t>(16 + Rand(x) % 113);
    b->p[i] = Alloc(b->n[i]);
    live->Add(b->n[i]);
  }
}
void FreeBatch(const Batch& b, LiveTracker* live) {
  for (int i = 0; i < kBatch; ++i) {
    Free(b.p[i]);
    live->Add(-int64_t{b.n[i]});
  }
}

// Threads 2k and 2k+1 are producer and consumer of ring k; a last odd
// thread frees what it allocated itself.
uint64_t Xmalloc(int t, const Run& run) {
  LiveTracker live(t);
  uint64_t x = 0x9E3779B97F4A7C15ull * (t + 1);
  const uint64_t batches = run.ops / kBatch;
  const bool alone = t == g_threads - 1 && t % 2 == 0;
  run.start->arrive_and_wait();
  Ring& ring = g_rings[t / 2];
  if (alone) {  // the same first-in first-out life, within one thread
    for (uint64_t i = 0; i < batches + kRingBatches; ++i) {
      if (i >= kRingBatches) FreeBatch(ring.slots[i % kRingBatches], &live);
      if (i < batches) FillBatch(&ring.slots[i % kRingBatches], &x, &live);
    }
    return batches * kBatch;
  }
  for (uint64_t i = 0; i < batches; ++i) {
    int spins = 0;
    if (t % 2 == 0) {
      while (i - ring.tail.load(std::memory_order_acquire) == kRingBatches) Backoff(&spins);
      FillBatch(&ring.slots[i % kRingBatches], &x, &live);
      ring.head.store(i + 1, std::memory_order_release);
    } else {
      while (ring.head.load(std::memory_order_acquire) == i) Backoff(&spins);
      FreeBatch(ring.slots[i % kRingBatches], &live);
      ring.tail.store(i + 1, std::memory_order_release);
    }
  }
  return t % 2 == 0 ? batches * kBatch : 0;  // count each pair once
}

constexpr size_t kScratchSize = 8;
constexpr int kScratchWrites = 16;
std::vector<void*> g_scratch_first;  // allocated by the main thread

uint64_t CacheScratch(int t, const Run& run) {
  LiveTracker live(t);
  run.start->arrive_and_wait();
  Free(g_scratch_first[t]);
  for (uint64_t i = 0; i < run.ops; ++i) {
    auto* p = static_cast<volatile char*>(Alloc(kScratchSize));
    live.Add(kScratchSize);
    for (int w = 0; w < kScratchWrites; ++w)
      for (size_t b = 0; b < kScratchSize; ++b) p[b] = static_cast<char>(p[b] + 1);
    Free(const_cast<char*>(p));
    live.Add(-int64_t{kScratchSize});
  }
  return run.ops;
}

struct Pattern {
  uint64_t (*fn)(int t, const Run& run);
  uint64_t ops;  // per thread: about 0.1-0.3 s with glibc on one core
};
const std::map<std::string, Pattern> kPatterns = {
    {"larson", {Larson, 4000000}},
    {"xmalloc", {Xmalloc, 4000000}},
    {"cache-scratch", {CacheScratch, 2000000}},
};

// ---- Memory: the workload's peak RSS, from /proc/self/status. ----

int64_t StatusKiB(const char* field) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  int64_t v = -1;
  size_t len = std::strlen(field);
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::strncmp(line, field, len) == 0 && line[len] == ':') v = std::strtoll(line + len + 1, nullptr, 10);
  }
  std::fclose(f);
  return v;
}

// Makes VmHWM start again from the current RSS (Linux >= 4.0), so it
// measures the workload's peak and not that of the setup before it.
void ResetPeakRss() {
  int fd = open("/proc/self/clear_refs", O_WRONLY);
  if (fd < 0) return;
  ssize_t r = write(fd, "5", 1);
  (void)r;  // an older kernel: VmHWM then still bounds the peak from above
  close(fd);
}

// The library malloc resolves to in this process (shows LD_PRELOAD worked).
std::string MallocLibrary() {
  Dl_info info{};
  void* (*m)(size_t) = malloc;
  if (dladdr(reinterpret_cast<void*>(m), &info) == 0 || info.dli_fname == nullptr) return "?";
  std::string f = info.dli_fname;
  return f.substr(f.rfind('/') + 1);
}

int RunOne(const std::string& allocator, const std::string& pattern_name, int threads) {
  auto pattern = kPatterns.find(pattern_name);
  if (pattern == kPatterns.end() || threads < 1 || threads > kMaxThreads) {
    fmt::print(stderr, "alloc_bench: no pattern '{}' or bad thread count {}\n", pattern_name, threads);
    return 2;
  }
  g_threads = threads;
  pheap::bench::TempDir dir;
  pheap::handle* h = nullptr;
  // Outlive the measurement: the harness frees into them after the run.
  AnonymousArena arena(size_t{8} << 30);
  pheap::Allocator arena_allocator;
  if (allocator == "pheap") {
    std::string config = fmt::format("dir={};size=8G", dir.path());
    h = pheap_open("alloc_bench", config.c_str());
    if (h == nullptr) {
      fmt::print(stderr, "alloc_bench: pheap_open({}): {}\n", config, pheap_last_error());
      return 1;
    }
    g_fns = {PheapMalloc, PheapFree, h};
  } else if (allocator == "arena") {
    pheap::Status st = arena.base() == nullptr ? pheap::Status::FromErrno("mmap", errno)
                                               : arena_allocator.Attach(arena.base(), arena.size(), &arena);
    if (!st.ok()) {
      fmt::print(stderr, "alloc_bench: arena: {}\n", st.ToString());
      return 1;
    }
    g_fns = {ArenaMalloc, ArenaFree, &arena_allocator};
  } else if (allocator == "system") {
    g_fns = {SystemMalloc, SystemFree, nullptr};
  } else {
    fmt::print(stderr, "alloc_bench: --allocator is pheap, arena or system, not '{}'\n", allocator);
    return 2;
  }
  // The harness's own structures come from the process's malloc, before the
  // memory baseline is taken.
  g_larson.assign(threads, LarsonArray{});
  g_rings = std::vector<Ring>(static_cast<size_t>(threads + 1) / 2);
  g_scratch_first.assign(threads, nullptr);
  const int64_t rss_before = StatusKiB("VmRSS");
  ResetPeakRss();
  if (pattern->second.fn == CacheScratch) {
    for (int t = 0; t < threads; ++t) g_scratch_first[t] = Alloc(kScratchSize);
  }

  std::barrier<> start(threads + 1);
  std::vector<uint64_t> pairs(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] { pairs[t] = pattern->second.fn(t, Run{&start, pattern->second.ops}); });
  start.arrive_and_wait();
  const uint64_t t0 = NowNs();
  if (pattern->second.fn == Larson) {
    for (int r = 0; r < kLarsonRounds; ++r) start.arrive_and_wait();
  }
  for (auto& t : ts) t.join();
  const uint64_t t1 = NowNs();
  const int64_t rss_peak = StatusKiB("VmHWM");

  int64_t live_peak = 0;
  uint64_t total = 0;
  for (int t = 0; t < threads; ++t) {
    live_peak = std::max(live_peak, g_live[t].peak);
    total += pairs[t];
  }
  if (pattern->second.fn == Larson) {
    for (auto& a : g_larson)
      for (void* p : a.p) Free(p);
  }
  fmt::print("seconds={:.6f} pairs={} live_peak={} rss_growth={} malloc={}\n",
             static_cast<double>(t1 - t0) * 1e-9, total, live_peak,
             (rss_peak - rss_before) * 1024, MallocLibrary());
  std::fflush(stdout);
  if (h != nullptr && pheap_close(h) != 0) {
    fmt::print(stderr, "alloc_bench: pheap_close: {}\n", pheap_last_error());
    return 1;
  }
  return 0;
}

// ---- The driver: runs children and prints the tables. ----

struct Contender {
  std::string name;
  std::string allocator;  // --allocator of the child
  std::string preload;    // LD_PRELOAD of the child, empty for none
  std::string expect;     // part of the library name malloc must resolve to
};

struct Result {
  double seconds = 0;
  double pairs = 0;
  double live_peak = 0;
  double rss_growth = 0;
};

// Runs this binary with `args` and `preload`; parses its result line.
bool Spawn(const Contender& c, const std::string& pattern, int threads, Result* out) {
  std::vector<std::string> args = {"alloc_bench", "--allocator", c.allocator, "--pattern", pattern,
                                   "--threads", std::to_string(threads)};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "LD_PRELOAD=", 11) != 0) env.emplace_back(*e);
  }
  if (!c.preload.empty()) env.push_back("LD_PRELOAD=" + c.preload);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  for (auto& e : env) envp.push_back(e.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);

  int fds[2];
  if (pipe(fds) != 0) return false;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execve("/proc/self/exe", argv.data(), envp.data());
    _exit(127);
  }
  close(fds[1]);
  std::string text;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) text.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  char lib[256] = "";
  if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      std::sscanf(text.c_str(), "seconds=%lf pairs=%lf live_peak=%lf rss_growth=%lf malloc=%255s",
                  &out->seconds, &out->pairs, &out->live_peak, &out->rss_growth, lib) != 5) {
    fmt::print(stderr, "alloc_bench: {} {} x{} failed (status {:#x}): {}\n", c.name, pattern, threads,
               status, text);
    return false;
  }
  if (std::strstr(lib, c.expect.c_str()) == nullptr) {
    fmt::print(stderr, "alloc_bench: {}: malloc resolved to {}, not {} (is {} installed?)\n", c.name, lib,
               c.expect, c.preload);
    return false;
  }
  return true;
}

std::string Ratio(double a, double b) { return b > 0 && a > 0 ? fmt::format("{:.2f}x", a / b) : "n/a"; }

int Drive(int runs, const std::string& mimalloc, const std::string& jemalloc) {
  std::vector<Contender> cs = {{"glibc", "system", "", "libc.so"}};
  for (auto [name, path] : {std::pair{"mimalloc", mimalloc}, std::pair{"jemalloc", jemalloc}}) {
    if (access(path.c_str(), R_OK) == 0) {
      cs.push_back({name, "system", path, name});
    } else {
      fmt::print(stderr, "alloc_bench: {} not found at {}: its column is left out\n", name, path);
    }
  }
  cs.push_back({"pheap", "pheap", "", "libc.so"});
  cs.push_back({"arena", "arena", "", "libc.so"});
  auto col = [&](const std::string& name) {
    for (size_t i = 0; i < cs.size(); ++i) if (cs[i].name == name) return static_cast<int>(i);
    return -1;
  };

  fmt::print("## Allocator throughput (million malloc+free pairs/s, median of {} runs)\n\n", runs);
  std::string head = "| pattern | threads |", rule = "|---|---:|";
  for (auto& c : cs) head += " " + c.name + " |", rule += "---:|";
  fmt::print("{} pheap/glibc time | pheap/mimalloc time | arena/glibc time |\n{}---:|---:|---:|\n", head, rule);
  std::string mem = "| pattern | threads | peak live MiB |", mem_rule = "|---|---:|---:|";
  for (auto& c : cs) mem += " " + c.name + " |", mem_rule += "---:|";
  std::vector<std::string> mem_rows;

  for (const auto& [pattern, p] : kPatterns) {
    for (int threads : {1, 2}) {
      // Runs interleave the contenders so drift in machine load hits all alike.
      std::vector<std::vector<Result>> rs(cs.size());
      for (int r = 0; r < runs; ++r) {
        for (size_t i = 0; i < cs.size(); ++i) {
          Result res;
          if (!Spawn(cs[i], pattern, threads, &res)) return 1;
          rs[i].push_back(res);
        }
      }
      auto median = [&](size_t i, double Result::*f) {
        std::vector<double> v;
        for (auto& r : rs[i]) v.push_back(r.*f);
        return pheap::bench::Median(v);
      };
      std::string row = fmt::format("| {} | {} |", pattern, threads);
      std::string mrow = fmt::format("| {} | {} | {:.1f} |", pattern, threads,
                                     median(0, &Result::live_peak) / (1 << 20));
      std::vector<double> secs(cs.size());
      for (size_t i = 0; i < cs.size(); ++i) {
        secs[i] = median(i, &Result::seconds);
        row += fmt::format(" {:.1f} |", rs[i][0].pairs / secs[i] * 1e-6);
        mrow += fmt::format(" {:.2f} |", median(i, &Result::rss_growth) / median(i, &Result::live_peak));
      }
      int g = col("glibc"), m = col("mimalloc"), ph = col("pheap"), ar = col("arena");
      fmt::print("{} {} | {} | {} |\n", row, Ratio(secs[ph], secs[g]), m < 0 ? "n/a" : Ratio(secs[ph], secs[m]),
                 Ratio(secs[ar], secs[g]));
      std::fflush(stdout);
      // cache-scratch holds a few bytes live: no ratio to speak of.
      if (median(0, &Result::live_peak) >= (1 << 20)) mem_rows.push_back(mrow);
    }
  }
  fmt::print("\nTime ratios below 1 mean pheap is faster. Goal: pheap/glibc <= 1.0x at 1 thread, "
             "pheap/mimalloc <= 1.3x.\n\n");
  fmt::print("## Memory overhead (peak RSS growth / peak live bytes requested, median of {} runs)\n\n", runs);
  fmt::print("{}\n{}\n", mem, mem_rule);
  for (auto& r : mem_rows) fmt::print("{}\n", r);
  fmt::print("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pheap allocator benchmarks against glibc, mimalloc and jemalloc"};
  std::string allocator, pattern = "larson";
  int threads = 1, runs = 5;
  std::string mimalloc = "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2";
  std::string jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
  app.add_option("--allocator", allocator, "pheap, arena or system: run one measurement (else run them all)");
  app.add_option("--pattern", pattern, "larson, xmalloc or cache-scratch")->capture_default_str();
  app.add_option("--threads", threads, "threads of one measurement")->capture_default_str();
  app.add_option("--runs", runs, "runs per figure (median reported)")->capture_default_str();
  app.add_option("--mimalloc", mimalloc, "libmimalloc to LD_PRELOAD")->capture_default_str();
  app.add_option("--jemalloc", jemalloc, "libjemalloc to LD_PRELOAD")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (!allocator.empty()) return RunOne(allocator, pattern, threads);
  return Drive(runs, mimalloc, jemalloc);
}
