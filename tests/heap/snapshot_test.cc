// Past epochs and snapshots through the C++ interface and the pheap
// command: a read-only open at a retained epoch shows the heap exactly as
// it was, one past retention is refused naming the oldest kept, and a
// snapshot taken while a writer commits in another process is exactly the
// epoch it names, with the writer committing throughout.
#include <pheap/heap.hpp>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "tests/support/test_util.h"

namespace {

using pheaptest::TempDir;
std::string g_pheap;  // the pheap command

constexpr size_t kPage = 4096;
constexpr size_t kStampPages = 16;

// Pages whose first word is the epoch that last wrote them.
struct Stamps {
  alignas(4096) uint64_t page[kStampPages][kPage / sizeof(uint64_t)];
};

// Writes `epoch` into every stamp page.
void Stamp(Stamps* s, uint64_t epoch) {
  for (auto& p : s->page) p[0] = epoch;
}

// Whether every stamp page holds `epoch`; else what one holds.
::testing::AssertionResult StampedWith(const Stamps* s, uint64_t epoch) {
  for (size_t i = 0; i < kStampPages; ++i)
    if (s->page[i][0] != epoch) return ::testing::AssertionFailure() << "page " << i << " holds " << s->page[i][0];
  return ::testing::AssertionSuccess();
}

// What a writer in another process shares with the test.
struct Shared {
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> epoch{0};  // its last durable epoch
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};  // errno of a failed commit
};

// Forks a writer of heap `name`: `bulk` bytes of a pattern, then stamp
// pages stamped with each next epoch and committed, until told to stop or
// `epochs` commits are done. Returns its pid.
pid_t StartWriter(const TempDir& dir, const std::string& name, const std::string& extra, size_t bulk, uint64_t epochs,
                  Shared* shared) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  try {
    pheap::Heap heap(name, dir.config(extra));
    auto* big = static_cast<uint64_t*>(heap.malloc(bulk));
    for (size_t i = 0; i < bulk / sizeof(uint64_t); ++i) big[i] = i * 0x9e3779b97f4a7c15ull;
    heap.set_root("bulk", big);
    auto* s = heap.make<Stamps>();
    heap.set_root("stamps", s);
    while (!shared->stop.load() && shared->commits.load() < epochs) {
      Stamp(s, static_cast<uint64_t>(heap.durable_epoch()) + 1);
      shared->epoch = static_cast<uint64_t>(heap.commit());
      ++shared->commits;
    }
    std::_Exit(0);  // no final commit: the last epoch is the last stamped one
  } catch (const pheap::error& e) {
    shared->failed = e.code() != 0 ? e.code() : -1;
    std::_Exit(1);
  }
}

Shared* MapShared() {
  void* p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : new (p) Shared();
}

bool Exited(pid_t pid) {
  int status = 0;
  return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(Snapshot, ReadOnlyOpensAtRetainedEpochsAndRefusesOlderOnes) {
  TempDir dir;
  Shared* shared = MapShared();
  ASSERT_NE(shared, nullptr);
  // Small log files, so the stamps of each epoch seal one and compaction
  // has much to drop.
  const pid_t pid = StartWriter(dir, "past", "retain=5;log_file_size=128K", 64 << 10, 30, shared);
  ASSERT_TRUE(Exited(pid)) << "writer failed: errno " << shared->failed.load();
  const auto last = static_cast<int64_t>(shared->epoch.load());
  ASSERT_GE(last, 30);
  std::string out;
  ASSERT_EQ(pheaptest::RunCommand(g_pheap + " compact past --dir " + dir.path() + " --retain 5 2>&1", &out), 0) << out;
  for (int64_t e = last - 4; e <= last; ++e) {
    pheap::Heap r = pheap::Heap::open_read_only("past", dir.config(), e);
    EXPECT_EQ(r.durable_epoch(), e);
    const auto* s = r.root<Stamps>("stamps");
    ASSERT_NE(s, nullptr) << "epoch " << e;
    EXPECT_TRUE(StampedWith(s, static_cast<uint64_t>(e))) << "epoch " << e;
    if (e == last - 4) {
      EXPECT_EQ(r.refresh(), last) << "a refresh moves it to the newest epoch";
      EXPECT_TRUE(StampedWith(s, static_cast<uint64_t>(last)));
    }
  }
  try {
    pheap::Heap r = pheap::Heap::open_read_only("past", dir.config(), last - 5);
    ADD_FAILURE() << "epoch " << last - 5 << " was opened though only 5 are retained: " << out;
  } catch (const pheap::error& e) {
    EXPECT_EQ(e.code(), ENOENT);
    const std::string want = "epoch " + std::to_string(last - 5) + " is not retained: the oldest retained epoch is " +
                             std::to_string(last - 4);
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
  munmap(shared, sizeof(Shared));
}

TEST(Snapshot, TakenWhileAWriterCommitsIsExactlyItsEpoch) {
  TempDir dir;
  Shared* shared = MapShared();
  ASSERT_NE(shared, nullptr);
  constexpr size_t kBulk = size_t{48} << 20;  // long enough to copy that the writer commits meanwhile
  const pid_t pid = StartWriter(dir, "live", "", kBulk, UINT64_MAX, shared);
  while (shared->commits.load() < 3 && shared->failed.load() == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(shared->failed.load(), 0);

  // The command, in a process of its own: the writer keeps committing.
  const uint64_t before = shared->commits.load();
  std::string out;
  ASSERT_EQ(pheaptest::RunCommand(g_pheap + " snapshot live copy --dir " + dir.path() + " 2>&1", &out), 0) << out;
  const uint64_t during = shared->commits.load() - before;
  const size_t at = out.find("as of epoch ");
  ASSERT_NE(at, std::string::npos) << out;
  const int64_t epoch = std::stoll(out.substr(at + 12));
  shared->stop = true;
  ASSERT_TRUE(Exited(pid)) << "writer failed: errno " << shared->failed.load();
  EXPECT_GE(during, 3u) << "the writer's commits stalled during the snapshot";

  // Through the C++ interface, from a reader's epoch (the writer stopped:
  // without retain= its compactions soon drop the epoch a slow reader shows).
  int64_t reader_epoch = 0;
  {
    pheap::Heap r = pheap::Heap::open_read_only("live", dir.config());
    reader_epoch = r.durable_epoch();
    EXPECT_EQ(r.snapshot("copy2"), reader_epoch);
    try {
      r.snapshot("copy2");
      ADD_FAILURE() << "a snapshot overwrote a heap";
    } catch (const pheap::error& e) {
      EXPECT_EQ(e.code(), EEXIST) << e.what();
    }
  }
  for (const auto& [name, e] : {std::pair<const char*, int64_t>{"copy", epoch}, {"copy2", reader_epoch}}) {
    pheap::Heap c(name, dir.config("create=0"));
    EXPECT_EQ(c.durable_epoch(), e) << name;
    const auto* s = c.root<Stamps>("stamps");
    ASSERT_NE(s, nullptr) << name;
    EXPECT_TRUE(StampedWith(s, static_cast<uint64_t>(e))) << name;
    const auto* big = c.root<uint64_t>("bulk");
    ASSERT_NE(big, nullptr) << name;
    for (size_t i = 0; i < kBulk / sizeof(uint64_t); i += 509)
      ASSERT_EQ(big[i], i * 0x9e3779b97f4a7c15ull) << name << " word " << i;
    EXPECT_EQ(pheap_check_allocator(c.c_handle()), 0) << pheap_last_error();
    // An independent heap: it commits on from its epoch.
    c.make<uint64_t>(1);
    EXPECT_EQ(c.commit(), e + 1) << name;
  }
  munmap(shared, sizeof(Shared));
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PHEAP_COMMAND\n", argv[0]);
    return 2;
  }
  g_pheap = argv[1];
  return RUN_ALL_TESTS();
}
