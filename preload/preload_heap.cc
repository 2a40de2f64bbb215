// The preload library's life cycle: open the heap before main, commit it
// periodically and at the end, and keep fork and pheap's own threads right.
//
//   - Open (constructor): heap PHEAP_NAME, else "<program>-<pid>"; every
//     other setting from PHEAP_* (PersistentHeap::OptionsFromConfig). Only
//     the program started with the library persists: the first process to
//     open a heap records its pid in PHEAP_RUN_PID (`pheap run` sets it
//     before it execs), and processes that program starts, which inherit
//     the environment, run on glibc's malloc, unless PHEAP_CHILDREN is on:
//     then each persists on heap "<PHEAP_NAME>-<program>-<pid>". An explicit
//     PHEAP_NAME held by another process is an error, never a new name. If
//     the heap cannot be opened the program still runs, on glibc's malloc,
//     after a one-line message naming the cause; PHEAP_REQUIRE=1 makes that
//     an exit with status 70 instead. Peers that do not answer hold the
//     start for PHEAP_REPLICA_OPEN_TIMEOUT_MS (default 1000 here) before
//     that message, which then names them: an open never takes the heap's
//     term without k - W + 1 of its replicas, and running on without them
//     would write epochs no replica holds.
//   - Reruns: a heap that holds no root but the statistics record (its
//     programs never set one through pheap_default()) opens as a new
//     generation, with an empty arena: the earlier run's blocks are freed,
//     not kept unreachable (HeapOptions::fresh_arena_unless_rooted).
//   - Commits: a committer thread commits every PHEAP_COMMIT_MS (default
//     1000; 0 leaves only the final commit), measuring each cut's pause.
//     exit() and return from main commit a final epoch (atexit), and so
//     does SIGTERM when the program left it at its default action (the
//     handler wakes the committer, which commits and re-raises the signal).
//     So does _exit, which skips atexit handlers (dash ends that way),
//     except in a child of fork or vfork.
//   - fork: before it, every stored page is made resident (the child keeps
//     the memory but not the userfaultfd registration) and the allocator's
//     locks are taken. The child keeps allocating on its copy of the region
//     but never commits: its writes never reach the parent's image, and
//     pheap_default() is NULL there.
//   - pthread_create: a thread created from pheap code is one of pheap's
//     own (fault service, committers, ZeroMQ): it allocates from glibc.
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "base/config.h"
#include "base/log.h"
#include "base/os.h"
#include "base/thread.h"
#include "heap/commit_loop.h"
#include "heap/default_heap.h"
#include "heap/persistent_heap.h"
#include "heap/preload_stats.h"
#include "pager/fault_around.h"
#include "preload/libc_syms.h"
#include "preload/preload.h"

namespace pheap::preload {

constinit thread_local int t_bypass __attribute__((tls_model("initial-exec"))) = 0;

void WarnRegionFull(size_t n) {
  // A block larger than the whole region never fit: glibc serves it (or
  // fails it with ENOMEM) and the warning stays for a heap that fills up.
  if (n >= ProcessHeapSize()) return;
  static std::atomic<bool> warned{false};
  if (warned.exchange(true)) return;
  Bypass b;
  PHEAP_LOG_WARN("preload: the heap is full ({} bytes asked); glibc serves this and later blocks that do not fit, "
                 "and they are not persistent: run with a larger PHEAP_SIZE",
                 n);
}

namespace {

void LibcFaultsAround(bool on);

constexpr size_t kMaxPauseSamples = 1 << 16;
constexpr uint64_t kStagingBytes = uint64_t{8} << 20;  // staging_max and staging_keep
constexpr uint64_t kCommitMs = 1000;                   // the default period of commits
// How long the start waits for k - W + 1 of the heap's peers: those that
// are up answer within a few round trips, and a program should not stall
// for long on peers that are not, only to run without persistence.
constexpr uint64_t kReplicaOpenTimeoutMs = 1000;

PersistentHeap* g_heap = nullptr;
PreloadStats* g_stats = nullptr;  // inside the region
uint64_t g_commit_ms = kCommitMs;
bool g_child = false;             // this process is a fork child: never commit
bool g_copy_cuts = false;         // periodic commits copy the cut (PHEAP_PRECOPY=1)
pid_t g_owner = 0;                // the process that opened the heap (not a vfork child)
std::atomic<bool> g_term_handler{false};  // ours is SIGTERM's handler
struct sigaction g_term_view {};          // SIGTERM as the program set it meanwhile: SIG_DFL
constinit thread_local bool t_exiting __attribute__((tls_model("initial-exec"))) = false;  // in AtExit
// Commits every g_commit_ms (0: only the final commit), and the final one on
// SIGTERM. Never freed, as g_heap.
CommitLoop* g_committer = nullptr;

std::mutex g_commit_mu;           // one commit and stats update at a time
bool g_final_done = false;
uint64_t g_pauses[kMaxPauseSamples];  // ring of measured pauses, ns
uint64_t g_npauses = 0;
uint64_t g_max_pause = 0;

// p-th percentile (0..100) of the samples, by nth_element on a copy.
uint64_t Percentile(double p) {
  static uint64_t scratch[kMaxPauseSamples];
  const size_t n = std::min<uint64_t>(g_npauses, kMaxPauseSamples);
  if (n == 0) return 0;
  std::copy(g_pauses, g_pauses + n, scratch);
  size_t k = std::min(n - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(n)));
  std::nth_element(scratch, scratch + k, scratch + n);
  return scratch[k];
}

// REQUIRES: g_commit_mu held.
void WriteStats() {
  if (g_stats == nullptr) return;
  PagerStats ps = g_heap->pager_stats();
  g_stats->pid = static_cast<uint32_t>(getpid());
  g_stats->commits = g_npauses;
  g_stats->commit_ms = g_commit_ms;
  g_stats->pause_p50_ns = Percentile(50);
  g_stats->pause_p99_ns = Percentile(99);
  g_stats->pause_max_ns = g_max_pause;
  g_stats->last_dirty_pages = ps.last_dirty_pages;
  g_stats->paused_threads = ps.paused_threads;
}

// One commit with its pause recorded. `final`: the last one of the process.
void CommitNow(bool final, const char* why) {
  std::lock_guard<std::mutex> l(g_commit_mu);
  if (g_final_done) return;
  WriteStats();
  // A commit writes the cut from the region into the store while the
  // program is held still, and syncs once it runs again, instead of
  // copying it to staging first: a program that wrote most of its heap
  // since the last commit would otherwise peak at twice it, and peak RSS is
  // what a program is measured by. The pause grows with the dirty set at
  // the disk's speed (cuts of 1 MiB and more bypass the page cache, see
  // PageStoreOptions::direct_write_bytes) rather than at memcpy's. Safe
  // here: the program's threads allocate from the heap, and reach the C
  // library's malloc only outside pauses (InLibc). A replicated heap cannot
  // be written in place and copies (Pager::CommitInPlace).
  auto r = g_copy_cuts && !final ? g_heap->Commit() : g_heap->CommitInPlace();
  // What pheap's own code allocated from the C library for the commit goes
  // back to the OS instead of staying in the program's RSS.
  Libc().malloc_trim(0);
  if (r.ok()) {
    const PagerStats st = g_heap->pager_stats();
    const uint64_t pause = st.last_pause_ns;
    PHEAP_LOG_DEBUG("preload: heap '{}': {} commit, epoch {}: {} dirty pages, pause {} us", g_heap->name(), why,
                    st.durable_epoch, st.last_dirty_pages, pause / 1000);
    g_pauses[g_npauses++ % kMaxPauseSamples] = pause;
    g_max_pause = std::max(g_max_pause, pause);
  } else {
    PHEAP_LOG_WARN("preload: heap '{}': {} commit failed: {}", g_heap->name(), why, r.status().ToString());
  }
  if (!final) return;
  g_final_done = true;
  PHEAP_LOG_INFO("preload: heap '{}': final commit ({}) at epoch {}; {} commits, pause p50 {} us, p99 {} us, "
                 "max {} us",
                 g_heap->name(), why, g_heap->durable_epoch(), g_npauses, Percentile(50) / 1000,
                 Percentile(99) / 1000, g_max_pause / 1000);
}

// SIGTERM's default action back, as the program left it.
void TermDefault() {
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  Libc().sigaction(SIGTERM, &sa, nullptr);
}

// The committer's tick (heap/commit_loop.h).
void PeriodicCommit() {
  LibcFaultsAround(false);
  CommitNow(false, "periodic");
  LibcFaultsAround(true);
}

// On the committer's thread after OnSigterm woke it: the final commit, then
// the default action the program left in place.
void CommitAndTerminate() {
  CommitNow(true, "SIGTERM");
  TermDefault();
  kill(getpid(), SIGTERM);
}

void OnSigterm(int) {
  const int saved = errno;
  if (getpid() != g_owner) {
    // A child of fork that the signal reached before ForkChild reset the
    // handler: it has no heap to commit and no committer to wake, so it
    // takes the default action the program left in place. SIGTERM is
    // blocked in its own handler, so the raise lands once this returns.
    TermDefault();
    raise(SIGTERM);
  } else {
    g_committer->WakeFromSignal();
  }
  errno = saved;
}

// In a process that persists, fault-around (pager/fault_around.h) is off
// for good in the library's own text and constants, and in the C library's
// while pheap code runs:
// opening the heap, each commit the committer takes, the final commit. That
// code reaches parts of libc the program may never use. (A fault the
// program takes in libc meanwhile maps its page alone too.) Never freed, as
// g_heap.
FaultAroundOff* g_fault_around = nullptr;
MappedRange g_own_ro[4], g_libc_ro[4];
int g_own_ro_count = 0, g_libc_ro_count = 0;

void LibcFaultsAround(bool on) {
  for (int i = 0; g_fault_around != nullptr && i < g_libc_ro_count; ++i) {
    Status st = on ? g_fault_around->Remove(g_libc_ro[i]) : g_fault_around->Add(g_libc_ro[i]);
    if (!st.ok()) PHEAP_LOG_DEBUG("preload: libc fault-around: {}", st.ToString());
  }
}

}  // namespace

bool SigtermAction(const struct sigaction* act, struct sigaction* old) {
  if (!g_term_handler.load(std::memory_order_acquire)) return false;
  const struct sigaction view = g_term_view;
  if (act != nullptr) {
    if ((act->sa_flags & SA_SIGINFO) == 0 && act->sa_handler == SIG_DFL) {
      g_term_view = *act;
    } else {  // the program's handler, or SIG_IGN, in place of ours
      if (ProgramSigaction(SIGTERM, act, nullptr) != 0) return false;
      g_term_handler.store(false, std::memory_order_release);
    }
  }
  if (old != nullptr) *old = view;
  return true;
}

void AtExit() {
  if (g_child || g_heap == nullptr || getpid() != g_owner) return;
  // A signal handler that calls _exit while this thread is inside its own
  // final commit must not wait for the lock it holds: the process then
  // ends as after a crash, at the last durable epoch. Another thread's
  // exit waits for the commit under way instead.
  if (t_exiting) return;
  if (ThisThreadHoldsCommitLocks()) {  // e.g. _exit from a handler that interrupted pheap_commit or a free
    PHEAP_LOG_WARN("preload: heap '{}': the process ends from inside a commit or heap call on this thread; "
                   "the heap stays at its last durable epoch {}",
                   g_heap->name(), g_heap->durable_epoch());
    return;
  }
  t_exiting = true;
  Bypass b;
  if (g_committer != nullptr) g_committer->Stop();  // joined once, whoever exits first
  LibcFaultsAround(false);
  CommitNow(true, "exit");
  LibcFaultsAround(true);
}

namespace {

void ForkPrepare() {
  if (g_heap == nullptr) return;
  if (!g_child) {
    Bypass b;
    g_heap->PopulateAll();
  }
  g_heap->allocator().ForkPrepare();
  // glibc's fork() takes every malloc arena lock after the prepare handlers
  // and drops them before the parent and child handlers.
  SafepointDeferBegin();
}

void ForkParent() {
  if (g_heap == nullptr) return;
  g_heap->allocator().ForkRelease();
  if (!g_child) g_heap->EndPopulate();
  SafepointDeferEnd();
}

void ForkChild() {
  if (g_heap == nullptr) return;
  SafepointForkChild();
  g_heap->allocator().ForkRelease();
  g_child = true;
  ForgetOwnFds();                                              // the child's copies are its own to close
  if (g_committer != nullptr) g_committer->ForgetAfterFork();  // not in this process
  SetDefaultHeap(nullptr);
  if (g_term_handler) TermDefault();
}

std::string Sanitized(std::string s) {
  for (char& c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-';
    if (!ok) c = '_';
  }
  return s.substr(0, 48);
}

std::string ProgramAndPid() {
  return Sanitized(program_invocation_short_name) + "-" + std::to_string(getpid());
}

// The library's own settings, read like the heap's keys (PHEAP_<KEY>, see
// the header comment); the heap's keys are PersistentHeap::ConfigKeys().
const std::vector<std::string>& PreloadKeys() {
  static const std::vector<std::string> kKeys = {"name", "precopy", "require", "children", "run_pid"};
  return kKeys;
}

// The library's settings as the environment holds them now.
Result<Config> PreloadConfig() { return Config::Parse(nullptr, PreloadKeys()); }

// The variables the library reads besides the heap's config keys.
const std::vector<std::string>& PreloadVariables() {
  static const std::vector<std::string> kVars = [] {
    std::vector<std::string> v;
    for (const auto& k : PreloadKeys()) v.push_back(EnvName(k));
    for (const char* other : {"PHEAP_LOG", "PHEAP_PRELOAD_LIB"}) v.emplace_back(other);
    return v;
  }();
  return kVars;
}

// Whether this process is the program started with the library (or one
// of its children with PHEAP_CHILDREN on); records it for the children.
Result<bool> ThisProcessPersists() {
  auto c = PreloadConfig();
  if (!c.ok()) return c.status();
  auto children = c->GetBool("children", false);
  if (!children.ok()) return children.status();
  const std::string run_pid = c->GetOr("run_pid", "");
  if (run_pid.empty()) {
    setenv(EnvName("run_pid").c_str(), std::to_string(getpid()).c_str(), 1);
    return true;
  }
  return *children || std::strtol(run_pid.c_str(), nullptr, 10) == getpid();
}

// What a failed open needs to say about the heap's peers.
struct PeersTried {
  std::vector<std::string> peers;  // empty: the heap has none
  uint64_t timeout_ms = 0;         // replica_open_timeout_ms
};

// The heap of this process, or an error; `tried` gets its peers.
Result<std::unique_ptr<PersistentHeap>> OpenHeap(PeersTried* tried) {
  for (const std::string& var : UnknownEnvironment(PersistentHeap::ConfigKeys(), PreloadVariables())) {
    std::string known;
    for (const auto& k : PersistentHeap::ConfigKeys()) known.append(" ").append(EnvName(k));
    for (const auto& v : PreloadVariables()) known.append(" ").append(v);
    PHEAP_LOG_WARN("preload: {} is not a pheap setting and is ignored; the settings are:{}", var, known);
  }
  // Memory: a program's peak RSS is what it is measured by. Commits write
  // from the region (CommitNow); where they must copy (a replicated heap),
  // keep no staging between commits beyond a few MiB, let epochs not yet
  // durable hold no more than that, and copy each cut once (a precopy holds
  // two copies of the dirty set at its peak). PHEAP_PRECOPY=1 trades that
  // memory for shorter pauses: periodic commits then copy, with a precopy,
  // and write after the program resumes. Unlike a program's heap, this one
  // commits every second by default.
  const ConfigDefaults defaults = {{"commit_ms", std::to_string(kCommitMs)},
                                   {"staging_max", std::to_string(kStagingBytes)},
                                   {"staging_keep", std::to_string(kStagingBytes)},
                                   {"replica_open_timeout_ms", std::to_string(kReplicaOpenTimeoutMs)}};
  auto options = PersistentHeap::OptionsFromConfig(nullptr, defaults);
  if (!options.ok()) return options.status();
  tried->peers = options->engine.replication.peers;
  tried->timeout_ms = options->engine.replica_open_timeout_ms;
  g_commit_ms = options->commit_ms;
  options->commit_ms = 0;    // the committer here measures each commit instead
  auto c = PreloadConfig();  // after ThisProcessPersists recorded run_pid
  if (!c.ok()) return c.status();
  auto precopy = c->GetBool("precopy", false);
  if (!precopy.ok()) return precopy.status();
  g_copy_cuts = *precopy;
  options->engine.pager.precopy = g_copy_cuts;
  // A program passes heap memory to read(2) and the like, which fail with
  // EFAULT under mprotect tracking: that mode only when asked for by name.
  options->engine.pager.auto_mprotect = false;
  const std::string named = c->GetOr("name", "");
  std::string name = named.empty() ? ProgramAndPid() : named;
  // A child persisting beside the program (PHEAP_CHILDREN) takes a name of
  // its own, derived from the program's.
  if (!named.empty() && std::strtol(c->GetOr("run_pid", "").c_str(), nullptr, 10) != getpid())
    name = Sanitized(name) + "-" + ProgramAndPid();
  // A rerun: the earlier run's blocks are reachable from no root (the
  // program cannot find them), so unless a program that knows pheap set a
  // root of its own, the heap starts a new generation instead of keeping
  // them allocated beside this run's.
  options->fresh_arena_unless_rooted = std::vector<std::string>{kPreloadStatsRoot};
  return PersistentHeap::Open(name, *options);
}

// Runs the allocator's calls into the engine as pheap code. They come under
// the allocator's lock from every path into it: the interposed functions,
// the C interface on pheap_default() and a thread's exit (a TSD destructor
// glibc calls directly), so the routing must be decided here, not at the
// entry points.
class HooksAsPheapCode final : public ArenaHooks {
 public:
  explicit HooksAsPheapCode(ArenaHooks* inner) : inner_(inner) {}
  Status Discard(void* addr, size_t len) override {
    Bypass b;
    return inner_->Discard(addr, len);
  }

 private:
  ArenaHooks* inner_;
};

// The stats record: found under its root, else made in the heap.
void AttachStats(PersistentHeap* h) {
  auto found = h->Root(kPreloadStatsRoot, kPreloadStatsType);
  auto* s = static_cast<PreloadStats*>(found.ok() ? *found : nullptr);
  if (s == nullptr) {
    s = static_cast<PreloadStats*>(h->allocator().Calloc(1, sizeof(PreloadStats)));
    if (s == nullptr) return;
    s->magic = kPreloadStatsMagic;
    s->version = 1;
    if (!h->SetRoot(kPreloadStatsRoot, s, kPreloadStatsType).ok()) return;
  }
  std::memset(s->program, 0, sizeof(s->program));
  std::strncpy(s->program, program_invocation_short_name, sizeof(s->program) - 1);
  g_stats = s;
}

// The library's text and constants leave the page tables: what the loader
// mapped with its neighbours, then what only opening the heap ran. Each
// page comes back alone when it runs again.
void DropOwnCode() {
  for (int i = 0; i < g_own_ro_count; ++i)
    madvise(reinterpret_cast<void*>(g_own_ro[i].start), g_own_ro[i].len, MADV_DONTNEED);
}

void TurnFaultAroundOff() {
  auto f = FaultAroundOff::Open();
  if (!f.ok()) {
    PHEAP_LOG_DEBUG("preload: fault-around stays on: {}", f.status().ToString());
    return;
  }
  g_fault_around = f->release();
  const int n = ReadOnlySegmentsOf(reinterpret_cast<const void*>(&TurnFaultAroundOff), g_own_ro, 4);
  for (int i = 0; i < n; ++i)
    if (g_fault_around->Add(g_own_ro[i]).ok()) g_own_ro[g_own_ro_count++] = g_own_ro[i];
  DropOwnCode();
  g_libc_ro_count = ReadOnlySegmentsOf(reinterpret_cast<const void*>(Libc().free), g_libc_ro, 4);
  LibcFaultsAround(false);
}

void InstallSigterm() {
  struct sigaction old {};
  if (Libc().sigaction(SIGTERM, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) return;
  g_term_view = old;
  struct sigaction sa {};
  sa.sa_handler = OnSigterm;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  g_term_handler = Libc().sigaction(SIGTERM, &sa, nullptr) == 0;
}

// What to check when the heap did not open because of `st`. Peers that
// did not answer (kTimeout) or a newer writer (kSuperseded, whose message
// says what to do) have nothing to do with the local setup.
std::string WhatToCheck(const Status& st, const PeersTried& tried) {
  if (tried.peers.empty() || (st.code() != Status::Code::kTimeout && st.code() != Status::Code::kSuperseded))
    return "Check PHEAP_DIR, PHEAP_NAME and PHEAP_SIZE, and that userfaultfd is allowed (sysctl "
           "vm.unprivileged_userfaultfd=1)";
  if (st.code() == Status::Code::kSuperseded) return "Another writer holds the heap on its peers";
  std::string peers;
  for (const auto& p : tried.peers) peers.append(peers.empty() ? "" : ", ").append(p);
  return "Start the heap's peers (" + peers +
         ") with `pheap peer --listen EP`, and check their endpoints (PHEAP_PEERS) and keys (PHEAP_KEYS) with "
         "`pheap peer status EP`; PHEAP_REPLICA_OPEN_TIMEOUT_MS (now " +
         std::to_string(tried.timeout_ms) + ") bounds this wait: raise it for distant peers";
}

__attribute__((constructor)) void PreloadInit() {
  Bypass b;
  (void)Libc();
  // pheap's threads start where they are needed, also inside a commit the
  // program calls (pheap_commit): each is exempt from the cut, so none may
  // allocate from the heap, whatever thread created it.
  PersistentHeap::OnInternalThread([] { t_bypass = 1; });
  auto persists = ThisProcessPersists();
  if (persists.ok() && !*persists) {
    PHEAP_LOG_DEBUG(
        "preload: {} was started by the program that persists (PHEAP_RUN_PID): it runs on glibc's "
        "malloc (PHEAP_CHILDREN=1 persists it too)",
        program_invocation_short_name);
    return;
  }
  TurnFaultAroundOff();  // only where the heap may open: its userfaultfd is a descriptor the program would see
  PeersTried tried;
  auto h = persists.ok() ? OpenHeap(&tried) : Result<std::unique_ptr<PersistentHeap>>(persists.status());
  if (!h.ok()) {
    auto c = PreloadConfig();
    auto require = c.ok() ? c->GetBool("require", false) : Result<bool>(c.status());
    bool fatal = !require.ok() || *require;
    std::string why = h.status().ToString();
    if (h.status().code() != Status::Code::kUnsupported)  // an Unsupported one says what to do itself
      why += ". " + WhatToCheck(h.status(), tried);
    dprintf(2, "pheap preload: %s: no persistent heap: %s; %s\n", program_invocation_short_name, why.c_str(),
            fatal ? "exiting (PHEAP_REQUIRE=1)" : "running on glibc's malloc instead (PHEAP_REQUIRE=1 exits)");
    if (fatal) _exit(70);
    delete g_fault_around;  // every range faults around again, and its descriptor closes
    g_fault_around = nullptr;
    return;
  }
  // Never closed or freed: pointers into the region stay valid until the
  // process ends, through every exit handler and destructor.
  g_heap = h->release();
  g_owner = getpid();
  // With the heap open the C library's allocator serves pheap's own code,
  // from a few threads that allocate little (and the program only once the
  // heap is full). One arena keeps that together, where the committer's
  // first allocation would open an arena of its own and leave its pages
  // resident.
  Libc().mallopt(M_ARENA_MAX, 1);
  g_heap->allocator().set_hooks(new HooksAsPheapCode(g_heap->allocator().hooks()));  // never freed, as g_heap
  AttachStats(g_heap);
  if (Status st = g_heap->ServeProcessMalloc(); !st.ok()) PHEAP_LOG_WARN("preload: {}", st.ToString());
  SetDefaultHeap(g_heap);
  pthread_atfork(ForkPrepare, ForkParent, ForkChild);
  atexit(AtExit);
  // The committer's thread is pheap's own from its first instruction: the
  // C library's pthread_create, not the one this library interposes.
  g_committer = new CommitLoop(g_commit_ms, PeriodicCommit, CommitAndTerminate);
  if (g_committer->Start(Libc().pthread_create)) InstallSigterm();
  PHEAP_LOG_INFO("preload: {} runs on heap '{}' at {}, committing every {} ms", program_invocation_short_name,
                 g_heap->name(), g_heap->base(), g_commit_ms);
  LibcFaultsAround(true);
  DropOwnCode();
  Libc().malloc_trim(0);  // what opening the store read and dropped
}

// A thread pheap code starts runs its routine with t_bypass set.
struct InternalStart {
  void* (*fn)(void*);
  void* arg;
};

void* InternalThread(void* p) {
  t_bypass = 1;
  InternalStart s = *static_cast<InternalStart*>(p);
  InLibc(&LibcAllocator::free, p);
  return s.fn(s.arg);
}

}  // namespace
}  // namespace pheap::preload

extern "C" int pthread_create(pthread_t* t, const pthread_attr_t* attr, void* (*fn)(void*), void* arg) {
  namespace pp = pheap::preload;
  // Not deferred (InLibc): pthread_create takes no malloc arena lock of its
  // own (its allocations come through this library), but it may wait for
  // the loader's TLS lock, which a thread paused inside dlopen can hold; a
  // pause would then wait for ever. pheap never starts a thread inside one.
  if (pp::t_bypass == 0) return pp::Libc().pthread_create(t, attr, fn, arg);
  auto* s = static_cast<pp::InternalStart*>(pp::InLibc(&pp::LibcAllocator::malloc, sizeof(pp::InternalStart)));
  if (s == nullptr) return EAGAIN;
  *s = {fn, arg};
  int r = pp::Libc().pthread_create(t, attr, pp::InternalThread, s);
  if (r != 0) pp::InLibc(&pp::LibcAllocator::free, s);
  return r;
}

// _exit and _Exit skip atexit handlers; a program that ends with them (dash
// does) still leaves its heap committed. glibc's exit() reaches its own
// _exit directly, not through here.
extern "C" void _exit(int status) {
  pheap::preload::AtExit();
  syscall(SYS_exit_group, status);
  __builtin_unreachable();
}

extern "C" void _Exit(int status) { _exit(status); }
