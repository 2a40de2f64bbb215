// Read-only opens beside a running writer, in real processes: one writer
// commits transfers between many slots (their sum stays zero) while its
// compactor rewrites and removes log files, and readers, here and from the
// replicas, check the sum on their image after every refresh. Also: the
// errors of a read-only heap, and that a write into it faults.
//
// The test binary is its own worker: `read_only_test writer DIR SECONDS
// CONFIG` and `read_only_test reader SECONDS CONFIG` run one process each.
#include <pheap/heap.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "store/page_store.h"
#include "tests/support/local_peers.h"
#include "tests/support/test_util.h"

namespace {

using pheaptest::TempDir;
using Clock = std::chrono::steady_clock;

std::string g_pheap_command;  // the pheap program, for peers

// The writer's data: slots on many pages, moved between by transfers, so a
// mixed image (pages of two epochs) almost surely breaks the sum.
constexpr int kPages = 512;  // 2 MiB of slots
constexpr int kSlotsPerPage = 512;
struct Ledger {
  uint64_t seq;  // transfers rounds committed
  int64_t slot[kPages][kSlotsPerPage];
};

// Sum of every slot; 0 in every consistent image.
int64_t Sum(const Ledger& l) {
  int64_t s = 0;
  for (const auto& page : l.slot)
    for (int64_t v : page) s += v;
  return s;
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Writer: commits rounds of transfers for `seconds` after its first
// commit, which it announces by making DIR/half; then writes the steady
// clock's time of each commit (ns, the same clock in every process) to
// DIR/commits.
int RunWriter(const std::string& dir, double seconds, const std::string& config) {
  pheap::Heap heap("ledger", config);
  auto* l = heap.find_or_make<Ledger>("ledger");
  heap.commit();
  std::ofstream(dir + "/half") << "1";
  std::mt19937_64 rng(42);
  std::vector<int64_t> at;
  const auto start = Clock::now();
  while (Ms(Clock::now() - start) < seconds * 1000) {
    for (int t = 0; t < 64; ++t) {
      const auto a = rng() % (kPages * kSlotsPerPage), b = rng() % (kPages * kSlotsPerPage);
      const int64_t amount = static_cast<int64_t>(rng() % 1000);
      l->slot[a / kSlotsPerPage][a % kSlotsPerPage] -= amount;
      l->slot[b / kSlotsPerPage][b % kSlotsPerPage] += amount;
    }
    ++l->seq;
    heap.commit();
    at.push_back(Clock::now().time_since_epoch().count());
  }
  std::ofstream out(dir + "/commits");
  for (int64_t t : at) out << t << "\n";
  return Sum(*l) == 0 ? 0 : 3;
}

// Reader: opens read-only, checks the sum, then refreshes and checks again
// for `seconds`. Prints "refreshes epochs_seen mean_refresh_ms max_ms".
int RunReader(double seconds, const std::string& config) {
  pheap::Heap heap = pheap::Heap::open_read_only("ledger", config);
  auto* l = heap.root<Ledger>("ledger");
  if (l == nullptr) return 4;
  int64_t epoch = heap.durable_epoch();
  uint64_t seq = l->seq;
  if (Sum(*l) != 0) {
    std::fprintf(stderr, "epoch %lld: the sum is %lld\n", static_cast<long long>(epoch),
                 static_cast<long long>(Sum(*l)));
    return 1;
  }
  int refreshes = 0, epochs = 1, failed = 0;
  double total_ms = 0, max_ms = 0;
  const auto start = Clock::now();
  while (Ms(Clock::now() - start) < seconds * 1000) {
    const auto t0 = Clock::now();
    int64_t e = 0;
    try {
      e = heap.refresh();
    } catch (const pheap::error& err) {
      // A refresh may fail (replicas that answer too slowly on a loaded
      // machine); the heap stays at its epoch, which is checked again.
      std::fprintf(stderr, "refresh failed: %s\n", err.what());
      if (++failed > 5) return 7;
      e = heap.durable_epoch();
    }
    const double took = Ms(Clock::now() - t0);
    total_ms += took;
    max_ms = std::max(max_ms, took);
    ++refreshes;
    if (e < epoch || l->seq < seq) {
      std::fprintf(stderr, "went back: epoch %lld -> %lld\n", static_cast<long long>(epoch), static_cast<long long>(e));
      return 2;
    }
    if (e != epoch) ++epochs;
    epoch = e;
    seq = l->seq;
    if (heap.root<Ledger>("ledger") != l) return 5;  // the same address in every epoch
    if (const int64_t s = Sum(*l); s != 0) {
      std::fprintf(stderr, "epoch %lld: the sum is %lld\n", static_cast<long long>(e), static_cast<long long>(s));
      return 1;
    }
    // Twenty refreshes a second: a reader that refreshed without a pause
    // would measure how the CPUs are shared, not whether the writer waits.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::printf("%d %d %.3f %.3f\n", refreshes, epochs, total_ms / refreshes, max_ms);
  return 0;
}

// A child running this binary with `args`; its stdout goes to `out`.
pid_t Spawn(const std::vector<std::string>& args, const std::string& out = "/dev/null") {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(out.c_str(), "w", stdout);
    (void)f;
    std::vector<char*> argv;
    static std::string self = "/proc/self/exe";
    argv.push_back(self.data());
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  return pid;
}

int Wait(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool WaitForFile(const std::string& path, double seconds) {
  const auto start = Clock::now();
  while (!std::filesystem::exists(path))
    if (Ms(Clock::now() - start) > seconds * 1000) return false;
    else std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return true;
}

// The writer beside readers (one per config), each checked. The readers
// are stopped (SIGSTOP, wherever they are, perhaps holding the store's
// files mid-load) and let go again in turns of 400 ms, so the writer's
// commit rate with and without them is measured in alternating windows
// under the same load of the machine. Returns the writer's commits per
// second while they ran and while they were stopped.
std::pair<double, double> WriterWithReaders(const TempDir& dir, const std::string& writer_config,
                                            const std::vector<std::string>& reader_configs, double seconds) {
  pid_t w = Spawn({"writer", dir.path(), std::to_string(seconds), writer_config});
  EXPECT_TRUE(WaitForFile(dir.path() + "/half", 120)) << "the writer did not make its first commit";
  std::vector<pid_t> readers;
  std::vector<std::string> outs;
  for (size_t i = 0; i < reader_configs.size(); ++i) {
    outs.push_back(dir.path() + "/reader" + std::to_string(i));
    readers.push_back(Spawn({"reader", std::to_string(seconds), reader_configs[i]}, outs.back()));
  }
  struct Window {
    int64_t from, to;
    bool running;
  };
  std::vector<Window> windows;
  const auto start = Clock::now();
  for (bool running = true; Ms(Clock::now() - start) < seconds * 1000 - 500; running = !running) {
    for (pid_t r : readers) kill(r, running ? SIGCONT : SIGSTOP);
    const int64_t from = Clock::now().time_since_epoch().count();
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    windows.push_back({from, Clock::now().time_since_epoch().count(), running});
  }
  for (pid_t r : readers) kill(r, SIGCONT);
  for (size_t i = 0; i < readers.size(); ++i) {
    EXPECT_EQ(Wait(readers[i]), 0) << "reader " << i << " saw an inconsistent image or failed";
    int refreshes = 0, epochs = 0;
    double mean = 0, max = 0;
    std::istringstream in(Slurp(outs[i]));
    in >> refreshes >> epochs >> mean >> max;
    EXPECT_GT(refreshes, 5) << "reader " << i;
    EXPECT_GT(epochs, 2) << "reader " << i << " never saw the writer move on";
    std::printf("reader %zu: %d refreshes, %d epochs seen, refresh mean %.2f ms, max %.2f ms\n", i, refreshes, epochs,
                mean, max);
  }
  EXPECT_EQ(Wait(w), 0) << "the writer failed";
  std::vector<int64_t> commits;
  std::istringstream in(Slurp(dir.path() + "/commits"));
  for (int64_t t = 0; in >> t;) commits.push_back(t);
  double n[2] = {0, 0}, ns[2] = {0, 0};
  for (const Window& win : windows) {
    n[win.running] += static_cast<double>(
        std::count_if(commits.begin(), commits.end(), [&](int64_t t) { return t >= win.from && t < win.to; }));
    ns[win.running] += static_cast<double>(win.to - win.from);
  }
  const double stopped = n[0] * 1e9 / std::max(ns[0], 1.0), running = n[1] * 1e9 / std::max(ns[1], 1.0);
  std::printf("writer: %.0f commits/s beside %zu readers, %.0f commits/s while they were stopped\n", running,
              reader_configs.size(), stopped);
  return {running, stopped};
}

// The compactor of the writer ran: the store holds a compaction's file.
bool Compacted(const std::string& dir) {
  pheap::PageStoreOptions o;
  o.read_only = true;
  o.create_if_missing = false;
  auto s = pheap::PageStore::Open(dir, "ledger", o);
  return s.ok() && (*s)->stats().last_compaction.file != 0;
}

// Small log files and eager compaction: files are rewritten and removed
// under the readers all along.
constexpr const char* kChurn = "log_file_size=1M;compact_ratio=1.25";

TEST(ReadOnly, LocalReadersSeeConsistentEpochsWhileCompactionRuns) {
  TempDir dir;
  const std::string heap_dir = dir.path() + "/heaps";
  const std::string writer = "dir=" + heap_dir + ";size=64M;" + kChurn;
  std::vector<std::string> readers(4, "dir=" + heap_dir);
  auto [beside, alone] = WriterWithReaders(dir, writer, readers, 8);
  EXPECT_TRUE(Compacted(heap_dir)) << "the compactor never ran: the test did not test it";
  // Readers take no lock and make the writer wait for nothing; what they
  // share with it is the CPUs and the disk, which on a small loaded
  // machine is noise of tens of percent. A writer that waited for its
  // readers would fall far below. Sanitized readers cost several times
  // the CPU, which then decides the rate: measured there, not checked.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  EXPECT_GT(beside, alone * 0.5) << "the writer slowed down beside readers";
#else
  (void)beside;
  (void)alone;
#endif
}

TEST(ReadOnly, ReadersFromReplicasSeeConsistentEpochs) {
  TempDir dir;
  pheaptest::LocalPeers peers(g_pheap_command, dir.path(), 3);
  const std::string writer = "dir=" + dir.path() + "/writer;size=64M;peers=" + peers.endpoints() + ";" + kChurn;
  // No store under these dirs: the image comes from the replicas.
  std::vector<std::string> readers = {"dir=" + dir.path() + "/elsewhere0;peers=" + peers.endpoints(),
                                      "dir=" + dir.path() + "/elsewhere1;peers=" + peers.endpoints()};
  WriterWithReaders(dir, writer, readers, 8);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/elsewhere0/ledger")) << "a reader made a store";
}

// Log files of this process's store that were unlinked while it held them.
int DeletedLogFilesHeld() {
  int n = 0;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(fd.path(), ec).string();
    if (target.find(".pheap (deleted)") != std::string::npos) ++n;
  }
  return n;
}

// What a reader relies on while it loads: a store opened read-only keeps
// reading the image it opened at after the writer's compactor removed the
// files that image lies in.
TEST(ReadOnly, ReadOnlyStoreReadsFilesCompactedAway) {
  TempDir dir;
  const std::string heap_dir = dir.path() + "/heaps";
  const std::string config = "dir=" + heap_dir + ";size=64M;" + kChurn;
  pid_t w = Spawn({"writer", dir.path(), "2", config});
  ASSERT_TRUE(WaitForFile(dir.path() + "/half", 120));
  pheap::PageStoreOptions o;
  o.read_only = true;
  o.create_if_missing = false;
  auto store = pheap::PageStore::Open(heap_dir, "ledger", o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  const pheap::ImageInfo im = (*store)->image();
  std::vector<uint8_t> first(im.hwm * pheap::kPageSize), again(im.hwm * pheap::kPageSize);
  auto read_all = [&](std::vector<uint8_t>* out) {
    for (pheap::Pgno p = 0; p < im.hwm; p += pheap::PageSource::kMaxReadRun) {
      const auto n = static_cast<uint32_t>(std::min<uint64_t>(pheap::PageSource::kMaxReadRun, im.hwm - p));
      pheap::Status s = (*store)->ReadRun(p, n, out->data() + p * pheap::kPageSize, nullptr);
      if (!s.ok()) return s;
    }
    return pheap::Status::Ok();
  };
  ASSERT_TRUE(read_all(&first).ok());
  EXPECT_EQ(Wait(w), 0);
  ASSERT_TRUE(Compacted(heap_dir));
  EXPECT_GT(DeletedLogFilesHeld(), 0) << "no file of the image was compacted away: the test did not test it";
  pheap::Status s = read_all(&again);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(first, again);
}

TEST(ReadOnly, MissingHeapFailsClearly) {
  TempDir dir;
  pheap::handle* h = pheap_open_read_only("absent", dir.config().c_str());
  ASSERT_EQ(h, nullptr);
  EXPECT_EQ(errno, ENOENT);
  const std::string why = pheap_last_error();
  EXPECT_NE(why.find("'absent'"), std::string::npos) << why;
  EXPECT_NE(why.find("read-only"), std::string::npos) << why;
  try {
    pheap::Heap::open_read_only("absent", dir.config());
    ADD_FAILURE() << "opened a heap that does not exist";
  } catch (const pheap::error& e) {
    EXPECT_EQ(e.code(), ENOENT);
  }
  // A heap made but never committed has no durable epoch to show.
  {
    pheap::Heap w("uncommitted", dir.config());
    errno = 0;
    EXPECT_EQ(pheap_open_read_only("uncommitted", dir.config().c_str()), nullptr);
  }
}

struct Counter {
  uint64_t n;
};

TEST(ReadOnly, ChangesFailAndWritesFault) {
  TempDir dir;
  {
    pheap::Heap w("ro", dir.config());
    w.find_or_make<Counter>("counter")->n = 7;
    w.commit();
  }
  pheap::Heap r = pheap::Heap::open_read_only("ro", dir.config());
  Counter* c = r.root<Counter>("counter");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->n, 7u);
  EXPECT_EQ(r.roots().size(), 1u);
  const int64_t epoch = r.durable_epoch();  // the writer's close committed once more
  EXPECT_GE(epoch, 1);
  auto refuses = [](const char* what, auto fn) {
    try {
      fn();
      ADD_FAILURE() << what << " did not fail";
    } catch (const pheap::error& e) {
      EXPECT_EQ(e.code(), EROFS) << what;
      EXPECT_NE(std::string(e.what()).find("heap 'ro' is open read-only"), std::string::npos) << e.what();
    }
  };
  refuses("make", [&] { r.make<Counter>(); });
  refuses("set_root", [&] { r.set_root<Counter>("other", c); });
  refuses("commit", [&] { r.commit(); });
  refuses("destroy by name", [&] { r.destroy<Counter>("counter"); });
  pheap::handle* h = r.c_handle();
  EXPECT_EQ(pheap_malloc(h, 16), nullptr);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(pheap_calloc(h, 1, 16), nullptr);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(pheap_free_root(h, "counter"), -1);
  EXPECT_EQ(errno, EROFS);
  pheap_free(h, c);  // refused, not freed
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(pheap_of(c), h);
  EXPECT_EQ(r.refresh(), epoch);
  EXPECT_EQ(c->n, 7u);
  // A write into the region is a SIGSEGV.
  pid_t pid = fork();
  if (pid == 0) {
    std::signal(SIGSEGV, SIG_DFL);  // the kernel's action, not a sanitizer's report
    c->n = 8;
    _exit(0);
  }
  EXPECT_EQ(Wait(pid), 128 + SIGSEGV);
  // The same heap cannot be open twice in one process: its address is taken.
  EXPECT_EQ(pheap_open_read_only("ro", dir.config().c_str()), nullptr);
  EXPECT_EQ(errno, EBUSY);
}

// A reader beside a writer in this process's child: refresh brings the
// changed pages, and a page the writer discarded reads as zeros again.
TEST(ReadOnly, RefreshShowsChangesAndDiscards) {
  TempDir dir;
  int to_writer[2], from_writer[2];
  ASSERT_EQ(pipe(to_writer), 0);
  ASSERT_EQ(pipe(from_writer), 0);
  pid_t pid = fork();
  if (pid == 0) {
    char step = 0;
    pheap::Heap w("pages", dir.config());
    auto* big = static_cast<uint8_t*>(w.malloc(8 << 20));
    std::memset(big, 1, 8 << 20);
    w.set_root<uint8_t>("big", big);
    w.commit();
    if (write(from_writer[1], "1", 1) != 1 || read(to_writer[0], &step, 1) != 1) _exit(1);
    big[4096 * 3] = 2;  // one page changes
    w.commit();
    if (write(from_writer[1], "2", 1) != 1 || read(to_writer[0], &step, 1) != 1) _exit(1);
    w.free(big);  // its pages go back: they read as zeros
    w.set_root<uint8_t>("big", nullptr);
    w.commit();
    if (write(from_writer[1], "3", 1) != 1) _exit(1);
    _exit(0);
  }
  char step = 0;
  ASSERT_EQ(read(from_writer[0], &step, 1), 1);
  pheap::Heap r = pheap::Heap::open_read_only("pages", dir.config());
  uint8_t* big = r.root<uint8_t>("big");
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big[4096 * 3], 1);
  ASSERT_EQ(write(to_writer[1], "a", 1), 1);
  ASSERT_EQ(read(from_writer[0], &step, 1), 1);
  const int64_t e1 = r.durable_epoch();
  EXPECT_GT(r.refresh(), e1);
  EXPECT_EQ(big[4096 * 3], 2);
  EXPECT_EQ(big[4096 * 4], 1);
  ASSERT_EQ(write(to_writer[1], "b", 1), 1);
  ASSERT_EQ(read(from_writer[0], &step, 1), 1);
  EXPECT_EQ(Wait(pid), 0);
  r.refresh();
  EXPECT_EQ(r.root<uint8_t>("big"), nullptr);
  // A huge block's pages are given back on free: zeros from then on.
  EXPECT_EQ(big[4096 * 100], 0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 5 && std::strcmp(argv[1], "writer") == 0) return RunWriter(argv[2], std::atof(argv[3]), argv[4]);
  if (argc >= 4 && std::strcmp(argv[1], "reader") == 0) {
    try {
      return RunReader(std::atof(argv[2]), argv[3]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "reader: %s\n", e.what());
      return 6;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (argc >= 2) g_pheap_command = argv[1];
  return RUN_ALL_TESTS();
}
