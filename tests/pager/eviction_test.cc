// Eviction under memory_max, in every tracking mode that can evict: pages
// given back come back with their newest durable bytes, and writers racing
// commits and evictions on many threads lose no write.
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "pager/pager.h"
#include "tests/pager/fake_store.h"

namespace pheap::testing {
namespace {

constexpr uint64_t kBudget = uint64_t{2} << 20;  // 512 pages

class Eviction : public ::testing::TestWithParam<TrackingMode> {
 protected:
  void SetUp() override {
    auto modes = SupportedModes();
    if (std::find(modes.begin(), modes.end(), GetParam()) == modes.end())
      GTEST_SKIP() << TrackingModeName(GetParam()) << " is not supported by this kernel";
  }
  Result<std::unique_ptr<Pager>> Open(FakeStore* store) {
    PagerOptions o;
    o.mode = GetParam();
    o.memory_max = kBudget;
    o.memory_early_commit = false;
    return Pager::Open(store->image(), store, store, o);
  }
};

uint64_t* Word(void* base, Pgno p, size_t i) { return static_cast<uint64_t*>(base) + p * 512 + i; }

// A heap eight times its budget, written, rewritten in part and read back
// after each commit: every page shows its newest bytes, from the region or
// from the store.
TEST_P(Eviction, PagesComeBackWithTheirNewestBytes) {
  PHEAP_SKIP_UNDER_TSAN(
      "it defers the safepoint signal of a thread that waits in a page fault for room, so an eviction pause never "
      "holds it");
  constexpr Pgno kPages = 4096, kStored = 1024;  // 16 MiB; the first 4 MiB stored before open
  FakeStore store(ImageInfo{1, 0, 1, kTestBase, uint64_t{64} << 20, 0});
  std::vector<uint8_t> page(kPageSize);
  for (Pgno p = 0; p < kStored; ++p) {
    uint64_t v = p * 3 + 1;
    std::memcpy(page.data(), &v, 8);
    store.PutPage(p, page.data());
  }
  auto r = Open(&store);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Pager& pager = **r;
  void* base = pager.base();
  auto expect = [&](Pgno p, uint64_t round) { return round == 0 && p < kStored ? p * 3 + 1 : p * 1000 + round; };
  for (Pgno p = 0; p < kStored; p += 7) ASSERT_EQ(*Word(base, p, 0), expect(p, 0));
  for (uint64_t round = 1; round <= 3; ++round) {
    // Round 1 writes every page, later ones every other page from `round`.
    for (Pgno p = round == 1 ? 0 : round; p < kPages; p += round == 1 ? 1 : 2) {
      *Word(base, p, 0) = expect(p, round);
      *Word(base, p, 511) = expect(p, round);
      if (p % 256 == 0) {
        ASSERT_TRUE(pager.Commit().ok());
      }
    }
    ASSERT_TRUE(pager.Commit().ok());
    for (Pgno p = 0; p < kPages; ++p) {
      uint64_t want = expect(p, round);
      if (round > 1 && (p < round || (p - round) % 2 != 0)) {
        want = expect(p, 1);
        for (uint64_t k = 2; k < round; ++k)
          if (p >= k && (p - k) % 2 == 0) want = expect(p, k);
      }
      ASSERT_EQ(*Word(base, p, 0), want) << "page " << p << ", round " << round;
      ASSERT_EQ(*Word(base, p, 511), want) << "page " << p << ", round " << round;
    }
  }
  const PagerStats s = pager.stats();
  EXPECT_GT(s.evictions, kPages / 2);
  EXPECT_GT(s.refetches, kPages / 2);
  EXPECT_EQ(store.contract_error(), "");
}

// Writer threads keep rewriting their own pages, each checking before it
// writes that the page still holds what it last wrote there, while the main
// thread commits and the budget keeps evicting: an eviction that dropped an
// unwritten-back write, or a refault that brought an older version, shows
// as a mismatch. At the end the region and the store agree.
TEST_P(Eviction, RacingWritersLoseNothing) {
  PHEAP_SKIP_IF_TSAN();
  constexpr int kWriters = 3;
  constexpr Pgno kPerWriter = 1024;  // 12 MiB in all
  FakeStore store(ImageInfo{1, 0, 1, kTestBase, uint64_t{64} << 20, 0});
  auto r = Open(&store);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Pager& pager = **r;
  void* base = pager.base();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> mismatches{0}, writes{0};
  std::vector<std::vector<uint64_t>> last(kWriters, std::vector<uint64_t>(kPerWriter, 0));
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      uint64_t n = 0;
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        // Sweeps with a stride, so pages go cold between visits.
        const Pgno k = (i * 37) % kPerWriter, p = static_cast<Pgno>(w) * kPerWriter + k;
        volatile uint64_t* a = Word(base, p, 0);
        volatile uint64_t* b = Word(base, p, 300);
        if (*a != last[w][k] || *b != last[w][k]) {
          if (mismatches.fetch_add(1) < 5)
            ADD_FAILURE() << "page " << p << " holds " << *a << "/" << *b << ", last written " << last[w][k];
        }
        last[w][k] = ++n;
        *a = n;
        *b = n;
        // Leave the two cores to commits and faults now and then: the
        // point is the interleaving, not the write rate.
        if (i % 64 == 63) std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      writes.fetch_add(n);
    });
  }
  for (int c = 0; c < 90 && mismatches.load() == 0; ++c) {
    if (c % 3 == 2) {
      // A slow sink: the cut's pages are not durable for a while, and the
      // budget must not give them back meanwhile.
      store.HoldPersists();
      auto f = pager.CommitAsync();
      std::this_thread::sleep_for(std::chrono::microseconds(3000));
      store.ReleasePersists();
      ASSERT_TRUE(f.get().ok());
      continue;
    }
    auto e = (c % 2 == 0) ? pager.Commit() : pager.CommitAsync().get();
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    std::this_thread::sleep_for(std::chrono::microseconds(2000));
  }
  stop = true;
  for (auto& t : writers) t.join();
  ASSERT_TRUE(pager.Commit().ok());
  EXPECT_EQ(mismatches.load(), 0u);
  for (int w = 0; w < kWriters; ++w)
    for (Pgno k = 0; k < kPerWriter; ++k) {
      const Pgno p = static_cast<Pgno>(w) * kPerWriter + k;
      uint64_t stored;
      std::memcpy(&stored, store.Read(p).data(), 8);
      ASSERT_EQ(stored, last[w][k]) << "page " << p;
      ASSERT_EQ(*Word(base, p, 0), last[w][k]) << "page " << p;
    }
  const PagerStats s = pager.stats();
  EXPECT_GT(s.evictions, 0u);
  EXPECT_GT(s.refetches, 0u);
  EXPECT_GT(writes.load(), kPerWriter * kWriters);
  EXPECT_EQ(store.contract_error(), "");
}

INSTANTIATE_TEST_SUITE_P(Modes, Eviction,
                         ::testing::Values(TrackingMode::kAsyncWp, TrackingMode::kSyncWp, TrackingMode::kMprotect,
                                           TrackingMode::kHybridWp),
                         [](const auto& p) { return ModeTestName(p.param); });

}  // namespace
}  // namespace pheap::testing
