// Advice (Pager::Advise) in every tracking mode that serves faults: will-need
// places stored pages with no fault reaching the program, within the budget;
// sequential widens the fault service's window, random fills single pages;
// dont-need gives back clean durable pages and never a written one; a range
// outside the region is refused, naming it.
#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "pager/pager.h"
#include "tests/pager/fake_store.h"

namespace pheap::testing {
namespace {

constexpr uint64_t kSize = uint64_t{64} << 20;
constexpr uint64_t kBudget = uint64_t{2} << 20;  // 512 pages: high watermark 448

class Advice : public ::testing::TestWithParam<TrackingMode> {
 protected:
  void SetUp() override {
    auto modes = SupportedModes();
    if (std::find(modes.begin(), modes.end(), GetParam()) == modes.end())
      GTEST_SKIP() << TrackingModeName(GetParam()) << " is not supported by this kernel";
    if (GetParam() == TrackingMode::kAsyncWpUser) GTEST_SKIP() << "async-wp-user places the image at open: no faults";
  }
  std::unique_ptr<Pager> Open(uint64_t memory_max = 0) {
    PagerOptions o;
    o.mode = GetParam();
    o.memory_max = memory_max;
    o.memory_early_commit = false;
    auto p = Pager::Open(store_.image(), &store_, &store_, o);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p.value()) : nullptr;
  }
  // Stores pages [0, n), page p filled with Fill(p).
  void Store(Pgno n) {
    for (Pgno p = 0; p < n; ++p) store_.PutPage(p, Fill(p));
  }
  static uint8_t Fill(Pgno p) { return static_cast<uint8_t>(p % 251 + 1); }
  static uint8_t* Page(Pager& pager, Pgno p) { return static_cast<uint8_t*>(pager.base()) + p * kPageSize; }
  // Pages of [first, first + n) the kernel holds, asked without touching them.
  static uint64_t Resident(Pager& pager, Pgno first, uint64_t n) {
    std::vector<unsigned char> v(n);
    EXPECT_EQ(::mincore(Page(pager, first), n * kPageSize, v.data()), 0) << std::strerror(errno);
    uint64_t k = 0;
    for (unsigned char c : v) k += c & 1;
    return k;
  }
  static bool WaitFor(const std::function<bool()>& done) {
    for (int i = 0; i < 2000; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  }

  FakeStore store_{ImageInfo{1, 0, 1, kTestBase, kSize, 0}};
};

TEST_P(Advice, WillNeedPlacesStoredPagesWithoutAFaultReachingTheProgram) {
  constexpr Pgno kPages = 1024;
  Store(kPages);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  ASSERT_EQ(Resident(*pager, 0, kPages), 0u);
  // Unaligned at both ends: every page it touches is covered.
  ASSERT_TRUE(pager->Advise(Page(*pager, 0) + 100, kPages * kPageSize - 200, pheap::Advice::kWillNeed).ok());
  ASSERT_TRUE(WaitFor([&] { return Resident(*pager, 0, kPages) == kPages; }))
      << Resident(*pager, 0, kPages) << " pages resident";
  for (Pgno p = 0; p < kPages; ++p) ASSERT_EQ(Page(*pager, p)[kPageSize - 1], Fill(p)) << p;
  const PagerStats s = pager->stats();
  EXPECT_EQ(s.faults, 0u) << "the program's reads faulted";
  EXPECT_EQ(s.pages_fetched, kPages);
}

TEST_P(Advice, WillNeedBringsBackEvictedPagesWithinTheBudget) {
  constexpr Pgno kPages = 1024, kTouched = 256;
  Store(kPages);
  auto pager = Open(kBudget);
  ASSERT_NE(pager, nullptr);
  for (Pgno p = 0; p < kTouched; ++p) ASSERT_EQ(Page(*pager, p)[0], Fill(p)) << p;
  ASSERT_TRUE(pager->Advise(Page(*pager, 0), kTouched * kPageSize, pheap::Advice::kDontNeed).ok());
  ASSERT_EQ(pager->stats().evictions, kTouched);
  ASSERT_EQ(Resident(*pager, 0, kTouched), 0u);
  const PagerStats before = pager->stats();

  // Twice the budget asked for: the budget's high watermark (7/8 of 512
  // pages) bounds what is placed; the evicted pages come first.
  ASSERT_TRUE(pager->Advise(Page(*pager, 0), kPages * kPageSize, pheap::Advice::kWillNeed).ok());
  ASSERT_TRUE(WaitFor([&] { return Resident(*pager, 0, kTouched) == kTouched; }));
  uint64_t fetched = 0;
  ASSERT_TRUE(WaitFor([&] {  // settled: nothing placed for 200 ms
    const uint64_t now = pager->stats().pages_fetched;
    if (now == fetched) return true;
    fetched = now;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return false;
  }));
  const uint64_t placed = fetched - before.pages_fetched;
  EXPECT_GE(placed, kTouched);
  EXPECT_LE(placed, kBudget / kPageSize * 7 / 8) << "prefetch went past the budget";
  EXPECT_EQ(pager->stats().refetches - before.refetches, kTouched);
  for (Pgno p = 0; p < kTouched; ++p) ASSERT_EQ(Page(*pager, p)[kPageSize - 1], Fill(p)) << p;
  EXPECT_EQ(pager->stats().faults, before.faults) << "the program's reads faulted";
}

TEST_P(Advice, SequentialAdviceWidensTheWindow) {
  constexpr Pgno kHalf = 2048, kStride = 64;
  Store(2 * kHalf);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  // Unadvised, a strided read is no sequence: each touch fills 64 KiB.
  for (Pgno p = kHalf; p < 2 * kHalf; p += kStride) ASSERT_EQ(Page(*pager, p)[0], Fill(p));
  const PagerStats plain = pager->stats();
  EXPECT_EQ(plain.faults, kHalf / kStride);
  ASSERT_TRUE(pager->Advise(Page(*pager, 0), kHalf * kPageSize, pheap::Advice::kSequential).ok());
  for (Pgno p = 0; p < kHalf; p += kStride) ASSERT_EQ(Page(*pager, p)[0], Fill(p));
  const PagerStats s = pager->stats();
  // Advised, the first fault fills prefetch_max (1024 pages) and reads the
  // next window ahead.
  EXPECT_LE(s.faults - plain.faults, 4u);
  EXPECT_GE(s.pages_fetched - plain.pages_fetched, 1024u);
}

TEST_P(Advice, RandomAdviceFillsTheFaultingPageAlone) {
  constexpr Pgno kPages = 512;
  Store(kPages);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  ASSERT_TRUE(pager->Advise(Page(*pager, 0), kPages * kPageSize, pheap::Advice::kRandom).ok());
  // Normal advice takes it back for the upper half.
  ASSERT_TRUE(pager->Advise(Page(*pager, kPages / 2), kPages / 2 * kPageSize, pheap::Advice::kNormal).ok());
  for (Pgno p = 0; p < kPages / 2; ++p) ASSERT_EQ(Page(*pager, p)[0], Fill(p));
  const PagerStats random = pager->stats();
  EXPECT_EQ(random.faults, kPages / 2);
  EXPECT_EQ(random.pages_fetched, kPages / 2);
  EXPECT_EQ(Resident(*pager, kPages / 2, kPages / 2), 0u) << "a random fault read ahead";
  for (Pgno p = kPages / 2; p < kPages; ++p) ASSERT_EQ(Page(*pager, p)[0], Fill(p));
  EXPECT_LT(pager->stats().faults - random.faults, kPages / 16) << "sequential reads without advice";
}

TEST_P(Advice, DontNeedGivesBackCleanDurablePagesNeverAWrittenOne) {
  constexpr Pgno kPages = 64;
  Store(kPages);
  {
    auto pager = Open(kBudget);
    ASSERT_NE(pager, nullptr);
    for (Pgno p = 0; p < kPages; ++p) ASSERT_EQ(Page(*pager, p)[0], Fill(p));
    Page(*pager, 10)[5] = 0xa1;  // written since the last commit: stays
    Page(*pager, 20)[5] = 0xa2;
    ASSERT_TRUE(pager->Advise(Page(*pager, 0), kPages * kPageSize, pheap::Advice::kDontNeed).ok());
    EXPECT_EQ(pager->stats().evictions, kPages - 2);
    EXPECT_EQ(Resident(*pager, 0, kPages), 2u);
    EXPECT_EQ(Resident(*pager, 10, 1), 1u);
    EXPECT_EQ(Resident(*pager, 20, 1), 1u);
    for (Pgno p = 0; p < kPages; ++p) ASSERT_EQ(Page(*pager, p)[0], Fill(p)) << p;
    EXPECT_EQ(Page(*pager, 10)[5], 0xa1);
    EXPECT_EQ(Page(*pager, 20)[5], 0xa2);
    ASSERT_TRUE(pager->Commit().ok());
    // Durable now: they go too, and come back with the write.
    const uint64_t evicted = pager->stats().evictions;
    ASSERT_TRUE(pager->Advise(Page(*pager, 10), 11 * kPageSize, pheap::Advice::kDontNeed).ok());
    EXPECT_EQ(pager->stats().evictions - evicted, 11u);
    EXPECT_EQ(Resident(*pager, 10, 11), 0u);
    EXPECT_EQ(Page(*pager, 20)[5], 0xa2);
    Page(*pager, 30)[5] = 0xa3;
    ASSERT_TRUE(pager->Commit().ok());
  }
  auto pager = Open(kBudget);  // a clean reopen
  ASSERT_NE(pager, nullptr);
  EXPECT_EQ(Page(*pager, 10)[5], 0xa1);
  EXPECT_EQ(Page(*pager, 20)[5], 0xa2);
  EXPECT_EQ(Page(*pager, 30)[5], 0xa3);
  EXPECT_EQ(Page(*pager, 31)[0], Fill(31));
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_P(Advice, DontNeedWithoutABudgetKeepsEveryPage) {
  constexpr Pgno kPages = 64;
  Store(kPages);
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  for (Pgno p = 0; p < kPages; ++p) ASSERT_EQ(Page(*pager, p)[0], Fill(p));
  ASSERT_TRUE(pager->Advise(Page(*pager, 0), kPages * kPageSize, pheap::Advice::kDontNeed).ok());
  EXPECT_EQ(Resident(*pager, 0, kPages), kPages);
  EXPECT_EQ(pager->stats().evictions, 0u);
}

TEST_P(Advice, ARangeOutsideTheRegionIsRefusedNamingIt) {
  auto pager = Open();
  ASSERT_NE(pager, nullptr);
  auto* base = static_cast<uint8_t*>(pager->base());
  const uint64_t b = reinterpret_cast<uint64_t>(base);
  Status s = pager->Advise(base - kPageSize, 2 * kPageSize, pheap::Advice::kWillNeed);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find(fmt::format("[{:#x}, {:#x})", b - kPageSize, b + kPageSize)), std::string::npos)
      << s.message();
  s = pager->Advise(base + kSize - kPageSize, 2 * kPageSize, pheap::Advice::kDontNeed);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("not inside the heap region"), std::string::npos) << s.message();
  s = pager->Advise(base + 1, UINT64_MAX, pheap::Advice::kSequential);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find(fmt::format("[{:#x}, +{} bytes)", b + 1, UINT64_MAX)), std::string::npos) << s.message();
  EXPECT_TRUE(pager->Advise(base + kSize, 0, pheap::Advice::kRandom).ok());
  EXPECT_TRUE(pager->Advise(base + kSize - 1, 1, pheap::Advice::kRandom).ok());
}

INSTANTIATE_TEST_SUITE_P(Modes, Advice,
                         ::testing::Values(TrackingMode::kAsyncWp, TrackingMode::kSyncWp, TrackingMode::kMprotect,
                                           TrackingMode::kHybridWp),
                         [](const auto& p) { return ModeTestName(p.param); });

}  // namespace
}  // namespace pheap::testing
