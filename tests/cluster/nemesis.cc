// The nemesis: a randomized fault tester in the manner of FoundationDB's
// simulation and Jepsen. Peers (test_peer) and writers (nemesis_writer) run
// as real processes; a schedule drawn from a seed kills, stops, restarts,
// wipes, fills the disks of, slows the disks of and cuts off peers and
// writers, moves a writer
// to a new directory and back (failback), while the writers commit. Two
// compound faults own the whole cluster for a few seconds: failback-down
// (every peer killed while a writer commits, that writer killed, the peers
// back, another writer takes over and commits, then the first writer's
// directory is opened again) and install-kill (the same start, then the
// writer reopens its directory, one epoch ahead of every replica, is killed
// while it installs that image on them, and its directory is lost). Every
// commit stamps the heap with (counter, tag); the driver logs each attempt
// and acknowledgement (the oracle) and checks every recovered image:
//   lost-ack     a recovered image older than an acknowledged commit
//   resurrected  a recovered or acknowledged image off the acknowledged
//                history (a fenced writer's commit back from the dead)
//   hang         a commit or open that did not return within its timeout
//   peer-crash   a peer that died by itself, or a sanitizer report
//   torn, phantom  an image no single commit wrote
// Exit status 1 on any violation; each prints the seed and the schedule,
// and --seed S replays the same schedule (process timing differs).
//
//   nemesis TEST_PEER NEMESIS_WRITER [--seed S] [--runs R] [--events N | --seconds S]
//           [--peers 3..5] [--writers 1..2] [--replicas K] [--quorum W]
//           [--faults kill,stop,restart,wipe,failback,diskfull,slowdisk,netcut,failback-down,
//                     install-kill]
//           [--total-seconds T]
//
// For hours (as root, for tmpfs and network namespaces), from the build
// directory:
//   tests/cluster/nemesis tests/replication/test_peer tests/cluster/nemesis_writer
//       --runs 0 --total-seconds 14400 --seconds 60 --peers 5 --writers 2 --replicas 3 --quorum 2
// kill -INT stops it after the current seed, with the summary.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/cluster/cluster_util.h"
#include "tests/support/test_util.h"

namespace pheaptest::cluster {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kHeap[] = "nemesis";
constexpr auto kCommitTimeout = 30s;  // a commit or an open must return within this
constexpr auto kQuiet = 5s;           // commits with every fault healed, at the end
constexpr int64_t kWipeWindowMs = 15000;  // after a peer restarts empty: no other fault

const char* const kKinds[] = {"kill",     "stop",     "restart", "wipe",          "failback",
                              "diskfull", "slowdisk", "netcut",  "failback-down", "install-kill"};

struct Options {
  std::string test_peer, writer;
  uint64_t seed = std::random_device{}();
  int runs = 1;  // 0: until total_seconds
  int events = 0;
  int seconds = 30;
  int total_seconds = 0;
  int peers = 3, writers = 1, replicas = 3, quorum = 2;
  int period_ms = 0;  // between a writer's commits; 0: drawn per writer from 20 ms to 1 s
  bool verbose = false;  // prints what happened in every run, not only a failed one
  bool private_mounts = false;  // in a mount namespace of its own: tmpfs disks can be mounted
  std::set<std::string> faults{std::begin(kKinds), std::end(kKinds)};
};

// ---- The watchdog ----

// What the driver is doing, for the watchdog: if a run outlives its
// budget, some call blocked; it says where and which seed, and ends the
// driver (the children die with it).
char g_step[512];

void Watchdog(int) {
  static const char kHead[] = "\nVIOLATION driver-stuck: the run outlived its time budget; last step: ";
  if (write(2, kHead, sizeof(kHead) - 1) < 0 || write(2, g_step, strnlen(g_step, sizeof(g_step))) < 0) _exit(1);
  if (write(2, "\n", 1) < 0) _exit(1);
  _exit(1);
}

// SIGINT or SIGTERM ends the driver after the seed it is running, with the
// summary a long run is started for.
volatile sig_atomic_t g_stop_requested = 0;

void RequestStop(int) { g_stop_requested = 1; }

// ---- The schedule ----

struct Event {
  int64_t at_ms;
  std::string kind;    // the fault kind it belongs to
  std::string action;  // what the driver does
  bool peer;           // target: peer or writer slot
  int target;
  int arg = 0;         // start-writer: 1 on a fresh directory; move-writer: 1 keeps the old one running
  bool inject = true;  // false: it heals an earlier event
};

std::string Describe(const Event& e) {
  return e.action + " " + (e.peer ? "peer" : "writer") + std::to_string(e.target) +
         (e.arg != 0 ? " (" + std::to_string(e.arg) + ")" : "");
}

// Draws the schedule from `seed` alone. Each fault is healed a few seconds
// later; at most peers - quorum + 1 peers are faulted at once (one more
// than the replicas can tolerate, so commits also meet a missing quorum).
// A peer restarts empty only with everything else healthy, and nothing else
// happens for kWipeWindowMs after it while it is reinstalled: a second lost
// disk before that loses data by design, which is no bug to report.
std::vector<Event> MakeSchedule(const Options& o, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1)); };
  std::vector<std::string> kinds(o.faults.begin(), o.faults.end());
  std::vector<Event> s;
  std::vector<int64_t> peer_free(o.peers, 0), writer_free(o.writers, 0);
  int64_t t = 1000;
  int injected = 0;
  while (o.events > 0 ? injected < o.events : t < o.seconds * 1000LL) {
    t += pick(300, 2000);
    const std::string kind = kinds[rng() % kinds.size()];
    if (kind == "failback-down" || kind == "install-kill") {
      // Compound: it waits until every earlier fault has healed, and owns
      // the whole cluster until it ends.
      t = std::max({t, *std::max_element(peer_free.begin(), peer_free.end()),
                    *std::max_element(writer_free.begin(), writer_free.end())});
      const int w = static_cast<int>(rng() % static_cast<uint64_t>(o.writers));
      bool first = true;
      auto at = [&](int64_t dt, const std::string& action, bool peer, int target, int arg = 0) {
        s.push_back({t + dt, kind, action, peer, target, arg, first});
        first = false;
      };
      // Every peer dies (SIGKILL: the writer's frames in flight die with
      // it, unlike a SIGSTOP's), the other writers are held down, and
      // writer w's next commit reaches its own disk only and fails.
      for (int j = 0; j < o.writers; ++j)
        if (j != w) at(0, "kill-writer", false, j);
      for (int i = 0; i < o.peers; ++i) at(0, "kill-peer", true, i);
      at(100, "kill-writer-after-fail", false, w);
      for (int i = 0; i < o.peers; ++i) at(200, "start-peer", true, i);
      int64_t end;
      if (kind == "failback-down") {
        // Another writer opens from the peers and commits the epoch
        // number w's failed commit took; then w's old directory is
        // opened again: it must take the peers' lineage, not its own.
        at(700, "move-writer", false, w);
        at(800, "await-ack-writer", false, w);
        at(900, "failback-writer", false, w);
        end = 1000;
      } else {
        // w reopens its own directory, one epoch ahead of every replica,
        // and installs it on them in the background; it dies part way (a
        // drawn time after its open returned: the installs take some
        // 100-200 ms here), its directory is lost, and the heap is
        // recovered from the peers alone: they must still hold every
        // acknowledged commit.
        at(700, "start-writer", false, w);
        at(710, "kill-writer-after-open", false, w, static_cast<int>(pick(0, 150)));
        at(800, "wipe-writer", false, w);
        end = 900;
      }
      for (int j = 0; j < o.writers; ++j)
        if (j != w) at(end, "start-writer", false, j);
      t += end + 1000;
      std::fill(peer_free.begin(), peer_free.end(), t);
      std::fill(writer_free.begin(), writer_free.end(), t);
      ++injected;
      continue;
    }
    if (kind == "slowdisk") {
      // Each sync of one process takes this much longer: a writer's local
      // store lags what its replicas acknowledge, a peer answers late.
      // Slowness loses nothing, so it keeps no process busy and overlaps
      // any fault: a compound one, or a wiped peer's reinstall.
      const bool peer = rng() % 2 == 0;
      const int who = static_cast<int>(rng() % static_cast<uint64_t>(peer ? o.peers : o.writers));
      const std::string what = peer ? "-peer" : "-writer";
      s.push_back({t, kind, "slow" + what, peer, who, static_cast<int>(pick(20, 300)), true});
      s.push_back({t + pick(1000, 8000), kind, "fast" + what, peer, who, 0, false});
      ++injected;
      continue;
    }
    const bool on_peer = kind == "netcut" ? true : kind == "failback" ? false : rng() % 3 != 0;
    auto busy = [&](const std::vector<int64_t>& v) {
      return static_cast<int>(std::count_if(v.begin(), v.end(), [&](int64_t f) { return f > t; }));
    };
    std::vector<int64_t>& v = on_peer ? peer_free : writer_free;
    std::vector<int> idle;
    for (int i = 0; i < static_cast<int>(v.size()); ++i)
      if (v[i] <= t) idle.push_back(i);
    if (idle.empty() || (on_peer && busy(peer_free) > o.peers - o.quorum)) continue;
    const bool wipes_peer = on_peer && kind == "wipe";
    if (wipes_peer && (busy(peer_free) > 0 || busy(writer_free) > 0)) continue;
    const int who = idle[rng() % idle.size()];
    const int64_t heal = t + pick(1000, 6000);
    auto add = [&](int64_t at, const std::string& action, int arg = 0) {
      s.push_back({at, kind, action, on_peer, who, arg, at == t});
    };
    const std::string what = on_peer ? "-peer" : "-writer";
    int64_t free_at = heal;
    if (kind == "kill") {
      add(t, "kill" + what);
      add(heal, "start" + what, on_peer ? 0 : static_cast<int>(rng() % 2));
    } else if (kind == "stop") {
      add(t, "stop" + what);
      add(heal, "cont" + what);
    } else if (kind == "restart") {
      add(t, "restart" + what);
      free_at = t + 1000;
    } else if (kind == "wipe") {
      add(t, "wipe" + what);
      free_at = t + (on_peer ? kWipeWindowMs : 1000);
    } else if (kind == "failback" && busy(peer_free) == 0 && rng() % 2 == 0) {
      // The move while too many peers are stopped for a quorum: the
      // writer's last commit reaches its own disk only, the next writer
      // opens from the peers once they are back, and then the old
      // directory is opened again.
      const int stalled = o.peers - o.quorum + 1;
      std::vector<int> order(o.peers);
      for (int i = 0; i < o.peers; ++i) order[i] = i;
      std::shuffle(order.begin(), order.end(), rng);
      for (int i = 0; i < stalled; ++i) {
        s.push_back({t, kind, "stop-peer", true, order[i], 0, false});
        s.push_back({t + 3500, kind, "cont-peer", true, order[i], 0, false});
        peer_free[order[i]] = t + 3700;
      }
      add(t + 1500, "move-writer", 0);
      add(t + 3500 + pick(300, 5000), "failback-writer");
      s[s.size() - 2].inject = true;
      free_at = s.back().at_ms;
    } else if (kind == "failback") {
      add(t, "move-writer", static_cast<int>(rng() % 2));
      add(heal + pick(0, 4000), "failback-writer");
      free_at = s.back().at_ms;
    } else if (kind == "diskfull") {
      add(t, "fill" + what);
      add(heal, "drain" + what);
    } else {
      add(t, "cut-peer");
      add(heal, "heal-peer");
    }
    v[who] = free_at + 200;
    if (wipes_peer) {
      t = free_at;
      std::fill(peer_free.begin(), peer_free.end(), free_at);
    }
    ++injected;
  }
  std::stable_sort(s.begin(), s.end(), [](const Event& a, const Event& b) { return a.at_ms < b.at_ms; });
  return s;
}

// ---- The oracle ----

struct Mark {
  uint64_t counter = 0, tag = 0;  // (0, 0): the empty heap
  bool operator==(const Mark&) const = default;
  std::string str() const { return "(" + std::to_string(counter) + ", " + std::to_string(tag) + ")"; }
};

// What the writers said, and the history the acknowledgements must form.
class Oracle {
 public:
  // Writer `tag` opened image `base` (its attempts follow base.counter).
  void Opened(uint64_t tag, Mark base) { inc_[tag] = {base, base.counter}; }
  void Attempted(uint64_t tag, uint64_t counter) { inc_[tag].last = std::max(inc_[tag].last, counter); }

  // True if image `img` descends from (or is) `x`: a writer's image holds
  // its own earlier attempts and, before them, the image it opened.
  bool Contains(Mark img, Mark x) const {
    for (int hops = 0; hops < 100000; ++hops) {
      if (img == x) return true;
      auto it = inc_.find(img.tag);
      if (img.tag == 0 || it == inc_.end()) return false;
      if (x.tag == img.tag && x.counter <= img.counter && x.counter > it->second.base.counter) return true;
      img = it->second.base;
    }
    return false;
  }
  // True if some attempt wrote `img` (the empty heap counts).
  bool Written(Mark img) const {
    if (img.tag == 0) return img.counter == 0;
    auto it = inc_.find(img.tag);
    return it != inc_.end() && img.counter > it->second.base.counter && img.counter <= it->second.last;
  }
  // The acknowledged history's latest commit: every acknowledgement so far
  // is in its history (else Ack reported a fork).
  const std::optional<Mark>& head() const { return head_; }

  // An acknowledgement: "" if it extends (or lies in) the acknowledged
  // history, else what is wrong.
  std::string Ack(Mark m) {
    ++acks_;
    if (!head_ || Contains(m, *head_)) {
      head_ = m;
      return "";
    }
    if (Contains(*head_, m)) return "";  // an older commit whose line came late
    return "acknowledged " + m.str() + " does not contain the acknowledged " + head_->str() +
           ", nor the other way round: the acknowledged history forked";
  }
  uint64_t acks() const { return acks_; }

 private:
  struct Incarnation {
    Mark base;
    uint64_t last;  // its highest attempted counter
  };
  std::map<uint64_t, Incarnation> inc_;
  std::optional<Mark> head_;
  uint64_t acks_ = 0;
};

// ---- The run ----

struct Totals {
  int seeds = 0;
  std::map<std::string, int> events;
  uint64_t acks = 0, fails = 0, recoveries = 0;
  std::vector<std::string> violations;
};

// One writer process (an incarnation, named by its tag).
struct Proc {
  pid_t pid = -1;
  int fd = -1;
  uint64_t tag = 0;
  int slot = -1;  // -1: the final checker
  std::string dir, err_path, buf;
  bool check = false, stopped = false, opened = false, ended = false;
  std::optional<Mark> head_at_start;  // the acknowledged history when it began to open
  Clock::time_point since;            // when the open or the pending commit began
  int64_t pending = -1;               // the attempt awaiting its answer
  int acks = 0, fails = 0;            // its commits' answers so far
  bool forked = false;                // reported a forked history (once is enough)
};

struct Slot {
  std::string mount, dir;
  std::string slow_flag;              // its writers' syncs are slow while this file exists
  std::vector<std::string> old_dirs;  // earlier directories, kept for failback
  Proc* proc = nullptr;
  bool stopped = false, filled = false, held = false;  // held: a fault keeps it down
  Clock::time_point restart_at{};
};

struct PeerState {
  std::unique_ptr<Peer> peer;
  std::unique_ptr<NetNs> ns;
  std::string mount;
  std::string slow_flag;  // its syncs are slow while this file exists
  bool down = false, stopped = false, cut = false, filled = false;
};

class Run {
 public:
  Run(const Options& o, uint64_t seed, Totals* totals) : o_(o), seed_(seed), totals_(totals) {}
  ~Run() { Stop(); }

  // Runs the schedule; false on a violation.
  bool Go();
  // The checker alone, on two writers that exist only as pipes: writer A
  // announces an attempt right after its open, and writer B opens the
  // image that attempt wrote. Whatever order the lines are read in, B's
  // image is one an attempt wrote. False if the checker says otherwise.
  bool CheckerOrdersLinesAcrossWriters();

 private:
  bool Setup();
  void Stop();
  void Apply(const Event& e);
  void Violation(const std::string& kind, const std::string& what);
  void Note(const std::string& what);
  double Now() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  Proc* StartWriter(int slot, bool check, const std::string& dir);
  void KillProc(Proc* p);
  void Pump(std::chrono::milliseconds wait);  // reads the writers, checks the timeouts and the peers
  void OnLine(Proc* p, const std::string& line);
  void CheckPeers();
  void Reap();
  // Pumps until done() or `bound` passes; the schedule's later events move
  // by the time it waited, so the spacing drawn from the seed holds.
  void Await(const std::function<bool()>& done, std::chrono::milliseconds bound);
  std::string Config(const std::string& dir) const;
  static bool Fill(const std::string& mount);
  static void Drain(const std::string& mount);
  // Each sync of the process watching `flag` takes `ms` longer; 0: not any more.
  static void SetSlow(const std::string& flag, int ms);

  const Options& o_;
  const uint64_t seed_;
  Totals* totals_;
  std::vector<Event> schedule_;
  pheaptest::TempDir tmp_{"pheap-nemesis"};
  std::string keys_;
  bool tmpfs_ = false, netns_ = false;
  std::vector<PeerState> peers_;
  std::vector<Slot> slots_;
  std::vector<std::unique_ptr<Proc>> procs_;
  Oracle oracle_;
  uint64_t next_tag_ = 1;
  int dirs_ = 0;
  Clock::time_point start_;
  Clock::duration shift_{};  // how far Await moved the schedule
  bool failed_ = false;
  std::string log_;  // what happened, for a failure's report
};

void Run::Note(const std::string& what) {
  char t[32];
  std::snprintf(t, sizeof(t), "%7.3fs ", Now());
  log_ += t + what + "\n";
  std::snprintf(g_step, sizeof(g_step), "seed %" PRIu64 " at %s%s", seed_, t, what.c_str());
  if (o_.verbose) std::printf("%s%s\n", t, what.c_str());
}

bool Run::CheckerOrdersLinesAcrossWriters() {
  const char* lines[] = {"open 0 0 0\nattempt 1\n", "open 1 1 1\n"};  // A's tag is 1
  start_ = Clock::now();
  for (const char* text : lines) {
    int fds[2];
    if (pipe(fds) != 0) return false;
    auto p = std::make_unique<Proc>();
    p->tag = next_tag_++;
    p->fd = fds[0];
    p->since = Clock::now();
    if (write(fds[1], text, std::strlen(text)) != static_cast<ssize_t>(std::strlen(text))) return false;
    close(fds[1]);
    procs_.push_back(std::move(p));
  }
  Pump(std::chrono::milliseconds(100));  // reads both pipes in one round
  for (auto& p : procs_) close(p->fd);
  return !failed_;
}

void Run::Violation(const std::string& kind, const std::string& what) {
  failed_ = true;
  const std::string v = "seed " + std::to_string(seed_) + ": " + kind + ": " + what;
  std::printf("VIOLATION at %.3fs %s\n", Now(), v.c_str());
  std::fflush(stdout);
  Note("VIOLATION " + kind + ": " + what);
  totals_->violations.push_back(v);
}

std::string Run::Config(const std::string& dir) const {
  std::string peers;
  for (const auto& p : peers_) peers += (peers.empty() ? "" : ",") + p.peer->endpoint();
  return "dir=" + dir + ";size=64M;code_check=off;peers=" + peers + ";replicas=" + std::to_string(o_.replicas) +
         ";quorum=" + std::to_string(o_.quorum) + (keys_.empty() ? "" : ";keys=" + keys_);
}

bool Run::Setup() {
  namespace fs = std::filesystem;
  fs::create_directories(tmp_.path() + "/logs");
  // Each peer's and writer's directory sits on a small tmpfs of its own,
  // so a ballast file fills exactly that disk.
  auto mount_at = [&](const std::string& dir) {
    fs::create_directories(dir);
    return o_.faults.count("diskfull") && o_.private_mounts && mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=96m") == 0;
  };
  if (o_.faults.count("netcut")) {
    keys_ = tmp_.path() + "/keys";
    std::string why = MakeSharedKeys(keys_);
    netns_ = why.empty();
    if (!netns_) keys_.clear();
  }
  tmpfs_ = o_.faults.count("diskfull") > 0;
  for (int i = 0; i < o_.peers; ++i) {
    PeerState ps;
    ps.mount = tmp_.path() + "/peer" + std::to_string(i);
    tmpfs_ = mount_at(ps.mount) && tmpfs_;
    if (netns_) {
      ps.ns = std::make_unique<NetNs>();
      std::string why = ps.ns->Create();
      if (!why.empty()) {
        std::printf("netcut: no network namespace: %s\n", why.c_str());
        netns_ = false;
        keys_.clear();
        for (auto& q : peers_) q.ns.reset();
        ps.ns.reset();
      }
    }
    peers_.push_back(std::move(ps));
  }
  if (!netns_ && o_.faults.count("netcut")) std::printf("netcut: a cut is a SIGSTOP of the peer here\n");
  if (o_.faults.count("diskfull") && !tmpfs_) std::printf("diskfull: no tmpfs mounts here; the fault is skipped\n");
  for (int i = 0; i < o_.peers; ++i) {
    auto& ps = peers_[i];
    ps.peer = std::make_unique<Peer>(ps.mount + "/store", netns_ ? ps.ns.get() : nullptr, keys_);
    ps.peer->set_log(tmp_.path() + "/logs/peer" + std::to_string(i) + ".log");
    ps.slow_flag = tmp_.path() + "/slow-peer" + std::to_string(i);
    ps.peer->set_slow_sync_flag(ps.slow_flag);
    if (!ps.peer->Start()) {
      std::printf("peer %d did not start\n", i);
      return false;
    }
  }
  for (int j = 0; j < o_.writers; ++j) {
    Slot s;
    s.mount = tmp_.path() + "/writer" + std::to_string(j);
    tmpfs_ = mount_at(s.mount) && tmpfs_;
    s.dir = s.mount + "/d" + std::to_string(dirs_++);
    s.slow_flag = tmp_.path() + "/slow-writer" + std::to_string(j);
    slots_.push_back(std::move(s));
  }
  return true;
}

Proc* Run::StartWriter(int slot, bool check, const std::string& dir) {
  Pump(0ms);  // the acknowledgements already written count as before this open
  auto p = std::make_unique<Proc>();
  p->tag = next_tag_++;
  p->slot = slot;
  p->check = check;
  p->dir = dir;
  p->err_path = tmp_.path() + "/logs/writer-tag" + std::to_string(p->tag) + ".log";
  p->head_at_start = oracle_.head();
  p->since = Clock::now();
  // Slow writers too: a failback soon after a takeover then meets a new
  // writer that has committed only an epoch or two.
  static constexpr int kPeriods[] = {20, 50, 50, 200, 1000};
  const int period = o_.period_ms > 0 ? o_.period_ms : kPeriods[pheaptest::Mix(seed_ * 1000003 + p->tag) % 5];
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return nullptr;
  // The driver's end only: Pump nests (OnLine pumps), so an outer Pump may
  // come to a pipe whose lines an inner one already read; a blocking read
  // would then wait for that writer's next line, forever if it is stopped.
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  const int err = open(p->err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  std::vector<std::string> argv = {o_.writer,   check ? "check" : "run", kHeap,
                                   Config(dir), std::to_string(p->tag),  std::to_string(period)};
  if (slot >= 0) argv.push_back(slots_[slot].slow_flag);
  p->pid = Spawn(argv, -1, out[1], err);
  close(out[1]);
  close(err);
  p->fd = out[0];
  Note("tag " + std::to_string(p->tag) + (check ? " checks" : " writes every " + std::to_string(period) + " ms") + " on " +
       std::filesystem::path(dir).filename().string() + (slot >= 0 ? " (writer" + std::to_string(slot) + ")" : ""));
  procs_.push_back(std::move(p));
  if (slot >= 0) slots_[slot].proc = procs_.back().get();
  return procs_.back().get();
}

void Run::KillProc(Proc* p) {
  if (p == nullptr || p->pid <= 0) return;
  kill(p->pid, SIGKILL);
  waitpid(p->pid, nullptr, 0);
  p->pid = -1;
  p->ended = true;
  if (p->slot >= 0 && slots_[p->slot].proc == p) slots_[p->slot].proc = nullptr;
}

void Run::OnLine(Proc* p, const std::string& line) {
  std::istringstream in(line);
  std::string word;
  in >> word;
  const std::string who = "tag " + std::to_string(p->tag);
  if (word == "open" || word == "torn") {
    Mark m;
    int64_t epoch = -1;
    in >> m.counter >> m.tag >> epoch;
    p->opened = true;
    ++totals_->recoveries;
    Note(who + " opened " + m.str() + " epoch " + std::to_string(epoch) + " on " +
         std::filesystem::path(p->dir).filename().string());
    // Its incarnation first: the Pump below may read this writer's own
    // next attempt, which must extend this base, not be overwritten by it.
    // (The checks below look at m, whose tag is another writer's.)
    oracle_.Opened(p->tag, m);
    Pump(0ms);  // every attempt written before this image was read
    if (word == "torn") Violation("torn", who + ": " + line);
    else if (!oracle_.Written(m)) Violation("phantom", who + " recovered " + m.str() + ", which no attempt wrote");
    else if (p->head_at_start && !oracle_.Contains(m, *p->head_at_start)) {
      const Mark h = *p->head_at_start;
      Violation(m.counter < h.counter ? "lost-ack" : "resurrected",
                who + " recovered " + m.str() + " on " + std::filesystem::path(p->dir).filename().string() +
                    ", which lacks " + h.str() + " acknowledged before the open began");
    }
  } else if (word == "attempt") {
    in >> p->pending;
    p->since = Clock::now();
    oracle_.Attempted(p->tag, static_cast<uint64_t>(p->pending));
  } else if (word == "ack" || word == "fail") {
    uint64_t c = 0;
    in >> c;
    p->pending = -1;
    if (word == "fail") {
      ++p->fails;
      ++totals_->fails;
      return;
    }
    ++p->acks;
    ++totals_->acks;
    if (std::string why = oracle_.Ack({c, p->tag}); !why.empty() && !p->forked) {
      p->forked = true;  // its later acknowledgements extend the same fork
      Violation("resurrected", who + ": " + why);
    }
  } else if (word == "error") {
    Note(who + " " + line);
  }
}

void Run::Pump(std::chrono::milliseconds wait) {
  std::vector<pollfd> fds;
  std::vector<Proc*> who;
  for (auto& p : procs_) {
    if (p->fd < 0) continue;
    fds.push_back({p->fd, POLLIN, 0});
    who.push_back(p.get());
  }
  if (poll(fds.data(), fds.size(), static_cast<int>(wait.count())) > 0) {
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Proc* p = who[i];
      char buf[4096];
      if (p->fd != fds[i].fd) continue;  // an inner Pump closed it
      const ssize_t n = read(p->fd, buf, sizeof(buf));
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;  // an inner Pump read it
      if (n <= 0) {
        close(p->fd);
        p->fd = -1;
        continue;
      }
      p->buf.append(buf, static_cast<size_t>(n));
    }
  }
  // Every writer's lines read so far, before any one's open is judged: an
  // attempt another writer announced before this open read its image may
  // already sit in that writer's buffer, read by an outer Pump.
  for (size_t i = 0; i < procs_.size(); ++i) {
    Proc* p = procs_[i].get();
    for (size_t nl; (nl = p->buf.find('\n')) != std::string::npos;) {
      const std::string line = p->buf.substr(0, nl);
      p->buf.erase(0, nl + 1);
      OnLine(p, line);
    }
  }
  const auto now = Clock::now();
  for (auto& p : procs_) {
    if (p->pid <= 0 || p->fd < 0 || p->stopped || now - p->since < kCommitTimeout) continue;
    if (!p->opened || p->pending >= 0) {
      Violation("hang", "tag " + std::to_string(p->tag) +
                            (p->opened ? " commit of " + std::to_string(p->pending) : std::string(" open")) +
                            " did not return within 30 s (its log: " + p->err_path + ")");
      if (p->slot >= 0 && slots_[p->slot].proc == p.get()) slots_[p->slot].restart_at = now + 1s;
      KillProc(p.get());
    }
  }
}

void Run::CheckPeers() {
  for (size_t i = 0; i < peers_.size(); ++i) {
    int status = 0;
    if (!peers_[i].peer->Exited(&status)) continue;
    Violation("peer-crash", "peer" + std::to_string(i) + " ended by itself (" +
                                (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                                     : "exit " + std::to_string(WEXITSTATUS(status))) +
                                "; its log: " + tmp_.path() + "/logs/peer" + std::to_string(i) + ".log)");
    if (!peers_[i].down && !peers_[i].peer->Start()) Note("peer" + std::to_string(i) + " did not restart");
  }
}

// Writers that ended by themselves (a failed open, a hang) start again on
// their directory, unless a fault keeps them down.
void Run::Reap() {
  const auto now = Clock::now();
  for (auto& p : procs_) {
    int status = 0;
    if (p->pid > 0 && p->fd < 0 && waitpid(p->pid, &status, WNOHANG) == p->pid) {
      p->pid = -1;
      p->ended = true;
      if (!p->check) Note("tag " + std::to_string(p->tag) + " ended by itself (status " + std::to_string(status) + ")");
      // 127: Spawn's exec failed (or the loader did): no writer runs at
      // all, and a run would check nothing.
      if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        Violation("setup", "tag " + std::to_string(p->tag) + " did not run " + o_.writer + " (its log: " + p->err_path + ")");
      if (p->slot >= 0 && slots_[p->slot].proc == p.get()) {
        slots_[p->slot].proc = nullptr;
        slots_[p->slot].restart_at = now + 1s;
      }
    }
  }
  for (int j = 0; j < static_cast<int>(slots_.size()); ++j) {
    Slot& s = slots_[j];
    if (s.proc == nullptr && !s.held && s.restart_at != Clock::time_point{} && now >= s.restart_at) {
      s.restart_at = {};
      StartWriter(j, false, s.dir);
    }
  }
}

void Run::Await(const std::function<bool()>& done, std::chrono::milliseconds bound) {
  const auto begin = Clock::now();
  while (!done() && Clock::now() - begin < bound) {
    Pump(50ms);
    CheckPeers();
    Reap();
  }
  const auto waited = Clock::now() - begin;
  shift_ += waited;
  // The watchdog's budget grows by as much.
  const unsigned left = alarm(0);
  alarm(left + static_cast<unsigned>(std::chrono::ceil<std::chrono::seconds>(waited).count()));
}

bool Run::Fill(const std::string& mount) {
  const int fd = open((mount + "/ballast").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  static const std::string block(1 << 20, 'x');
  while (write(fd, block.data(), block.size()) > 0) {
  }
  while (write(fd, block.data(), 4096) > 0) {
  }
  close(fd);
  return true;
}

void Run::Drain(const std::string& mount) { unlink((mount + "/ballast").c_str()); }

void Run::SetSlow(const std::string& flag, int ms) {
  if (ms <= 0) {
    unlink(flag.c_str());
    return;
  }
  // Written aside and renamed: a sync never reads half a number.
  const std::string part = flag + ".part";
  std::ofstream(part) << ms;
  std::rename(part.c_str(), flag.c_str());
}

void Run::Apply(const Event& e) {
  if (e.inject) ++totals_->events[e.kind];
  Note(Describe(e));
  if (e.peer) {
    PeerState& ps = peers_[e.target];
    Peer& p = *ps.peer;
    const std::string& a = e.action;
    if (a == "kill-peer") {
      p.Kill();
      ps.down = true;
    } else if (a == "start-peer") {
      ps.down = false;
      if (!p.running() && !p.Start()) Note("peer did not start");
    } else if ((a == "stop-peer" || (a == "cut-peer" && !netns_)) && p.running()) {
      p.Pause();
      ps.stopped = true;
    } else if (a == "cont-peer" || (a == "heal-peer" && !netns_)) {
      p.Resume();
      ps.stopped = false;
    } else if (a == "restart-peer" || a == "wipe-peer") {
      p.Kill();
      if (a == "wipe-peer") p.Wipe();
      if (!p.Start()) Note("peer did not start");
    } else if (a == "cut-peer") {
      ps.ns->Cut();
      ps.cut = true;
    } else if (a == "heal-peer") {
      ps.ns->Heal();
      ps.cut = false;
    } else if (a == "fill-peer" && tmpfs_) {
      ps.filled = Fill(ps.mount);
    } else if (a == "drain-peer") {
      Drain(ps.mount);
      ps.filled = false;
    } else if (a == "slow-peer") {
      SetSlow(ps.slow_flag, e.arg);
    } else if (a == "fast-peer") {
      SetSlow(ps.slow_flag, 0);
    }
    return;
  }
  Slot& s = slots_[e.target];
  const std::string& a = e.action;
  if (a == "kill-writer") {
    KillProc(s.proc);
    s.held = true;
  } else if (a == "kill-writer-after-fail") {
    // Its next commit fails (the peers are down), or 10 s pass; then it
    // dies and stays down.
    Proc* p = s.proc;
    if (p != nullptr) {
      const int fails = p->fails;
      Await([&] { return p->pid <= 0 || p->fails > fails; }, 10s);
      Note("tag " + std::to_string(p->tag) + (p->fails > fails ? " failed a commit" : " failed no commit"));
    }
    KillProc(s.proc);
    s.held = true;
  } else if (a == "kill-writer-after-open") {
    // Its open returns (or 10 s pass), arg ms more; then it dies and stays
    // down.
    Proc* p = s.proc;
    if (p != nullptr) {
      Await([&] { return p->pid <= 0 || p->opened; }, 10s);
      Await([] { return false; }, std::chrono::milliseconds(e.arg));
    }
    KillProc(s.proc);
    s.held = true;
  } else if (a == "await-ack-writer") {
    // Until the slot's writer has a commit acknowledged, or 20 s pass.
    Proc* p = s.proc;
    if (p != nullptr) {
      Await([&] { return p->pid <= 0 || p->acks > 0; }, 20s);
      Note("tag " + std::to_string(p->tag) + " has " + std::to_string(p->acks) + " acknowledged commits");
    }
  } else if (a == "start-writer") {
    s.held = false;
    if (e.arg == 1) {  // on a new directory: the heap comes from the peers
      s.old_dirs.push_back(s.dir);
      s.dir = s.mount + "/d" + std::to_string(dirs_++);
    }
    if (s.proc == nullptr) StartWriter(e.target, false, s.dir);
  } else if (a == "stop-writer" && s.proc != nullptr && s.proc->pid > 0) {
    kill(s.proc->pid, SIGSTOP);
    s.proc->stopped = s.stopped = true;
  } else if (a == "cont-writer") {
    for (auto& p : procs_) {
      if (p->slot != e.target || !p->stopped || p->pid <= 0) continue;
      kill(p->pid, SIGCONT);
      p->stopped = false;
      p->since = Clock::now();  // the timeout counts the time it runs
    }
    s.stopped = false;
  } else if (a == "restart-writer" || a == "wipe-writer") {
    KillProc(s.proc);
    if (a == "wipe-writer") {
      std::error_code ec;
      std::filesystem::remove_all(s.dir, ec);
    }
    s.held = false;
    StartWriter(e.target, false, s.dir);
  } else if (a == "move-writer") {
    // The writer moves to a new directory (its machine is replaced); the
    // old one stays, and with arg 1 so does its process: both alive, the
    // old one must be fenced.
    if (e.arg == 0) KillProc(s.proc);
    s.proc = nullptr;
    s.held = false;
    s.old_dirs.push_back(s.dir);
    s.dir = s.mount + "/d" + std::to_string(dirs_++);
    StartWriter(e.target, false, s.dir);
  } else if (a == "failback-writer") {
    // Back to the previous directory: every process of this writer stops,
    // and the old directory's image is opened again.
    for (auto& p : procs_)
      if (p->slot == e.target) KillProc(p.get());
    if (!s.old_dirs.empty()) {
      std::swap(s.dir, s.old_dirs.back());
    }
    s.held = false;
    StartWriter(e.target, false, s.dir);
  } else if (a == "fill-writer" && tmpfs_) {
    s.filled = Fill(s.mount);
  } else if (a == "drain-writer") {
    Drain(s.mount);
    s.filled = false;
  } else if (a == "slow-writer") {
    SetSlow(s.slow_flag, e.arg);
  } else if (a == "fast-writer") {
    SetSlow(s.slow_flag, 0);
  }
}

bool Run::Go() {
  schedule_ = MakeSchedule(o_, seed_);
  start_ = Clock::now();
  const int64_t length_ms = schedule_.empty() ? 0 : schedule_.back().at_ms;
  alarm(static_cast<unsigned>(length_ms / 1000 + 300));  // the schedule, the end's waits, and room
  Note("setup");
  std::printf("seed %" PRIu64 ": %zu scheduled events, %d peers, %d writers, replicas %d, quorum %d\n", seed_,
              schedule_.size(), o_.peers, o_.writers, o_.replicas, o_.quorum);
  std::fflush(stdout);
  if (!Setup()) {
    Violation("setup", "the cluster did not start");
    return false;
  }
  start_ = Clock::now();
  for (int j = 0; j < o_.writers; ++j) StartWriter(j, false, slots_[j].dir);
  for (const Event& e : schedule_) {
    for (;;) {
      const auto due = start_ + shift_ + std::chrono::milliseconds(e.at_ms);
      const auto now = Clock::now();
      if (now >= due) break;
      Pump(std::min(std::chrono::duration_cast<std::chrono::milliseconds>(due - now), std::chrono::milliseconds(100)));
      CheckPeers();
      Reap();
    }
    Apply(e);
  }
  // Heal everything, let the writers commit, and every pending commit must
  // come back.
  Note("healing everything");
  for (size_t i = 0; i < peers_.size(); ++i) {
    auto& ps = peers_[i];
    if (ps.stopped) ps.peer->Resume();
    if (ps.cut) ps.ns->Heal();
    if (ps.filled) Drain(ps.mount);
    SetSlow(ps.slow_flag, 0);
    if (!ps.peer->running() && !ps.peer->Start()) Note("peer did not start");
    ps.down = ps.stopped = ps.cut = ps.filled = false;
  }
  for (int j = 0; j < static_cast<int>(slots_.size()); ++j) {
    Slot& s = slots_[j];
    if (s.filled) Drain(s.mount);
    SetSlow(s.slow_flag, 0);
    for (auto& p : procs_)
      if (p->stopped && p->pid > 0) {
        kill(p->pid, SIGCONT);
        p->stopped = false;
        p->since = Clock::now();
      }
    s.held = s.filled = s.stopped = false;
    if (s.proc == nullptr) StartWriter(j, false, s.dir);
  }
  for (const auto until = Clock::now() + kQuiet; Clock::now() < until;) {
    Pump(100ms);
    CheckPeers();
    Reap();
  }
  for (const auto until = Clock::now() + kCommitTimeout + 1s; Clock::now() < until;) {
    bool pending = false;
    for (auto& p : procs_) pending = pending || (p->pid > 0 && (p->pending >= 0 || !p->opened));
    if (!pending) break;
    Pump(100ms);
  }
  // The final recovery: an empty directory, from the peers alone.
  for (auto& p : procs_) {
    Pump(0ms);
    KillProc(p.get());
  }
  Proc* c = StartWriter(-1, true, tmp_.path() + "/recovered");
  for (const auto until = Clock::now() + kCommitTimeout + 1s; Clock::now() < until && !c->opened && c->fd >= 0;)
    Pump(100ms);
  if (!c->opened) Violation("recovery", "the final recovery on an empty directory did not open (its log: " + c->err_path + ")");
  CheckPeers();
  // Sanitizer reports in the peers' logs.
  for (size_t i = 0; i < peers_.size(); ++i) {
    std::ifstream in(tmp_.path() + "/logs/peer" + std::to_string(i) + ".log");
    std::stringstream text;
    text << in.rdbuf();
    if (text.str().find("Sanitizer") != std::string::npos || text.str().find("runtime error") != std::string::npos)
      Violation("peer-crash", "peer" + std::to_string(i) + " reported a sanitizer error (its log: " + tmp_.path() +
                                  "/logs/peer" + std::to_string(i) + ".log)");
  }
  totals_->seeds++;
  alarm(0);
  if (failed_) {
    std::printf("---- seed %" PRIu64 " FAILED; the schedule:\n", seed_);
    for (const Event& e : schedule_)
      std::printf("  %7.3fs %s  [%s]\n", static_cast<double>(e.at_ms) / 1000, Describe(e).c_str(), e.kind.c_str());
    std::printf("---- what happened:\n%s---- logs and stores kept in %s-logs; replay: --seed %" PRIu64 "\n",
                log_.c_str(), tmp_.path().c_str(), seed_);
  } else {
    std::printf("seed %" PRIu64 ": ok, %" PRIu64 " acknowledged commits\n", seed_, oracle_.acks());
  }
  std::fflush(stdout);
  return !failed_;
}

void Run::Stop() {
  for (auto& p : procs_) {
    KillProc(p.get());
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
  }
  for (auto& ps : peers_) {
    if (ps.peer) ps.peer->Kill();
  }
  peers_.clear();  // the peers before their namespaces
  if (failed_) {   // the stores too, peers' and writers', while their disks are mounted: what was durable where
    std::error_code ec;
    std::filesystem::create_directories(tmp_.path() + "-logs/state", ec);
    for (const auto& entry : std::filesystem::directory_iterator(tmp_.path(), ec)) {
      if (entry.path().filename() == "logs") continue;
      std::filesystem::copy(entry.path(), tmp_.path() + "-logs/state/" + entry.path().filename().string(),
                            std::filesystem::copy_options::recursive, ec);
    }
  }
  for (const auto& s : slots_) umount2(s.mount.c_str(), MNT_DETACH);
  for (size_t i = 0; i < static_cast<size_t>(o_.peers); ++i)
    umount2((tmp_.path() + "/peer" + std::to_string(i)).c_str(), MNT_DETACH);
  if (failed_) {  // keep the logs: move them out of the directory the TempDir removes
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(tmp_.path() + "/logs", ec))
      std::filesystem::rename(entry.path(), tmp_.path() + "-logs/" + entry.path().filename().string(), ec);
  }
}

bool ParseArgs(int argc, char** argv, Options* o) {
  if (argc < 3) return false;
  o->test_peer = argv[1];
  o->writer = argv[2];
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--verbose") {
      o->verbose = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (a == "--seed") o->seed = std::strtoull(v.c_str(), nullptr, 0);
    else if (a == "--runs") o->runs = std::atoi(v.c_str());
    else if (a == "--events") o->events = std::atoi(v.c_str());
    else if (a == "--seconds") o->seconds = std::atoi(v.c_str());
    else if (a == "--total-seconds") o->total_seconds = std::atoi(v.c_str());
    else if (a == "--peers") o->peers = std::atoi(v.c_str());
    else if (a == "--writers") o->writers = std::atoi(v.c_str());
    else if (a == "--replicas") o->replicas = std::atoi(v.c_str());
    else if (a == "--quorum") o->quorum = std::atoi(v.c_str());
    else if (a == "--period-ms") o->period_ms = std::atoi(v.c_str());
    else if (a == "--faults") {
      o->faults.clear();
      std::stringstream in(v);
      for (std::string f; std::getline(in, f, ',');) {
        if (std::find(std::begin(kKinds), std::end(kKinds), f) == std::end(kKinds)) {
          std::fprintf(stderr, "unknown fault kind '%s'\n", f.c_str());
          return false;
        }
        o->faults.insert(f);
      }
    } else {
      return false;
    }
  }
  return o->peers >= 1 && o->writers >= 1 && o->writers <= 2 && o->quorum >= 1 && o->quorum <= o->replicas &&
         o->replicas <= o->peers && !o->faults.empty() && (o->runs > 0 || o->total_seconds > 0);
}

int Main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) {
    std::fprintf(
        stderr,
        "usage: %s TEST_PEER NEMESIS_WRITER [--seed S] [--runs R] [--events N | --seconds S] "
        "[--total-seconds T] [--verbose] [--peers N] [--writers 1|2] [--replicas K] [--quorum W] [--period-ms MS] "
        "[--faults kill,stop,restart,wipe,failback,diskfull,slowdisk,netcut,failback-down,install-kill]\n",
        argv[0]);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
#if defined(__SANITIZE_THREAD__)
  // As in cluster_fixture.h: ThreadSanitizer's thread blocks the writer's
  // commit safepoint signal, so every commit would hang.
  std::printf("skipped under ThreadSanitizer: its background thread blocks the writer's commit safepoint signal\n");
  return 77;
#endif
  programs() = Programs{o.test_peer, o.writer};
  // A mount namespace of our own: the tmpfs disks vanish with the driver,
  // however it ends. Children die with it (PR_SET_PDEATHSIG in Spawn).
  o.private_mounts = unshare(CLONE_NEWNS) == 0 && mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
  if (!o.private_mounts)
    std::printf("no mount namespace (%s): the diskfull fault is skipped\n", std::strerror(errno));
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, Watchdog);
  signal(SIGINT, RequestStop);
  signal(SIGTERM, RequestStop);
  Totals totals;
  if (Totals t; !Run(o, 0, &t).CheckerOrdersLinesAcrossWriters()) {
    std::printf("the checker itself is wrong: see the VIOLATION above\n");
    return 1;
  }
  const auto start = Clock::now();
  for (int r = 0; (o.runs == 0 || r < o.runs) && !g_stop_requested; ++r) {
    if (o.total_seconds > 0 && Clock::now() - start > std::chrono::seconds(o.total_seconds)) break;
    Run run(o, o.seed + static_cast<uint64_t>(r), &totals);
    run.Go();
  }
  std::printf("==== nemesis summary: %d seeds (from %" PRIu64 "), faults:", totals.seeds, o.seed);
  for (const auto& [kind, n] : totals.events) std::printf(" %s %d", kind.c_str(), n);
  std::printf("; %" PRIu64 " commits acknowledged, %" PRIu64 " failed; %" PRIu64 " recoveries checked; %zu violations\n",
              totals.acks, totals.fails, totals.recoveries, totals.violations.size());
  for (const auto& v : totals.violations) std::printf("  %s\n", v.c_str());
  return totals.violations.empty() ? 0 : 1;
}

}  // namespace
}  // namespace pheaptest::cluster

int main(int argc, char** argv) { return pheaptest::cluster::Main(argc, argv); }
