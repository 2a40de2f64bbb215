// Point-in-time commits while writers run: each writer thread keeps bumping
// a counter and writing it to its page A, then to its page B, never pausing.
// At every instant B <= A <= B + 1, so every committed image must show the
// same, whatever moment the cut landed on. Run in every supported mode.
#include <atomic>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "pager/pager.h"
#include "tests/pager/fake_store.h"

namespace pheap::testing {
namespace {

constexpr int kWriters = 3;
constexpr int kCommits = 60;
constexpr Pgno kPageA = 10;     // writer i: A at kPageA + 2i (below hwm, stored)
// Writer i: B at kPageB + 3i (above hwm: fresh), 600 MiB into a 1 GiB
// region: once written, an async-WP walk is split in two, and A and B lie
// in different halves, taken by different threads.
constexpr Pgno kPageB = 150000;

// How a commit takes its cut: copied inside the pause, copied first and
// refreshed inside it (precopy), or read from the paused region (in place).
enum class Cut { kPauseCopy, kPrecopy, kInPlace };

class PointInTime : public ::testing::TestWithParam<std::tuple<TrackingMode, Cut>> {};

uint64_t Load(const uint8_t* page) { uint64_t v; std::memcpy(&v, page, 8); return v; }

TEST_P(PointInTime, EveryCommittedImageIsACut) {
  PHEAP_SKIP_IF_TSAN();
  const TrackingMode mode = std::get<0>(GetParam());
  auto modes = SupportedModes();
  if (std::find(modes.begin(), modes.end(), mode) == modes.end())
    GTEST_SKIP() << TrackingModeName(mode) << " is not supported by this kernel";
  FakeStore store(ImageInfo{1, 0, 1, kTestBase, uint64_t{1} << 30, 0});
  for (int i = 0; i < kWriters; ++i) store.PutPage(kPageA + 2 * i, uint8_t{0});  // A starts stored, zero
  const Cut cut = std::get<1>(GetParam());
  store.TakeFromRegion(cut == Cut::kInPlace);
  std::atomic<int> violations{0};
  std::vector<uint64_t> last_b(kWriters, 0);
  uint64_t progressed = 0;
  store.OnPersist([&](const SealedEpoch&, const FakeStore& s) {
    for (int i = 0; i < kWriters; ++i) {
      uint64_t a = Load(s.PageDataLocked(kPageA + 2 * i));
      uint64_t b = Load(s.PageDataLocked(kPageB + 3 * i));
      if (!(b <= a && a <= b + 1)) {
        if (violations.fetch_add(1) < 5) ADD_FAILURE() << "writer " << i << ": A=" << a << " B=" << b;
      }
      if (b > last_b[static_cast<size_t>(i)]) ++progressed;
      if (b < last_b[static_cast<size_t>(i)]) ADD_FAILURE() << "writer " << i << " went back in time";
      last_b[static_cast<size_t>(i)] = b;
    }
  });
  PagerOptions o;
  o.mode = mode;
  o.precopy = cut == Cut::kPrecopy;
  auto r = Pager::Open(store.image(), &store, &store, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Pager& pager = *r.value();
  auto* base = static_cast<uint8_t*>(pager.base());

  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      volatile uint64_t* a = reinterpret_cast<volatile uint64_t*>(base + (kPageA + 2 * i) * kPageSize);
      volatile uint64_t* b = reinterpret_cast<volatile uint64_t*>(base + (kPageB + 3 * i) * kPageSize);
      for (uint64_t n = 1; !stop.load(std::memory_order_relaxed); ++n) {
        *a = n;
        *b = n;
      }
    });
  }
  for (int c = 0; c < kCommits; ++c) {
    auto e = cut == Cut::kInPlace ? pager.CommitInPlace() : (c % 2 == 0) ? pager.Commit() : pager.CommitAsync().get();
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_GT(progressed, static_cast<uint64_t>(kCommits / 2));  // the cuts landed mid-run, not at rest
  EXPECT_GE(pager.stats().paused_threads, 1u);
  EXPECT_EQ(store.contract_error(), "");
  if (cut == Cut::kInPlace) {
    EXPECT_GE(store.region_epochs(), static_cast<uint64_t>(kCommits / 2));
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, PointInTime,
                         ::testing::Combine(::testing::Values(TrackingMode::kAsyncWp, TrackingMode::kSyncWp,
                                                              TrackingMode::kMprotect, TrackingMode::kHybridWp),
                                            ::testing::Values(Cut::kPauseCopy, Cut::kPrecopy, Cut::kInPlace)),
                         [](const auto& p) {
                           const Cut c = std::get<1>(p.param);
                           return ModeTestName(std::get<0>(p.param)) +
                                  (c == Cut::kPrecopy ? "_precopy" : c == Cut::kInPlace ? "_in_place" : "");
                         });

}  // namespace
}  // namespace pheap::testing
