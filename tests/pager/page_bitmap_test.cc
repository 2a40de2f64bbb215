// PageBitmap: runs come back exactly as set, across word and summary-group
// boundaries, and a bit set while another thread takes is reported once.
#include "pager/page_bitmap.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace pheap {
namespace {

std::vector<pheap::Run> Take(PageBitmap& b) {
  std::vector<pheap::Run> runs;
  b.TakeRuns([&](pheap::Run r) { runs.push_back(r); });
  return runs;
}

TEST(PageBitmapTest, RunsSpanWordsAndGroupsAndComeBackOnce) {
  PageBitmap b((uint64_t{1} << 20) + 37);  // several summary words, a ragged tail
  b.SetRun(pheap::Run{60, 10});                   // across a word
  b.SetRun(pheap::Run{4090, 4100});               // across two groups
  b.Set((uint64_t{1} << 18) + 5);          // the second summary word
  b.Set((uint64_t{1} << 20) + 36);         // the last page
  const std::vector<std::pair<Pgno, uint64_t>> want{
      {60, 10}, {4090, 4100}, {(uint64_t{1} << 18) + 5, 1}, {(uint64_t{1} << 20) + 36, 1}};
  std::vector<std::pair<Pgno, uint64_t>> got;
  for (pheap::Run r : Take(b)) got.emplace_back(r.first, r.count);
  EXPECT_EQ(got, want);
  EXPECT_TRUE(Take(b).empty());
  EXPECT_FALSE(b.Test(4090));
}

TEST(PageBitmapTest, ClearedBitsAreNotReported) {
  PageBitmap b(100000);
  b.SetRun(pheap::Run{10, 100});
  b.ClearRun(pheap::Run{10, 100});
  b.Set(70000);
  b.Clear(70000);
  EXPECT_TRUE(Take(b).empty());
}

TEST(PageBitmapTest, RandomSetsMatchASet) {
  std::mt19937_64 rng(7);
  PageBitmap b(3'000'000);
  for (int round = 0; round < 5; ++round) {
    std::set<Pgno> want;
    for (int i = 0; i < 2000; ++i) {
      const Pgno p = rng() % 3'000'000;
      const uint64_t n = 1 + rng() % 200;
      for (Pgno q = p; q < std::min<Pgno>(p + n, 3'000'000); ++q) want.insert(q);
      b.SetRun(pheap::Run{p, std::min<Pgno>(p + n, 3'000'000) - p});
    }
    std::set<Pgno> got;
    Pgno last_end = 0;
    for (pheap::Run r : Take(b)) {
      EXPECT_TRUE(r.first > last_end || last_end == 0) << "runs are maximal and ascending";
      last_end = r.end();
      for (Pgno q = r.first; q < r.end(); ++q) got.insert(q);
    }
    EXPECT_EQ(got, want);
  }
}

TEST(PageBitmapTest, ConcurrentSetsAreEachTakenExactlyOnce) {
  constexpr uint64_t kPages = 1 << 22;
  constexpr int kPerThread = 200000;
  PageBitmap b(kPages);
  std::vector<std::atomic<uint8_t>> seen(kPages);
  std::atomic<bool> done{false};
  auto drain = [&] {
    b.TakeRuns([&](pheap::Run r) {
      for (Pgno q = r.first; q < r.end(); ++q) seen[q].fetch_add(1);
    });
  };
  std::thread taker([&] {
    while (!done.load()) drain();
  });
  std::vector<std::thread> setters;
  for (int t = 0; t < 2; ++t)
    setters.emplace_back([&, t] {
      // Distinct pages per thread, spread over every group.
      for (int i = 0; i < kPerThread; ++i) b.Set((static_cast<uint64_t>(i) * 20 + t * 7) % kPages);
    });
  for (auto& s : setters) s.join();
  done.store(true);
  taker.join();
  drain();
  for (int t = 0; t < 2; ++t)
    for (int i = 0; i < kPerThread; ++i) {
      const uint64_t p = (static_cast<uint64_t>(i) * 20 + t * 7) % kPages;
      ASSERT_EQ(seen[p].load(), 1) << "page " << p;
    }
}

}  // namespace
}  // namespace pheap
