// hybrid-wp's chunk moves never lose a write: the kernel's own writes
// (read(2), recv(2)) into cold chunks, writes from threads that start after
// the heap opened, writes racing moves in both directions checked against
// what each writer had published before every cut, a reopened heap whose
// stored chunks go cold, and moves to cold refused outside a pause.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "pager/dirty_tracker.h"
#include "pager/kernel_probe.h"
#include "pager/pager.h"
#include "pager/region.h"
#include "pager/safepoint.h"
#include "pager/uffd.h"
#include "tests/pager/fake_store.h"

namespace pheap::testing {
namespace {

constexpr uint64_t kSize = uint64_t{1} << 30;
constexpr Pgno kChunkPages = 512;

bool Supported() { return ChooseMode(CachedKernelFeatures(), TrackingMode::kHybridWp).ok(); }

#define SKIP_UNLESS_HYBRID()                                                                         \
  do {                                                                                               \
    if (!Supported()) GTEST_SKIP() << "hybrid-wp needs a full userfaultfd with async write-protect"; \
  } while (0)

uint64_t Load(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

class HybridWp : public ::testing::Test {
 protected:
  // warm_faults 1: a chunk moves to hot at the first commit after a write
  // fault on it, so the tests below make moves both ways often.
  std::unique_ptr<Pager> Open(uint32_t idle_cuts, bool precopy = true, uint32_t warm_faults = 1) {
    PagerOptions o;
    o.mode = TrackingMode::kHybridWp;
    o.hybrid_idle_cuts = idle_cuts;
    o.hybrid_warm_faults = warm_faults;
    o.precopy = precopy;
    auto p = Pager::Open(store_.image(), &store_, &store_, o);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p.value()) : nullptr;
  }
  uint8_t* Page(Pager& p, Pgno n) { return static_cast<uint8_t*>(p.base()) + n * kPageSize; }
  // Commits until a chunk has gone cold since `cooled`, at most `tries` times.
  static void CommitUntilCooled(Pager& p, uint64_t cooled, int tries = 8) {
    for (int i = 0; i < tries && p.stats().chunks_cooled <= cooled; ++i) ASSERT_TRUE(p.Commit().ok());
  }

  FakeStore store_{ImageInfo{1, 0, 1, kTestBase, kSize, 0}};
};

TEST_F(HybridWp, KernelWritesIntoColdChunksAreCommitted) {
  SKIP_UNLESS_HYBRID();
  PHEAP_SKIP_IF_TSAN();
  auto pager = Open(1);
  ASSERT_NE(pager, nullptr);
  char path[] = "/tmp/pheap-hybrid-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  std::vector<uint8_t> src(kPageSize, 'Z');
  ASSERT_EQ(pwrite(fd, src.data(), kPageSize, 0), static_cast<ssize_t>(kPageSize));

  // A never-touched chunk: the kernel's copy takes a missing fault there.
  const Pgno fresh = 10 * kChunkPages + 7;
  ASSERT_EQ(pread(fd, Page(*pager, fresh), kPageSize, 0), static_cast<ssize_t>(kPageSize));
  ASSERT_TRUE(pager->Commit().ok());
  EXPECT_EQ(store_.Read(fresh)[100], 'Z');
  EXPECT_GE(pager->stats().chunks_heated, 1u);

  // A chunk that went cold with its pages present and protected: the
  // kernel's copy takes a write-protect fault.
  const Pgno warm = 20 * kChunkPages + 3;
  std::memset(Page(*pager, warm), 1, kPageSize);
  std::memset(Page(*pager, warm + 1), 1, kPageSize);
  ASSERT_TRUE(pager->Commit().ok());
  const uint64_t cooled = pager->stats().chunks_cooled;
  CommitUntilCooled(*pager, cooled);
  ASSERT_GT(pager->stats().chunks_cooled, cooled) << "the idle chunk never went cold";
  std::memset(src.data(), 'Y', kPageSize);
  ASSERT_EQ(pwrite(fd, src.data(), kPageSize, 0), static_cast<ssize_t>(kPageSize));
  ASSERT_EQ(pread(fd, Page(*pager, warm + 1), kPageSize, 0), static_cast<ssize_t>(kPageSize));
  ASSERT_TRUE(pager->Commit().ok());
  EXPECT_EQ(store_.Read(warm + 1)[4000], 'Y');
  EXPECT_EQ(store_.Read(warm)[0], 1);

  // recv(2) into another cold chunk.
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  const Pgno sock_page = 30 * kChunkPages + 100;
  std::memset(src.data(), 'R', kPageSize);
  ASSERT_EQ(send(sv[0], src.data(), 512, 0), 512);
  ASSERT_EQ(recv(sv[1], Page(*pager, sock_page), 512, MSG_WAITALL), 512);
  ASSERT_TRUE(pager->Commit().ok());
  EXPECT_EQ(store_.Read(sock_page)[511], 'R');
  close(sv[0]);
  close(sv[1]);
  close(fd);
  EXPECT_EQ(pager->stats().moves_unpaused, 0u);
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_F(HybridWp, WritesFromNewThreadsAreCommitted) {
  SKIP_UNLESS_HYBRID();
  PHEAP_SKIP_IF_TSAN();
  auto pager = Open(1);
  ASSERT_NE(pager, nullptr);
  for (int round = 1; round <= 6; ++round) {
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t)
      ts.emplace_back([&, t] {
        // Each its own chunk, some shared: both first writers of a cold
        // chunk and writers into one another thread just moved.
        const Pgno p = static_cast<Pgno>(40 + (t % 5)) * kChunkPages + static_cast<Pgno>(t * 11 + round);
        std::memset(Page(*pager, p), round, kPageSize);
      });
    for (auto& t : ts) t.join();
    ASSERT_TRUE(pager->Commit().ok());
    for (int t = 0; t < 8; ++t) {
      const Pgno p = static_cast<Pgno>(40 + (t % 5)) * kChunkPages + static_cast<Pgno>(t * 11 + round);
      EXPECT_EQ(store_.Read(p)[123], round) << "round " << round << " thread " << t;
    }
    ASSERT_TRUE(pager->Commit().ok());  // nothing written: the chunks go cold again
  }
  EXPECT_GE(pager->stats().chunks_cooled, 5u);
  EXPECT_EQ(pager->stats().moves_unpaused, 0u);
}

// Sparse writes into cold chunks: each page is protected again at the
// commit (one span per chunk), so the chunks stay cold and the next writes
// to the same pages and to the pages between fault again and are
// committed. A chunk written densely goes hot; one that took its write
// faults and then went hot at once keeps the writes made after the move.
TEST_F(HybridWp, SparseWritesStayColdAndAreCommitted) {
  SKIP_UNLESS_HYBRID();
  PHEAP_SKIP_IF_TSAN();
  auto pager = Open(1, true, 16);
  ASSERT_NE(pager, nullptr);
  constexpr Pgno kFirst = 50, kChunks = 4;
  for (Pgno p = kFirst * kChunkPages; p < (kFirst + kChunks) * kChunkPages; ++p) Page(*pager, p)[0] = 1;
  ASSERT_TRUE(pager->Commit().ok());
  for (int i = 0; i < 8 && pager->stats().hot_chunks > 0; ++i) ASSERT_TRUE(pager->Commit().ok());
  ASSERT_EQ(pager->stats().hot_chunks, 0u);
  // A few pages per chunk, with gaps, and a run across a chunk boundary.
  std::vector<Pgno> pages;
  for (Pgno c = kFirst; c < kFirst + kChunks; ++c)
    for (Pgno off : {Pgno{3}, Pgno{4}, Pgno{90}, Pgno{300}, Pgno{511}}) pages.push_back(c * kChunkPages + off);
  pages.push_back((kFirst + 1) * kChunkPages);
  for (int round = 2; round <= 4; ++round) {
    const uint64_t singles = pager->stats().single_pages;
    for (Pgno p : pages) Page(*pager, p)[7] = static_cast<uint8_t>(round);
    // A page between the marked ones, written only now and then.
    if (round == 3) Page(*pager, kFirst * kChunkPages + 91)[7] = 33;
    ASSERT_TRUE(pager->Commit().ok());
    EXPECT_GE(pager->stats().single_pages - singles, pages.size()) << "round " << round;
    EXPECT_EQ(pager->stats().hot_chunks, 0u) << "round " << round;
    for (Pgno p : pages) ASSERT_EQ(store_.Read(p)[7], round) << "page " << p << " round " << round;
  }
  EXPECT_EQ(store_.Read(kFirst * kChunkPages + 91)[7], 33);
  Page(*pager, kFirst * kChunkPages + 91)[7] = 34;
  ASSERT_TRUE(pager->Commit().ok());
  EXPECT_EQ(store_.Read(kFirst * kChunkPages + 91)[7], 34);

  // Dense: 16 pages of one chunk go hot at the commit.
  const uint64_t heated = pager->stats().chunks_heated;
  for (Pgno i = 0; i < 16; ++i) Page(*pager, kFirst * kChunkPages + 100 + 2 * i)[7] = 5;
  ASSERT_TRUE(pager->Commit().ok());
  EXPECT_EQ(pager->stats().chunks_heated, heated + 1);
  EXPECT_EQ(store_.Read(kFirst * kChunkPages + 130)[7], 5);

  // 65 faults move a chunk at once, unprotected; the pages between the
  // 64 marked ones, written after the move, must not be protected before
  // the commit reports them.
  const Pgno c2 = (kFirst + 2) * kChunkPages;
  for (Pgno i = 0; i <= 64; ++i) Page(*pager, c2 + 2 * i)[7] = 6;
  for (Pgno i = 0; i < 64; ++i) Page(*pager, c2 + 2 * i + 1)[7] = 7;
  ASSERT_TRUE(pager->Commit().ok());
  for (Pgno i = 0; i <= 64; ++i) ASSERT_EQ(store_.Read(c2 + 2 * i)[7], 6) << i;
  for (Pgno i = 0; i < 64; ++i) ASSERT_EQ(store_.Read(c2 + 2 * i + 1)[7], 7) << i;
  EXPECT_EQ(pager->stats().moves_unpaused, 0u);
  EXPECT_EQ(store_.contract_error(), "");
}

// No commit (so it runs under ThreadSanitizer too): threads race to be
// first in the same cold chunks and in chunks of their own, while other
// threads read; every write lands and every chunk is heated once.
TEST_F(HybridWp, FirstTouchesRaceAcrossThreads) {
  SKIP_UNLESS_HYBRID();
  auto pager = Open(1);
  ASSERT_NE(pager, nullptr);
  constexpr int kThreads = 6, kChunks = 24;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int c = 0; c < kChunks; ++c) {
        uint8_t* p = Page(*pager, static_cast<Pgno>(c) * kChunkPages + static_cast<Pgno>(t) * 7);
        if (t % 3 == 2) {
          EXPECT_EQ(*reinterpret_cast<volatile uint8_t*>(p + 100), 0);
        } else {
          p[0] = static_cast<uint8_t>(t + 1);
        }
      }
    });
  for (auto& t : ts) t.join();
  for (int t = 0; t < kThreads; ++t)
    for (int c = 0; c < kChunks; ++c)
      EXPECT_EQ(Page(*pager, static_cast<Pgno>(c) * kChunkPages + static_cast<Pgno>(t) * 7)[0], t % 3 == 2 ? 0 : t + 1);
  EXPECT_EQ(pager->stats().chunks_heated, static_cast<uint64_t>(kChunks));
  EXPECT_EQ(pager->stats().hot_chunks, static_cast<uint64_t>(kChunks));
}

// Writers keep bumping counters in pages spread over many chunks, some
// written all the time, some now and then (so their chunks go cold and are
// heated again while others write), publishing each value after writing
// it. Every committed image must hold at least what was published before
// its commit began, and the last one exactly the final values.
void RaceMoves(HybridWp* fixture, FakeStore& store, Pager& pager, bool in_place) {
  constexpr int kWriters = 4, kPagesEach = 24, kCommits = 120;
  struct Slot {
    Pgno page;
    std::atomic<uint64_t> published{0};
  };
  std::vector<Slot> slots(kWriters * kPagesEach);
  for (int i = 0; i < kWriters * kPagesEach; ++i)
    slots[static_cast<size_t>(i)].page = static_cast<Pgno>(i % 37) * kChunkPages * 3 + static_cast<Pgno>(i) * 5 + 1;
  auto* base = static_cast<uint8_t*>(pager.base());
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937_64 rng(static_cast<uint64_t>(w) + 1);
      std::vector<uint64_t> next(kPagesEach, 1);
      while (!stop.load(std::memory_order_relaxed)) {
        // Most writes go to the writer's first two pages; the rest, each
        // written every few commits, keep their chunks moving both ways.
        const int k = rng() % 4096 != 0 ? static_cast<int>(rng() % 2) : static_cast<int>(rng() % kPagesEach);
        Slot& s = slots[static_cast<size_t>(w * kPagesEach + k)];
        const uint64_t v = next[static_cast<size_t>(k)]++;
        std::memcpy(base + s.page * kPageSize, &v, 8);
        s.published.store(v, std::memory_order_release);
        if (rng() % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
      }
    });
  }
  std::vector<uint64_t> before(slots.size());
  for (int c = 0; c < kCommits && !::testing::Test::HasFailure(); ++c) {
    for (size_t i = 0; i < slots.size(); ++i) before[i] = slots[i].published.load(std::memory_order_acquire);
    auto e = in_place ? pager.CommitInPlace() : (c % 2 == 0 ? pager.Commit() : pager.CommitAsync().get());
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    for (size_t i = 0; i < slots.size(); ++i) {
      const uint64_t got = store.Has(slots[i].page) ? Load(store.Read(slots[i].page).data()) : 0;
      if (got < before[i]) {
        ADD_FAILURE() << "commit " << c << ": page " << slots[i].page << " holds " << got << ", but " << before[i]
                      << " was written before the commit began";
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 + (c % 7) * 150));
  }
  stop = true;
  for (auto& t : writers) t.join();
  ASSERT_TRUE(pager.Commit().ok());
  for (size_t i = 0; i < slots.size(); ++i)
    EXPECT_EQ(Load(store.Read(slots[i].page).data()), slots[i].published.load()) << "page " << slots[i].page;
  const PagerStats st = pager.stats();
  std::printf("moves: %llu to hot, %llu to cold; %llu hot now\n", static_cast<unsigned long long>(st.chunks_heated),
              static_cast<unsigned long long>(st.chunks_cooled), static_cast<unsigned long long>(st.hot_chunks));
  EXPECT_GT(st.chunks_heated, 20u);
  EXPECT_GT(st.chunks_cooled, 20u);
  EXPECT_EQ(st.moves_unpaused, 0u);
  EXPECT_EQ(store.contract_error(), "");
  (void)fixture;
}

TEST_F(HybridWp, WritesRacingMovesAreCommitted) {
  SKIP_UNLESS_HYBRID();
  PHEAP_SKIP_IF_TSAN();
  auto pager = Open(1);
  ASSERT_NE(pager, nullptr);
  RaceMoves(this, store_, *pager, false);
}

TEST_F(HybridWp, WritesRacingMovesAreCommittedWithoutPrecopy) {
  SKIP_UNLESS_HYBRID();
  PHEAP_SKIP_IF_TSAN();
  auto pager = Open(1, false);
  ASSERT_NE(pager, nullptr);
  RaceMoves(this, store_, *pager, false);
}

TEST_F(HybridWp, WritesRacingMovesAreCommittedInPlace) {
  SKIP_UNLESS_HYBRID();
  PHEAP_SKIP_IF_TSAN();
  store_.TakeFromRegion(true);
  auto pager = Open(1);
  ASSERT_NE(pager, nullptr);
  RaceMoves(this, store_, *pager, true);
}

// A reopened heap: chunks with stored pages start hot and go cold only once
// every stored page of theirs is in place; their pages keep their content
// through the moves, and a discarded page reads as zeros.
TEST_F(HybridWp, StoredChunksGoColdOnceFetched) {
  SKIP_UNLESS_HYBRID();
  PHEAP_SKIP_IF_TSAN();
  for (Pgno p = 0; p < 3 * kChunkPages; p += 3) store_.PutPage(p, static_cast<uint8_t>(p % 250 + 1));
  auto pager = Open(1);
  ASSERT_NE(pager, nullptr);
  EXPECT_EQ(pager->stats().hot_chunks, 3u);
  auto want = [](Pgno p) { return static_cast<uint8_t>(p % 3 == 0 ? p % 250 + 1 : 0); };
  // Fetch chunk 0 whole (backwards: no read-ahead runs into chunk 1), and
  // a few pages of chunk 1.
  for (Pgno p = kChunkPages; p-- > 0;) ASSERT_EQ(Page(*pager, p)[5], want(p)) << p;
  ASSERT_EQ(Page(*pager, kChunkPages + 30)[0], want(kChunkPages + 30));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pager->Commit().ok());
  EXPECT_EQ(pager->stats().chunks_cooled, 1u);  // chunk 0: chunks 1 and 2 still hold unfetched pages
  EXPECT_EQ(pager->stats().hot_chunks, 2u);
  ASSERT_TRUE(pager->Discard(Page(*pager, 30), kPageSize).ok());
  // Back and forth: a write heats chunk 0, idle commits cool it again.
  for (int round = 0; round < 3; ++round) {
    Page(*pager, 60)[9] = static_cast<uint8_t>(0x80 + round);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(pager->Commit().ok());
  }
  EXPECT_GE(pager->stats().chunks_cooled, 4u);
  for (Pgno p = 0; p < kChunkPages; ++p) {
    if (p == 30) {
      EXPECT_EQ(Page(*pager, p)[5], 0);
    } else if (p == 60) {
      EXPECT_EQ(Page(*pager, p)[9], 0x82);
    } else {
      ASSERT_EQ(Page(*pager, p)[5], want(p)) << p;
    }
  }
  EXPECT_EQ(store_.Read(60)[9], 0x82);
  EXPECT_EQ(store_.Read(60)[0], 61);
  EXPECT_EQ(pager->stats().moves_unpaused, 0u);
}

// The tracker alone: a move that needs a pause (to cold, or to hot with
// the chunk protected again) asked for while no pause holds the writers is
// refused and counted; inside a pause it happens.
TEST(HybridWpTracker, CoolsOnlyInsideAPause) {
  SKIP_UNLESS_HYBRID();
  PHEAP_SKIP_IF_TSAN();
  auto region = Region::Map(kTestBase, uint64_t{64} << 20);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  bool via_dev = false;
  const int hot = uffd_open(&via_dev), cold = uffd_open(&via_dev);
  ASSERT_GE(hot, 0);
  ASSERT_GE(cold, 0);
  ASSERT_EQ(uffd_api(hot, UFFD_FEATURE_WP_ASYNC, nullptr, nullptr), 0);
  ASSERT_EQ(uffd_api(cold, 0, nullptr, nullptr), 0);
  HybridWpConfig c;
  c.hot_uffd = hot;
  c.cold_uffd = cold;
  c.pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
  c.idle_cuts = 1;
  c.warm_faults = 1;
  auto t = NewHybridWpTracker(*region, c);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  DirtyTracker& tr = **t;
  struct Sink final : RunSink {
    uint64_t pages = 0;
    void Add(pheap::Run r) override { pages += r.count; }
  } sink;
  tr.OnColdFault(5, true);  // as the fault service does for a first touch: chunk 0 goes hot
  EXPECT_EQ(tr.chunk_counts().hot, 1u);
  region->data()[5 * kPageSize] = 1;  // no fault now: the chunk is on the async userfaultfd
  ASSERT_TRUE(tr.TakeDirty(&sink).ok());
  EXPECT_GE(sink.pages, 1u);
  ASSERT_TRUE(tr.AtPause().ok());  // the write: not idle yet
  ASSERT_TRUE(tr.TakeDirty(&sink).ok());
  ASSERT_TRUE(tr.AtPause().ok());  // idle, but no pause holds the writers
  EXPECT_EQ(tr.chunk_counts().moves_unpaused, 1u);
  EXPECT_EQ(tr.chunk_counts().cooled, 0u);
  EXPECT_EQ(tr.chunk_counts().hot, 1u);
  {
    Safepoint sp;
    ASSERT_TRUE(sp.Pause().ok());
    Status st = tr.TakeDirty(&sink);
    if (st.ok()) st = tr.AtPause();
    sp.Resume();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_EQ(tr.chunk_counts().cooled, 1u);
  EXPECT_EQ(tr.chunk_counts().hot, 0u);
  // A write fault on a cold chunk: tracked one page at a time until a
  // pause moves the chunk to hot, protected again.
  tr.OnColdFault(600, false);
  EXPECT_EQ(tr.chunk_counts().single_pages, 1u);
  ASSERT_TRUE(tr.TakeDirty(&sink).ok());
  ASSERT_TRUE(tr.AtPause().ok());
  EXPECT_EQ(tr.chunk_counts().moves_unpaused, 2u);
  EXPECT_EQ(tr.chunk_counts().hot, 0u);
  tr.OnColdFault(600, false);
  {
    Safepoint sp;
    ASSERT_TRUE(sp.Pause().ok());
    Status st = tr.TakeDirty(&sink);
    if (st.ok()) st = tr.AtPause();
    sp.Resume();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_EQ(tr.chunk_counts().hot, 1u);
  EXPECT_EQ(tr.chunk_counts().heated, 2u);
  t->reset();
  close(hot);
  close(cold);
}

}  // namespace
}  // namespace pheap::testing
