// `pheap top` (and `pheap inspect --pid`): the live statistics of running
// heaps (heap/live_stats.h), found by the process's pid or by the heap's
// name, refreshed on a terminal until interrupted, or printed once as JSON.
// Reads only: the LIVE files, /proc/PID/maps and /proc/PID/smaps (resident
// pages), /proc/locks (who holds the heap). The program is not stopped or
// asked anything.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/types.h"
#include "heap/live_stats.h"
#include "store/page_store.h"
#include "tools/commands.h"

namespace pheap::tools {

const char kTopFields[] = R"(Fields (per heap the process holds):
  pid, exe       the process holding the heap, and its executable
  epoch          the heap's last durable epoch
  commits        durable commits since the heap was opened
  pause          how long the program's threads were stopped for a commit's cut:
                 p50, p99 (over the latest 1024 cuts), max (since open), last;
                 threads: how many the last cut stopped
  dirty          pages written since the last commit (a walk of the page
                 tables that protects nothing, at most 1% of a core; "?" in
                 the tracking modes that cannot count without faults), and
                 the pages the last commit wrote
  faults         missing faults served by the pager, and where the pages came
                 from: copied from the local store, read from the replicas
                 (peers), or mapped from the local store's files
  resident       pages of the region in memory now (from /proc/PID/smaps)
  memory         the budget (memory_max; none: nothing is evicted), the
                 region's resident pages as the pager last counted them, and
                 the pages evicted (given back) and refetched (faulted in
                 again after that) since the heap was opened
  replicas       each peer's last durable epoch and its lag behind the heap's,
                 in epochs; none for a heap without peers
  updated        age of the snapshot; the heap refreshes it every 250 ms
A heap whose process ended (or closed it) is reported as not running.
)";

namespace {

volatile sig_atomic_t g_interrupted = 0;
void OnInterrupt(int) { g_interrupted = 1; }

// Whether process `pid` exists and has not ended (a zombie has).
bool Alive(long pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!std::getline(in, stat)) return false;
  const size_t paren = stat.rfind(')');  // the command name may hold spaces and parentheses
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z' && stat[paren + 2] != 'X';
}

struct Found {
  std::string dir, name, path;  // path: the LIVE file
};

// The heaps process `pid` has open: the LIVE files it maps.
Result<std::vector<Found>> HeapsOf(long pid) {
  if (!Alive(pid)) return Status::NotFound(fmt::format("process {} is not running", pid));
  const std::string maps = fmt::format("/proc/{}/maps", pid);
  std::ifstream in(maps);
  if (!in) return Status::FromErrno(fmt::format("reading {} (run as the process's user)", maps), errno);
  std::set<std::string> paths;
  std::string line;
  const std::string suffix = std::string("/") + kLiveFileName;
  while (std::getline(in, line)) {
    const size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    if (path.ends_with(suffix)) paths.insert(path);  // a deleted file ends in " (deleted)"
  }
  if (paths.empty() && !Alive(pid)) return Status::NotFound(fmt::format("process {} is not running", pid));
  if (paths.empty())
    return Status::NotFound(fmt::format("process {} has no heap open (it maps no pheap {} file)", pid, kLiveFileName));
  std::vector<Found> out;
  for (const std::string& p : paths) {
    const std::filesystem::path heap_dir = std::filesystem::path(p).parent_path();
    out.push_back({heap_dir.parent_path().string(), heap_dir.filename().string(), p});
  }
  return out;
}

// Pages resident in [base, base + size) of process `pid`; nullopt if its
// smaps cannot be read.
std::optional<uint64_t> ResidentPages(uint64_t pid, uint64_t base, uint64_t size) {
  std::ifstream in(fmt::format("/proc/{}/smaps", pid));
  if (!in) return std::nullopt;
  uint64_t kb = 0;
  bool inside = false;
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long start = 0, end = 0, rss = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &start, &end) == 2 && line.find(':') > line.find(' ')) {
      inside = start < base + size && end > base;
    } else if (inside && std::sscanf(line.c_str(), "Rss: %llu kB", &rss) == 1) {
      kb += rss;
    }
  }
  return kb * 1024 / kPageSize;
}

// One heap's snapshot, or why it has none.
struct Snapshot {
  Found where;
  LiveStats s{};
  std::optional<uint64_t> resident;
};

Result<Snapshot> Take(const Found& f, long want_pid) {
  auto file = LiveStatsFile::Open(f.path);
  if (!file.ok()) {
    std::error_code ec;
    if (file.status().code() == Status::Code::kNotFound && !std::filesystem::is_directory(f.dir + "/" + f.name, ec))
      return Status::NotFound(fmt::format("no heap store at {}/{}: check the dir and the heap name", f.dir, f.name));
    if (file.status().code() == Status::Code::kNotFound)
      return Status::NotFound(fmt::format("heap '{}' under {} is not running (no process has it open)", f.name, f.dir));
    return file.status();
  }
  auto s = (*file)->Read();
  if (!s.ok()) return s.status();
  const long pid = static_cast<long>(s->pid);
  if (want_pid > 0 && pid != want_pid)
    return Status::NotFound(
        fmt::format("process {} is not running heap '{}' (pid {} holds it now)", want_pid, f.name, pid));
  if (s->state == kLiveClosed)
    return Status::NotFound(fmt::format("heap '{}' is not running: process {} closed it", f.name, pid));
  if (!Alive(pid))
    return Status::NotFound(
        fmt::format("process {} is not running (it ended holding heap '{}'; its statistics in "
                    "{} are stale)",
                    pid, f.name, f.path));
  if (PageStore::Holder(f.dir, f.name) != pid)
    return Status::NotFound(fmt::format("heap '{}' is not running: process {} no longer holds its store", f.name, pid));
  return Snapshot{f, *s, ResidentPages(s->pid, s->base, s->size)};
}

double AgeSeconds(const LiveStats& s) {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  const uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000000 + static_cast<uint64_t>(ts.tv_nsec);
  return now > s.updated_unix_ns ? static_cast<double>(now - s.updated_unix_ns) / 1e9 : 0;
}

uint64_t Lag(const LiveStats& s, const LiveReplica& r) {
  return s.durable_epoch > r.durable_epoch ? s.durable_epoch - r.durable_epoch : 0;
}

// A field a holder of an older pheap did not write: null.
nlohmann::json Known(uint64_t v) { return v == kLiveUnknown ? nlohmann::json(nullptr) : nlohmann::json(v); }

nlohmann::json ToJson(const Snapshot& snap) {
  const LiveStats& s = snap.s;
  nlohmann::json replicas = nlohmann::json::array();
  for (uint64_t i = 0; i < s.replica_count; ++i) {
    const LiveReplica& r = s.replica[i];
    replicas.push_back({{"endpoint", r.endpoint},
                        {"answered", (r.flags & kLiveAnswered) != 0},
                        {"installing", (r.flags & kLiveInstalling) != 0},
                        {"durable_epoch", r.durable_epoch},
                        {"lag_epochs", Lag(s, r)}});
  }
  nlohmann::json j = {{"heap", s.heap},
                      {"store", std::filesystem::path(snap.where.path).parent_path().string()},
                      {"pid", s.pid},
                      {"exe", s.exe},
                      {"running", true},
                      {"tracking", s.tracking},
                      {"base", fmt::format("{:#x}", s.base)},
                      {"size", s.size},
                      {"durable_epoch", s.durable_epoch},
                      {"commits", s.commits},
                      {"pause_ns",
                       {{"cuts", s.pause_cuts},
                        {"p50", s.pause_p50_ns},
                        {"p99", s.pause_p99_ns},
                        {"max", s.pause_max_ns},
                        {"last", s.pause_last_ns}}},
                      {"paused_threads", s.paused_threads},
                      {"last_commit_dirty_pages", s.last_dirty_pages},
                      {"dirty_pages", Known(s.dirty_pages)},
                      {"faults",
                       {{"served", s.faults},
                        {"pages_from_local_store", s.pages_fetched - std::min(s.pages_fetched, s.pages_from_replicas)},
                        {"pages_from_replicas", s.pages_from_replicas},
                        {"pages_mapped_from_store", s.pages_mapped}}},
                      {"memory",
                       {{"max_bytes", Known(s.memory_max)},
                        {"resident_pages", Known(s.resident_pages)},
                        {"evictions", Known(s.evictions)},
                        {"refetches", Known(s.refetches)}}},
                      {"replicas", replicas},
                      {"updated_seconds_ago", AgeSeconds(s)},
                      {"snapshots", s.snapshots}};
  j["resident_pages"] = snap.resident ? nlohmann::json(*snap.resident) : nlohmann::json(nullptr);
  return j;
}

std::string Ms(uint64_t ns) { return fmt::format("{:.3f} ms", static_cast<double>(ns) / 1e6); }

// " (N/s)": how fast `field` grew since `before`, over the snapshots'
// times; empty without an earlier snapshot.
std::string Rate(const LiveStats* before, const LiveStats& s, uint64_t LiveStats::*field) {
  if (before == nullptr || s.updated_unix_ns <= before->updated_unix_ns || s.*field < before->*field) return "";
  const double secs = static_cast<double>(s.updated_unix_ns - before->updated_unix_ns) / 1e9;
  return fmt::format(" ({:.1f}/s)", static_cast<double>(s.*field - before->*field) / secs);
}

// `before`: the same heap's previous snapshot, or null.
void PrintText(const Snapshot& snap, const LiveStats* before) {
  const LiveStats& s = snap.s;
  fmt::print("heap '{}'  pid {}  {}\n", s.heap, s.pid, s.exe);
  fmt::print("  store      {}\n", std::filesystem::path(snap.where.path).parent_path().string());
  fmt::print("  region     [{:#x}, {:#x})  {} MiB, tracking {}\n", s.base, s.base + s.size, s.size >> 20, s.tracking);
  fmt::print("  epoch      {}, {} commits{}\n", s.durable_epoch, s.commits, Rate(before, s, &LiveStats::commits));
  fmt::print("  pause      p50 {}, p99 {}, max {}, last {} ({} threads stopped)\n", Ms(s.pause_p50_ns),
             Ms(s.pause_p99_ns), Ms(s.pause_max_ns), Ms(s.pause_last_ns), s.paused_threads);
  fmt::print("  dirty      {} pages written since the last commit, {} by the last commit\n",
             s.dirty_pages == kLiveUnknown ? std::string("?") : std::to_string(s.dirty_pages), s.last_dirty_pages);
  fmt::print(
      "  faults     {} served{}: {} pages from the local store, {} from the replicas, {} mapped from the "
      "store's files\n",
      s.faults, Rate(before, s, &LiveStats::faults), s.pages_fetched - std::min(s.pages_fetched, s.pages_from_replicas),
      s.pages_from_replicas, s.pages_mapped);
  if (snap.resident)
    fmt::print("  resident   {} pages ({:.1f} MiB)\n", *snap.resident,
               static_cast<double>(*snap.resident * kPageSize) / 1048576.0);
  else fmt::print("  resident   unknown (/proc/{}/smaps is not readable)\n", s.pid);
  if (s.memory_max == kLiveUnknown) fmt::print("  memory     unknown (the holder's pheap does not report it)\n");
  else if (s.memory_max == 0) fmt::print("  memory     no budget (memory_max): nothing is evicted\n");
  else
    fmt::print("  memory     budget {:.1f} MiB: {} pages resident at the last count, {} evicted{}, {} refetched{}\n",
               static_cast<double>(s.memory_max) / 1048576.0,
               s.resident_pages == kLiveUnknown ? std::string("?") : std::to_string(s.resident_pages), s.evictions,
               Rate(before, s, &LiveStats::evictions), s.refetches, Rate(before, s, &LiveStats::refetches));
  if (s.replica_count == 0) fmt::print("  replicas   none (the local store only)\n");
  for (uint64_t i = 0; i < s.replica_count; ++i) {
    const LiveReplica& r = s.replica[i];
    fmt::print("  {:<10} {}: ", i == 0 ? "replicas" : "", r.endpoint);
    if ((r.flags & kLiveAnswered) == 0 && r.durable_epoch == 0) fmt::print("no answer\n");
    else
      fmt::print("epoch {}, lag {} epochs{}\n", r.durable_epoch, Lag(s, r),
                 (r.flags & kLiveInstalling) != 0 ? ", being installed" : "");
  }
  fmt::print("  updated    {:.1f} s ago\n", AgeSeconds(s));
}

// Every heap asked for, or the first reason there is none.
Result<std::vector<Snapshot>> TakeAll(const TopOptions& o) {
  std::vector<Found> found;
  if (o.pid > 0) {
    auto heaps = HeapsOf(o.pid);
    if (!heaps.ok()) return heaps.status();
    found = std::move(*heaps);
  } else {
    PHEAP_RETURN_IF_ERROR(PageStore::ValidateHeapName(o.name));
    found.push_back({o.dir, o.name, o.dir + "/" + o.name + "/" + kLiveFileName});
  }
  std::vector<Snapshot> out;
  for (const Found& f : found) {
    auto snap = Take(f, o.pid);
    if (!snap.ok()) return snap.status();
    out.push_back(std::move(*snap));
  }
  return out;
}

// Sleeps ms milliseconds, or until SIGINT.
void Sleep(long ms) {
  timespec left{ms / 1000, (ms % 1000) * 1000000};
  while (!g_interrupted && ::nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

}  // namespace

int RunTop(const TopOptions& o) {
  if ((o.pid > 0) == !o.name.empty())
    return Fail("top", Status::InvalidArgument("give either a PID or --heap NAME"), o.json, 2);
  const bool tty = ::isatty(1) == 1;
  // One snapshot unless asked for more, or watching on a terminal.
  const long count = o.count > 0 ? o.count : (tty && !o.json ? 0 : 1);
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  ::sigaction(SIGINT, &sa, nullptr);
  std::map<std::string, LiveStats> previous;  // by LIVE file, for rates
  for (long n = 0; (count == 0 || n < count) && !g_interrupted; ++n) {
    if (n > 0) Sleep(o.interval_ms);
    if (g_interrupted) break;
    auto snaps = TakeAll(o);
    if (!snaps.ok()) return Fail("top", snaps.status(), o.json);
    if (o.json) {
      nlohmann::json heaps = nlohmann::json::array();
      for (const Snapshot& s : *snaps) heaps.push_back(ToJson(s));
      nlohmann::json j = {{"heaps", heaps}};
      if (o.pid > 0) j["pid"] = o.pid;
      fmt::print("{}\n", count == 1 ? j.dump(2) : j.dump());
    } else {
      if (tty && count != 1) fmt::print("\x1b[H\x1b[2J");
      if (count != 1) fmt::print("pheap top: every {} ms{}\n", o.interval_ms, count == 0 ? "; Ctrl-C to stop" : "");
      for (const Snapshot& s : *snaps) {
        auto it = previous.find(s.where.path);
        PrintText(s, it == previous.end() || it->second.pid != s.s.pid ? nullptr : &it->second);
        previous[s.where.path] = s.s;
      }
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace pheap::tools
