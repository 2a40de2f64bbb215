// The pager in every tracking mode this kernel supports: faults serve the
// stored image, commits capture exactly the written pages (first writes
// below and above hwm included), read(2) into a non-resident page, discard,
// a failed epoch is persisted again unchanged, async commits complete in order,
// a commit past staging_max returns (failed epochs' error, or a timeout), the
// prefetch window grows, a corrupt page is never served.
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "pager/pager.h"
#include "tests/pager/fake_store.h"

namespace pheap::testing {
namespace {

constexpr uint64_t kSize = uint64_t{64} << 20;

class PagerTest : public ::testing::TestWithParam<TrackingMode> {
 protected:
  void SetUp() override {
    auto modes = SupportedModes();
    if (std::find(modes.begin(), modes.end(), GetParam()) == modes.end())
      GTEST_SKIP() << TrackingModeName(GetParam()) << " is not supported by this kernel";
  }
  std::unique_ptr<Pager> Open(PagerOptions o = {}) {
    o.mode = GetParam();
    auto p = Pager::Open(store_.image(), &store_, &store_, o);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return nullptr;
    EXPECT_EQ(p.value()->mode(), GetParam());
    return std::move(p.value());
  }
  uint8_t* Page(Pager& p, Pgno n) { return static_cast<uint8_t*>(p.base()) + n * kPageSize; }
  static bool AllBytes(const uint8_t* page, uint8_t v) {
    for (size_t i = 0; i < kPageSize; ++i)
      if (page[i] != v) return false;
    return true;
  }

  FakeStore store_{ImageInfo{1, 0, 1, kTestBase, kSize, 0}};
};

TEST_P(PagerTest, FaultsServeStoredContent) {
  for (Pgno p = 0; p < 100; ++p) store_.PutPage(p, static_cast<uint8_t>(p % 251 + 1));
  store_.PutPage(300, 0x77);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  for (Pgno p = 0; p < 100; ++p) ASSERT_TRUE(AllBytes(Page(*pager, p), static_cast<uint8_t>(p % 251 + 1))) << p;
  EXPECT_TRUE(AllBytes(Page(*pager, 300), 0x77));
  EXPECT_TRUE(AllBytes(Page(*pager, 150), 0));    // below hwm, never stored
  EXPECT_TRUE(AllBytes(Page(*pager, 9000), 0));   // above hwm
  EXPECT_EQ(store_.contract_error(), "");
}

// The pager starts its committer inside the first commit, on the caller's
// thread; the exempt hook must still run in the committer itself.
std::atomic<pid_t> g_hooked_tid{0};
TEST_P(PagerTest, ThreadsStartedInsideACommitRunTheExemptHook) {
  Pager::OnExempt([] { g_hooked_tid.store(static_cast<pid_t>(syscall(SYS_gettid))); });
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  g_hooked_tid.store(0);
  Page(*pager, 3)[0] = 1;
  auto e = pager->Commit();
  Pager::OnExempt(nullptr);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_NE(g_hooked_tid.load(), 0) << "no thread was exempted by the first commit";
  EXPECT_NE(g_hooked_tid.load(), static_cast<pid_t>(syscall(SYS_gettid)));
}

// A signal sent to the process while the program's one thread blocks it
// must wait for that thread: none of the pager's threads (fault threads,
// committer) may take it and run the program's handler.
std::atomic<int> g_usr1_count{0};
std::atomic<pid_t> g_usr1_tid{0};
void OnUsr1(int) {
  g_usr1_count.fetch_add(1);
  g_usr1_tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
}

TEST_P(PagerTest, SignalsToTheProcessNeverRunOnThePagersThreads) {
  store_.PutPage(0, 1);  // pages stored: the fault threads start
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  Page(*pager, 1)[0] = 1;
  ASSERT_TRUE(pager->Commit().ok());  // and the committer
  struct sigaction sa {}, old {};
  sa.sa_handler = OnUsr1;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
  sigset_t usr1, prev;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &usr1, &prev), 0);
  g_usr1_count.store(0);
  kill(getpid(), SIGUSR1);
  for (int i = 0; i < 50 && g_usr1_count.load() == 0; ++i) usleep(2000);
  EXPECT_EQ(g_usr1_count.load(), 0) << "the handler ran on thread " << g_usr1_tid.load();
  pthread_sigmask(SIG_SETMASK, &prev, nullptr);  // delivered here, now
  EXPECT_EQ(g_usr1_count.load(), 1);
  EXPECT_EQ(g_usr1_tid.load(), static_cast<pid_t>(syscall(SYS_gettid)));
  sigaction(SIGUSR1, &old, nullptr);
}

TEST_P(PagerTest, CommitCapturesExactlyTheWrittenPages) {
  PHEAP_SKIP_IF_TSAN();
  for (Pgno p = 0; p < 10; ++p) store_.PutPage(p, 1);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  // Reads alone, stored or fresh, are not writes.
  EXPECT_TRUE(AllBytes(Page(*pager, 5), 1));
  EXPECT_TRUE(AllBytes(Page(*pager, 200), 0));
  Page(*pager, 3)[17] = 0xA3;       // below hwm, stored
  Page(*pager, 8)[0] = 0xA8;        // below hwm, never read before
  Page(*pager, 100)[4095] = 0xB1;   // above hwm: first write to a fresh page
  Page(*pager, 16000)[1] = 0xB2;
  auto e = pager->Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 1u);
  EXPECT_EQ(store_.LastPages(), (std::vector<Pgno>{3, 8, 100, 16000}));
  EXPECT_EQ(store_.image().hwm, 16001u);
  EXPECT_EQ(store_.Read(3)[17], 0xA3);
  EXPECT_EQ(store_.Read(3)[18], 1);
  EXPECT_EQ(store_.Read(8)[0], 0xA8);
  EXPECT_EQ(store_.Read(100)[4095], 0xB1);
  EXPECT_EQ(store_.Read(16000)[1], 0xB2);

  // The next commit holds only what was written since.
  Page(*pager, 8)[1] = 0xC8;
  Page(*pager, 16001)[0] = 0xC9;
  e = pager->Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 2u);
  EXPECT_EQ(store_.LastPages(), (std::vector<Pgno>{8, 16001}));
  EXPECT_EQ(store_.Read(8)[1], 0xC8);
  // Nothing written: the epoch still advances, empty.
  e = pager->Commit();
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, 3u);
  EXPECT_TRUE(store_.LastPages().empty());
  EXPECT_EQ(pager->durable_epoch(), 3u);
  EXPECT_EQ(pager->stats().commits, 3u);
  EXPECT_EQ(store_.contract_error(), "");
}

// A cut over a region with few written runs and many unpopulated or
// read-only PTEs between them, then one with many runs among protected
// pages: both must report exactly the pages written.
TEST_P(PagerTest, CommitReportsSparseAndScatteredWritesExactly) {
  PHEAP_SKIP_IF_TSAN();
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  const Pgno last = kSize / kPageSize - 1;
  std::vector<Pgno> want;
  for (Pgno p = 0; p <= last; p += 997) want.push_back(p);  // a run in nearly every page table
  for (Pgno p : want) Page(*pager, p)[0] = 1;
  auto e = pager->Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(store_.LastPages(), want);

  // Reads map the zero page beside written pages; pages 200 apart fall in
  // one span of the walk, 5000 apart in separate ones.
  for (Pgno p = 1; p <= last; p += 499) (void)*reinterpret_cast<volatile uint8_t*>(Page(*pager, p));
  want = {2, 202, 402, 9000, 14000, last};
  for (Pgno p : want) Page(*pager, p)[1] = 2;
  e = pager->Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(store_.LastPages(), want);
  EXPECT_EQ(store_.Read(202)[1], 2);

  // Every page written and protected again, then many runs apart: more
  // than a cheap first look at the page tables holds.
  want.clear();
  for (Pgno p = 0; p <= last; ++p) Page(*pager, p)[3] = 4, want.push_back(p);
  e = pager->Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(store_.LastPages(), want);
  want.clear();
  for (Pgno p = 3; p <= last; p += 301) want.push_back(p);
  for (Pgno p : want) Page(*pager, p)[2] = 3;
  e = pager->Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(store_.LastPages(), want);
  e = pager->Commit();
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(store_.LastPages().empty());
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_P(PagerTest, ReadSyscallIntoNonResidentPage) {
  PHEAP_SKIP_IF_TSAN();
  store_.PutPage(7, 0x5A);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "hello", 5), 5);
  ssize_t n = read(fds[0], Page(*pager, 7) + 100, 5);
  if (GetParam() == TrackingMode::kMprotect) {
    // The documented limit: the kernel's own write into a protected page
    // fails. After the program writes the page once, it works.
    EXPECT_EQ(n, -1);
    EXPECT_EQ(errno, EFAULT);
    Page(*pager, 7)[0] = 0x5A;
    n = read(fds[0], Page(*pager, 7) + 100, 5);
  }
  close(fds[0]);
  close(fds[1]);
  ASSERT_EQ(n, 5);
  EXPECT_EQ(std::memcmp(Page(*pager, 7) + 100, "hello", 5), 0);
  EXPECT_EQ(Page(*pager, 7)[99], 0x5A);
  EXPECT_EQ(Page(*pager, 7)[105], 0x5A);
  ASSERT_TRUE(pager->Commit().ok());
  EXPECT_EQ(store_.LastPages(), (std::vector<Pgno>{7}));
  EXPECT_EQ(std::memcmp(store_.Read(7).data() + 100, "hello", 5), 0);
}

TEST_P(PagerTest, DiscardReadsZerosAndIsCommitted) {
  PHEAP_SKIP_IF_TSAN();
  for (Pgno p = 0; p < 4; ++p) store_.PutPage(p, 9);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  EXPECT_TRUE(AllBytes(Page(*pager, 1), 9));  // resident
  ASSERT_TRUE(pager->Discard(Page(*pager, 1), 2 * kPageSize).ok());
  EXPECT_TRUE(AllBytes(Page(*pager, 1), 0));
  EXPECT_TRUE(AllBytes(Page(*pager, 2), 0));  // never resident: served zeros, not the stored 9s
  Page(*pager, 2)[0] = 5;
  ASSERT_TRUE(pager->Commit().ok());
  EXPECT_EQ(store_.LastPages(), (std::vector<Pgno>{2}));
  auto d = store_.LastDiscarded();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].first, 1u);
  EXPECT_EQ(d[0].count, 1u);
  EXPECT_FALSE(store_.Has(1));
  EXPECT_EQ(store_.Read(2)[0], 5);
  EXPECT_EQ(store_.Read(2)[1], 0);
  EXPECT_EQ(store_.Read(0)[0], 9);
  EXPECT_EQ(store_.Read(3)[0], 9);
  EXPECT_FALSE(pager->Discard(Page(*pager, 1) + 1, kPageSize).ok());
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_P(PagerTest, FailedEpochIsPersistedAgainUnchanged) {
  PHEAP_SKIP_IF_TSAN();
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  Page(*pager, 4)[0] = 44;
  store_.FailPersists(1);
  auto e = pager->Commit();
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(pager->durable_epoch(), 0u);
  Page(*pager, 6)[0] = 66;
  e = pager->Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 2u);
  EXPECT_EQ(store_.Read(4)[0], 44);
  EXPECT_EQ(store_.Read(6)[0], 66);
  // Part of a replicated sink may hold the failed epoch already: it is
  // persisted again unchanged, and the later write gets its own epoch.
  using Attempt = std::pair<Epoch, std::vector<Pgno>>;
  EXPECT_EQ(store_.attempts(), (std::vector<Attempt>{{1, {4}}, {1, {4}}, {2, {6}}}));
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_P(PagerTest, InPlaceCommitWritesFromTheRegion) {
  PHEAP_SKIP_IF_TSAN();
  store_.TakeFromRegion(true);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  Page(*pager, 3)[0] = 33;
  Page(*pager, 700)[100] = 77;
  auto e = pager->CommitInPlace();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 1u);
  EXPECT_EQ(pager->durable_epoch(), 1u);
  EXPECT_EQ(store_.LastPages(), (std::vector<Pgno>{3, 700}));
  EXPECT_EQ(store_.Read(3)[0], 33);
  EXPECT_EQ(store_.Read(700)[100], 77);
  EXPECT_EQ(store_.region_epochs(), 1u);
  // Ordinary commits carry on after it, numbered in order.
  Page(*pager, 3)[0] = 34;
  e = pager->Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 2u);
  EXPECT_EQ(store_.LastPages(), (std::vector<Pgno>{3}));
  EXPECT_EQ(store_.Read(3)[0], 34);
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_P(PagerTest, FailedInPlaceEpochIsPersistedAgainUnchanged) {
  PHEAP_SKIP_IF_TSAN();
  store_.TakeFromRegion(true);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  std::vector<uint8_t> seen;  // page 4 as each epoch 1 that was applied left it
  store_.OnPersist([&](const SealedEpoch& s, const FakeStore& st) {
    if (s.image.epoch == 1) seen.push_back(st.PageDataLocked(4)[0]);
  });
  Page(*pager, 4)[0] = 44;
  store_.FailPersists(1);
  auto e = pager->CommitInPlace();
  ASSERT_FALSE(e.ok());
  // Written after the failed cut (which the commit thread may already be
  // persisting again): must not leak into it.
  Page(*pager, 4)[0] = 45;
  Page(*pager, 6)[0] = 66;
  e = pager->CommitInPlace();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 2u);
  using Attempt = std::pair<Epoch, std::vector<Pgno>>;
  EXPECT_EQ(store_.attempts(), (std::vector<Attempt>{{1, {4}}, {1, {4}}, {2, {4, 6}}}));
  EXPECT_EQ(seen, std::vector<uint8_t>{44});  // epoch 1 as cut, not as written since
  EXPECT_EQ(store_.Read(4)[0], 45);
  EXPECT_EQ(store_.Read(6)[0], 66);
  EXPECT_EQ(store_.contract_error(), "");
}

// The sync of an in-place epoch fails after the program resumed: the region
// no longer holds that cut, so its pages go into the next cut, which takes
// its number (it was durable nowhere).
TEST_P(PagerTest, FailedInPlaceSyncCarriesItsPagesIntoTheNextCut) {
  PHEAP_SKIP_IF_TSAN();
  store_.TakeFromRegion(true);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  Page(*pager, 4)[0] = 44;
  Page(*pager, 8)[0] = 88;
  store_.FailSyncs(1);
  auto e = pager->CommitInPlace();
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(pager->durable_epoch(), 0u);
  Page(*pager, 6)[0] = 66;  // 4 and 8 are not written again
  e = pager->CommitInPlace();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 1u);
  using Attempt = std::pair<Epoch, std::vector<Pgno>>;
  EXPECT_EQ(store_.attempts(), (std::vector<Attempt>{{1, {4, 8}}, {1, {4, 6, 8}}}));
  EXPECT_EQ(store_.Read(4)[0], 44);
  EXPECT_EQ(store_.Read(6)[0], 66);
  EXPECT_EQ(store_.Read(8)[0], 88);
  // And the next cut is numbered after it.
  Page(*pager, 4)[0] = 45;
  e = pager->Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 2u);
  EXPECT_EQ(store_.Read(4)[0], 45);
  EXPECT_EQ(store_.contract_error(), "");
}

// CommitInPlaceIfAlone writes a lone caller's cut from the region; with
// another thread for the pause to stop, or a sink that takes copies, it
// does nothing and the caller commits as usual.
TEST_P(PagerTest, InPlaceIfAloneOnlyWhenNoOtherThreadWouldStop) {
  PHEAP_SKIP_IF_TSAN();
  store_.TakeFromRegion(true);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  Page(*pager, 3)[0] = 33;
  auto e = pager->CommitInPlaceIfAlone();
  ASSERT_TRUE(e.has_value());
  ASSERT_TRUE(e->ok()) << e->status().ToString();
  EXPECT_EQ(**e, 1u);
  EXPECT_EQ(store_.region_epochs(), 1u);
  EXPECT_EQ(store_.Read(3)[0], 33);
  Page(*pager, 3)[0] = 34;
  std::atomic<bool> stop{false};
  std::thread other([&stop] {
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  EXPECT_FALSE(pager->CommitInPlaceIfAlone().has_value());
  stop = true;
  other.join();
  store_.TakeFromRegion(false);
  EXPECT_FALSE(pager->CommitInPlaceIfAlone().has_value());
  auto c = pager->Commit();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c, 2u);
  EXPECT_EQ(store_.Read(3)[0], 34);
  EXPECT_EQ(store_.region_epochs(), 1u);
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_P(PagerTest, InPlaceCommitFallsBackToACopyForOtherSinks) {
  PHEAP_SKIP_IF_TSAN();
  auto pager = Open();  // the store takes copies only
  ASSERT_NE(pager, nullptr);
  Page(*pager, 9)[0] = 99;
  auto e = pager->CommitInPlace();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(store_.Read(9)[0], 99);
  EXPECT_EQ(store_.region_epochs(), 0u);
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_P(PagerTest, AsyncCommitsCompleteInOrder) {
  PHEAP_SKIP_IF_TSAN();
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  std::vector<std::shared_future<Result<Epoch>>> futures;
  for (int i = 0; i < 5; ++i) {
    Page(*pager, static_cast<Pgno>(i))[0] = static_cast<uint8_t>(i + 1);
    futures.push_back(pager->CommitAsync());
  }
  for (int i = 0; i < 5; ++i) {
    auto r = futures[static_cast<size_t>(i)].get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, static_cast<Epoch>(i + 1));
  }
  EXPECT_EQ(store_.image().epoch, 5u);
  for (Pgno p = 0; p < 5; ++p) EXPECT_EQ(store_.Read(p)[0], p + 1);
  EXPECT_EQ(store_.contract_error(), "");
}

// Runs one commit on another thread and waits for it at most `bound`: a
// commit that never returns fails the test instead of hanging it. `unstick`
// then lets the sink finish, so the thread can be joined.
Result<Epoch> CommitWithin(Pager& pager, std::chrono::seconds bound, const std::function<void()>& unstick) {
  auto call = std::async(std::launch::async, [&] { return pager.CommitAsync().get(); });
  if (call.wait_for(bound) != std::future_status::ready) {
    ADD_FAILURE() << "the commit did not return within " << bound.count() << " s";
    unstick();
  }
  return call.get();
}

// A full disk: epochs fail and stay queued, past staging_max. A commit then
// fails at once with their error instead of waiting for room that never
// comes; once the sink works again the next commit persists every page.
TEST_P(PagerTest, CommitPastStagingMaxFailsWithTheOldestEpochsError) {
  PHEAP_SKIP_IF_TSAN();
  PagerOptions o;
  o.staging_max = 2 * kPageSize;
  o.staging_wait_ms = 600000;  // not what ends the wait
  auto pager = Open(o);
  ASSERT_NE(pager, nullptr);
  store_.FailPersists(1000000);
  for (Pgno p = 0; p < 4; ++p) Page(*pager, p)[0] = static_cast<uint8_t>(p + 1);
  auto e = pager->Commit();
  ASSERT_FALSE(e.ok());
  for (int i = 0; i < 3; ++i) {
    Page(*pager, 10)[0] = static_cast<uint8_t>(100 + i);
    e = CommitWithin(*pager, std::chrono::seconds(20), [&] { store_.FailPersists(0); });
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.status().err(), EIO);
    EXPECT_NE(e.status().message().find("commit refused: epochs 1 to 1"), std::string::npos) << e.status().ToString();
    EXPECT_NE(e.status().message().find("injected Persist failure"), std::string::npos) << e.status().ToString();
  }
  store_.FailPersists(0);
  e = CommitWithin(*pager, std::chrono::seconds(20), [] {});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 2u);
  EXPECT_EQ(pager->durable_epoch(), 2u);
  for (Pgno p = 0; p < 4; ++p) EXPECT_EQ(store_.Read(p)[0], p + 1);
  EXPECT_EQ(store_.Read(10)[0], 102);
  EXPECT_EQ(store_.contract_error(), "");
}

// A slow sink, not a failing one: a commit past staging_max waits at most
// staging_wait_ms and says so; the held epochs complete afterwards.
TEST_P(PagerTest, CommitPastStagingMaxWaitsForSlowEpochsWithinABound) {
  PHEAP_SKIP_IF_TSAN();
  PagerOptions o;
  o.staging_max = 2 * kPageSize;
  o.staging_wait_ms = 300;
  auto pager = Open(o);
  ASSERT_NE(pager, nullptr);
  store_.HoldPersists();
  for (Pgno p = 0; p < 4; ++p) Page(*pager, p)[0] = static_cast<uint8_t>(p + 1);
  auto first = pager->CommitAsync();
  Page(*pager, 10)[0] = 100;
  const auto t0 = std::chrono::steady_clock::now();
  auto e = CommitWithin(*pager, std::chrono::seconds(20), [&] { store_.ReleasePersists(); });
  ASSERT_FALSE(e.ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));
  EXPECT_EQ(e.status().code(), Status::Code::kTimeout);
  EXPECT_EQ(e.status().err(), ETIMEDOUT);
  EXPECT_NE(e.status().message().find("staging_wait_ms"), std::string::npos) << e.status().ToString();
  store_.ReleasePersists();
  auto r = first.get();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 1u);
  e = CommitWithin(*pager, std::chrono::seconds(20), [] {});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 2u);
  EXPECT_EQ(store_.Read(3)[0], 4);
  EXPECT_EQ(store_.Read(10)[0], 100);
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_P(PagerTest, SequentialScanGrowsThePrefetchWindow) {
  if (GetParam() == TrackingMode::kAsyncWpUser) GTEST_SKIP() << "async-wp-user places the image at open: no faults";
  constexpr Pgno kPages = 2048;
  for (Pgno p = 0; p < kPages; ++p) store_.PutPage(p, static_cast<uint8_t>(p));
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  uint64_t sum = 0;
  for (Pgno p = 0; p < kPages; ++p) sum += Page(*pager, p)[kPageSize - 1];
  uint64_t want = 0;
  for (Pgno p = 0; p < kPages; ++p) want += static_cast<uint8_t>(p);
  EXPECT_EQ(sum, want);
  PagerStats s = pager->stats();
  EXPECT_EQ(s.pages_fetched, kPages) << "faults " << s.faults << ", reads " << store_.read_runs();
  // A fixed 64 KiB window would need 128 faults; a growing one far fewer.
  EXPECT_LT(s.faults, kPages / 16);
  EXPECT_GE(s.faults, 1u);
}

TEST_P(PagerTest, CorruptPageIsNeverServed) {
  if (GetParam() == TrackingMode::kAsyncWpUser) {  // the image is read at open: the open fails
    store_.PutPage(0, 1);
    store_.PutPage(1, 1);
    store_.Corrupt(1);
    PagerOptions o;
    o.mode = GetParam();
    auto p = Pager::Open(store_.image(), &store_, &store_, o);
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.status().message().find("loading the heap image"), std::string::npos) << p.status().ToString();
    return;
  }
  if (!Pager::Probe().poison) GTEST_SKIP() << "no UFFDIO_POISON: the faulting thread would block forever";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  store_.PutPage(0, 1);
  store_.PutPage(1, 1);
  store_.Corrupt(1);
  // The SIGBUS is caught and turned into an exit code, so sanitizers that
  // report SIGBUS themselves do not change the outcome.
  EXPECT_EXIT(
      {
        signal(SIGBUS, [](int) { _exit(42); });
        auto pager = Open();
        volatile uint8_t x = Page(*pager, 0)[0];  // the rest of the run still works
        if (x != 1) _exit(3);
        x = Page(*pager, 1)[0];
        _exit(4);  // never: the page must not be readable
      },
      ::testing::ExitedWithCode(42), "page 1");
}

INSTANTIATE_TEST_SUITE_P(Modes, PagerTest,
                         ::testing::Values(TrackingMode::kAsyncWp, TrackingMode::kSyncWp, TrackingMode::kMprotect,
                                           TrackingMode::kAsyncWpUser, TrackingMode::kHybridWp),
                         [](const auto& p) { return ModeTestName(p.param); });

}  // namespace
}  // namespace pheap::testing
