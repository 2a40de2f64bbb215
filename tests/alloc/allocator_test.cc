// The allocator on private anonymous memory at a fixed address.
#include "heap/allocator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "heap/alloc_types.h"
#include "tests/alloc/alloc_test_util.h"

namespace pheap {
namespace {

using pheap::testing::MadviseHooks;
using pheap::testing::TestArena;

constexpr size_t kArenaSize = size_t{4} << 30;

// Pattern derived from the block address and a seed, so overlaps show up.
// Every byte of the first and last 64, and about 256 bytes between (keeps
// the sanitizer builds quick on objects of hundreds of KiB).
uint8_t PatternByte(const void* p, size_t i, uint32_t seed) {
  return static_cast<uint8_t>((reinterpret_cast<uintptr_t>(p) >> 4) + i * 131 + seed);
}
size_t NextPatternIndex(size_t i, size_t n) {
  if (i < 64 || i + 64 >= n) return i + 1;
  size_t next = i + n / 256 + 1;
  return next + 64 > n ? n - 64 : next;
}
void Fill(void* p, size_t n, uint32_t seed) {
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; i = NextPatternIndex(i, n)) b[i] = PatternByte(p, i, seed);
}
bool Check(const void* p, size_t n, uint32_t seed) {
  auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; i = NextPatternIndex(i, n)) {
    if (b[i] != PatternByte(p, i, seed)) return false;
  }
  return true;
}

class AllocatorTest : public ::testing::Test {
 protected:
  void SetUp() override { Open({}); }
  void Open(const AllocatorOptions& options) {
    arena_ = std::make_unique<TestArena>(kArenaSize, /*shared=*/false);
    ASSERT_TRUE(arena_->ok());
    alloc_ = std::make_unique<Allocator>();
    Status s = alloc_->Attach(arena_->base(), arena_->size(), &arena_->hooks(), options);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void TearDown() override {
    alloc_.reset();
    arena_.reset();
  }
  std::unique_ptr<TestArena> arena_;
  std::unique_ptr<Allocator> alloc_;
};

TEST(SizeClassTest, WasteAtMostAQuarterAndMinimal) {
  for (size_t n = 1; n <= alloc::kSmallMax; ++n) {
    unsigned bin = alloc::BinOf(n);
    size_t bs = alloc::BinSize(bin);
    ASSERT_GE(bs, n) << n;
    if (n > 16) {
      ASSERT_EQ(bs % 16, 0u) << n;  // blocks past 16 bytes are 16-aligned, as glibc's
      unsigned smaller = bin - 1;
      while (smaller > 0 && alloc::BinSize(smaller) % 16 != 0) --smaller;
      ASSERT_LT(alloc::BinSize(smaller), n) << n;  // the smallest 16-multiple bin that fits
    } else {
      ASSERT_TRUE(bin == 1 || alloc::BinSize(bin - 1) < n) << n;  // smallest that fits
    }
    if (n > 64) {
      ASSERT_LE((bs - n) * 4, bs) << n;
    } else {
      ASSERT_LT(bs - n, 16u) << n;
    }
  }
}

TEST_F(AllocatorTest, SizesFromZeroToHuge) {
  std::vector<size_t> sizes;
  for (size_t n = 0; n <= 2048; ++n) sizes.push_back(n);
  for (size_t p = 4096; p <= (size_t{16} << 20); p *= 2) {
    for (size_t d : {p - 1, p, p + 1, p + p / 3}) sizes.push_back(d);
  }
  std::vector<void*> ptrs;
  for (size_t i = 0; i < sizes.size(); ++i) {
    void* p = alloc_->Malloc(sizes[i]);
    ASSERT_NE(p, nullptr) << sizes[i];
    ASSERT_GE(alloc_->UsableSize(p), sizes[i]);
    ASSERT_TRUE(alloc_->Owns(p));
    ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % (sizes[i] > 8 ? 16 : 8), 0u) << sizes[i];
    Fill(p, sizes[i], static_cast<uint32_t>(i));
    ptrs.push_back(p);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_TRUE(Check(ptrs[i], sizes[i], static_cast<uint32_t>(i))) << "size " << sizes[i];
  }
  EXPECT_TRUE(alloc_->Verify().ok());
  for (void* p : ptrs) alloc_->Free(p);
  EXPECT_FALSE(alloc_->Owns(reinterpret_cast<void*>(pheap::testing::kTestArenaBase + kArenaSize - 4096)));
  EXPECT_TRUE(alloc_->Verify().ok());
}

TEST_F(AllocatorTest, EveryAlignment) {
  for (size_t align = 8; align <= (size_t{16} << 20); align *= 2) {
    std::vector<void*> ptrs;
    for (size_t n : {size_t{1}, align - 1, align, align + 1, 3 * align, size_t{100}}) {
      void* p = alloc_->AlignedAlloc(align, n);
      ASSERT_NE(p, nullptr) << align << " " << n;
      ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << align << " " << n;
      ASSERT_GE(alloc_->UsableSize(p), n);
      memset(p, 0xab, n);
      ptrs.push_back(p);
    }
    for (void* p : ptrs) alloc_->Free(p);
  }
  EXPECT_EQ(alloc_->AlignedAlloc(24, 10), nullptr);
  EXPECT_TRUE(alloc_->Verify().ok());
  EXPECT_LE(alloc_->Stats().segments, 2u);  // everything came back
}

TEST_F(AllocatorTest, RandomBlocksNeverOverlap) {
  std::mt19937_64 rng(1);
  struct Obj { void* p; size_t n; uint32_t seed; };
  std::vector<Obj> live;
  for (int i = 0; i < 20000; ++i) {
    if (!live.empty() && rng() % 3 == 0) {
      size_t k = rng() % live.size();
      ASSERT_TRUE(Check(live[k].p, live[k].n, live[k].seed));
      alloc_->Free(live[k].p);
      live[k] = live.back();
      live.pop_back();
    } else {
      size_t n = rng() % 8 == 0 ? rng() % 600000 : rng() % 2000;
      void* p = alloc_->Malloc(n);
      ASSERT_NE(p, nullptr);
      Fill(p, n, static_cast<uint32_t>(i));
      live.push_back({p, n, static_cast<uint32_t>(i)});
    }
  }
  for (auto& o : live) ASSERT_TRUE(Check(o.p, o.n, o.seed));
  EXPECT_TRUE(alloc_->Verify().ok());
}

TEST_F(AllocatorTest, ReallocInPlaceAndMoving) {
  void* p = alloc_->Malloc(100);  // bin of 112
  Fill(p, 100, 7);
  EXPECT_EQ(alloc_->Realloc(p, 110), p);
  EXPECT_TRUE(Check(p, 100, 7));
  void* q = alloc_->Realloc(p, 5000);  // moves
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p);
  EXPECT_TRUE(Check(q, 100, 7));
  // A large object grows into the free slots after it.
  void* big = alloc_->Malloc(300 << 10);
  Fill(big, 300 << 10, 9);
  void* grown = alloc_->Realloc(big, 900 << 10);
  EXPECT_EQ(grown, big);
  EXPECT_GE(alloc_->UsableSize(grown), size_t{900} << 10);
  EXPECT_TRUE(Check(grown, 300 << 10, 9));
  // Blocked by a neighbour: moves, content kept.
  void* neighbour = alloc_->Malloc(300 << 10);
  void* moved = alloc_->Realloc(grown, 3 << 20);
  ASSERT_NE(moved, nullptr);
  EXPECT_TRUE(Check(moved, 300 << 10, 9));
  EXPECT_EQ(alloc_->Realloc(nullptr, 10) != nullptr, true);
  EXPECT_EQ(alloc_->Realloc(neighbour, 0), nullptr);
  alloc_->Free(q);
  alloc_->Free(moved);
  EXPECT_TRUE(alloc_->Verify().ok());
}

TEST_F(AllocatorTest, CallocZerosAfterReuseAndDiscard) {
  std::vector<void*> ptrs;
  for (size_t n : {size_t{24}, size_t{4000}, size_t{100000}, size_t{1} << 20, size_t{8} << 20}) {
    void* p = alloc_->Malloc(n);
    memset(p, 0xff, n);
    alloc_->Free(p);
    auto* z = static_cast<uint8_t*>(alloc_->Calloc(1, n));
    ASSERT_NE(z, nullptr);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(z[i], 0) << "size " << n << " byte " << i;
    ptrs.push_back(z);
  }
  EXPECT_GT(arena_->hooks().calls.load(), 0u);
  EXPECT_EQ(alloc_->Calloc(size_t{1} << 40, size_t{1} << 40), nullptr);  // overflow
  for (void* p : ptrs) alloc_->Free(p);
}

// Discard that fails: the bytes stay dirty, so Calloc must clear them itself.
class FailingHooks : public ArenaHooks {
 public:
  Status Discard(void*, size_t) override { return Status::IoError("refused", EIO); }
};

TEST(AllocatorDiscardTest, CallocZeroesWhenDiscardFails) {
  TestArena arena(kArenaSize, false);
  ASSERT_TRUE(arena.ok());
  FailingHooks hooks;
  Allocator a;
  ASSERT_TRUE(a.Attach(arena.base(), arena.size(), &hooks).ok());
  void* keep = a.Malloc(64);  // keeps the segment alive
  void* p = a.Malloc(1 << 20);
  memset(p, 0xee, 1 << 20);
  a.Free(p);
  auto* z = static_cast<uint8_t*>(a.Calloc(1, 1 << 20));
  ASSERT_NE(z, nullptr);
  for (size_t i = 0; i < (1 << 20); ++i) ASSERT_EQ(z[i], 0) << i;
  a.Free(z);
  a.Free(keep);
}

TEST_F(AllocatorTest, CrossThreadFreesAreReused) {
  std::vector<void*> ptrs(20000);
  for (auto& p : ptrs) p = alloc_->Malloc(48);
  uint64_t reserved = alloc_->Stats().bytes_reserved;
  std::thread([&] { for (void* p : ptrs) alloc_->Free(p); }).join();
  // The allocating thread gets its blocks back through the thread-free lists.
  for (auto& p : ptrs) p = alloc_->Malloc(48);
  EXPECT_EQ(alloc_->Stats().bytes_reserved, reserved);
  for (void* p : ptrs) alloc_->Free(p);
  EXPECT_TRUE(alloc_->Verify().ok());
}

TEST_F(AllocatorTest, FreeFromThreadThatNeverAllocated) {
  void* small = alloc_->Malloc(16);
  void* large = alloc_->Malloc(1 << 20);
  void* huge = alloc_->Malloc(16 << 20);
  std::thread([&] {
    alloc_->Free(small);
    alloc_->Free(large);
    alloc_->Free(huge);
  }).join();
  EXPECT_FALSE(alloc_->Owns(large));
  EXPECT_FALSE(alloc_->Owns(huge));
  EXPECT_EQ(alloc_->Stats().huge_objects, 0u);
  EXPECT_TRUE(alloc_->Verify().ok());
}

void Stress(Allocator* a, int threads) {
  constexpr int kSlots = 4096;
  struct Slot { std::atomic<void*> p{nullptr}; std::atomic<size_t> n{0}; };
  std::vector<Slot> slots(kSlots);
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t + 100);
      for (int i = 0; i < 30000; ++i) {
        Slot& s = slots[rng() % kSlots];
        // Claim the slot: the object and its size move with the pointer.
        void* old = s.p.exchange(nullptr, std::memory_order_acq_rel);
        if (old != nullptr) {
          size_t n = *static_cast<size_t*>(old);
          if (!Check(static_cast<size_t*>(old) + 1, n - sizeof(size_t), 1)) bad++;
          a->Free(old);
        }
        size_t n = sizeof(size_t) + (rng() % 16 == 0 ? rng() % 70000 : rng() % 700);
        void* p = a->Malloc(n);
        if (p == nullptr) { bad++; continue; }
        *static_cast<size_t*>(p) = n;
        Fill(static_cast<size_t*>(p) + 1, n - sizeof(size_t), 1);
        void* prev = s.p.exchange(p, std::memory_order_acq_rel);
        if (prev != nullptr) {  // another thread filled it meanwhile
          size_t pn = *static_cast<size_t*>(prev);
          if (!Check(static_cast<size_t*>(prev) + 1, pn - sizeof(size_t), 1)) bad++;
          a->Free(prev);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  for (auto& s : slots) a->Free(s.p.load());
}

TEST_F(AllocatorTest, StressTwoToSixteenThreads) {
  for (int threads : {2, 4, 16}) {
    Stress(alloc_.get(), threads);
    Status s = alloc_->Verify();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  alloc_->Collect();
  AllocatorStats st = alloc_->Stats();
  EXPECT_EQ(st.thread_heaps, 0u);  // every thread gave its heap back
  EXPECT_LE(st.bytes_live, 64u << 10) << "pages still holding blocks after all frees";
}

TEST_F(AllocatorTest, ThreadExitReturnsCaches) {
  std::vector<void*> keep;
  std::thread([&] {
    for (int i = 0; i < 10000; ++i) {
      void* p = alloc_->Malloc(200);
      if (i % 2) keep.push_back(p);
      else alloc_->Free(p);
    }
    EXPECT_EQ(alloc_->Stats().thread_heaps, 1u);
  }).join();
  AllocatorStats st = alloc_->Stats();
  EXPECT_EQ(st.thread_heaps, 0u);
  EXPECT_GT(st.abandoned_pages, 0u);
  uint64_t reserved = st.bytes_reserved;
  // Another thread takes the abandoned pages over instead of growing.
  std::thread([&] {
    for (int i = 0; i < 5000; ++i) keep.push_back(alloc_->Malloc(200));
  }).join();
  st = alloc_->Stats();
  EXPECT_GT(st.abandoned_reclaimed, 0u);
  EXPECT_EQ(st.bytes_reserved, reserved);
  // Frees after the owner left, then Collect releases the empty pages.
  for (void* p : keep) alloc_->Free(p);
  alloc_->Collect();
  EXPECT_EQ(alloc_->Stats().abandoned_pages, 0u);
  EXPECT_TRUE(alloc_->Verify().ok());
}

TEST_F(AllocatorTest, FragmentationStaysBounded) {
  std::vector<void*> ptrs(200000);
  for (auto& p : ptrs) p = alloc_->Malloc(64);
  uint64_t reserved = alloc_->Stats().bytes_reserved;
  for (size_t i = 0; i < ptrs.size(); i += 2) alloc_->Free(ptrs[i]);
  for (size_t i = 0; i < ptrs.size(); i += 2) ptrs[i] = alloc_->Malloc(48);  // same bin? no: 48
  for (size_t i = 0; i < ptrs.size(); i += 4) alloc_->Free(ptrs[i]);
  for (size_t i = 0; i < ptrs.size(); i += 4) ptrs[i] = alloc_->Malloc(64);
  // The holes are reused: at most the 48-byte blocks' own pages are added.
  EXPECT_LE(alloc_->Stats().bytes_reserved, reserved + (8u << 20));
  for (void* p : ptrs) alloc_->Free(p);
  EXPECT_TRUE(alloc_->Verify().ok());
}

TEST_F(AllocatorTest, BulkFreeGoesBackToTheOs) {
  std::vector<void*> ptrs;
  for (int i = 0; i < 65536; ++i) ptrs.push_back(alloc_->Malloc(1000));
  for (int i = 0; i < 16; ++i) ptrs.push_back(alloc_->Malloc(3 << 20));
  for (void* p : ptrs) memset(p, 1, 1000);
  AllocatorStats before = alloc_->Stats();
  uint64_t rss_before = pheap::testing::ResidentBytes();
  uint64_t discarded = arena_->hooks().bytes.load();
  for (void* p : ptrs) alloc_->Free(p);
  AllocatorStats after = alloc_->Stats();
  EXPECT_GT(before.bytes_reserved, 100u << 20);
  EXPECT_LE(after.bytes_reserved, 2 * alloc::kSegmentSize);  // the bin's current page stays
  EXPECT_GT(arena_->hooks().bytes.load() - discarded, 100u << 20);
  EXPECT_LT(pheap::testing::ResidentBytes() + (50u << 20), rss_before);
}

TEST_F(AllocatorTest, ReattachAsNewIncarnationKeepsObjects) {
  std::vector<std::pair<void*, size_t>> objs;
  std::thread([&] {
    for (size_t i = 0; i < 3000; ++i) {
      size_t n = 1 + i * 37 % 5000;
      void* p = alloc_->Malloc(n);
      Fill(p, n, 3);
      objs.push_back({p, n});
    }
  }).join();
  // Some of them freed by another thread, not yet collected.
  for (size_t i = 0; i < objs.size(); i += 3) alloc_->Free(objs[i].first);
  uint64_t inc = alloc_->Stats().incarnation;
  alloc_->Detach();
  ASSERT_TRUE(alloc_->Attach(arena_->base(), arena_->size(), &arena_->hooks()).ok());
  EXPECT_EQ(alloc_->Stats().incarnation, inc + 1);
  ASSERT_TRUE(alloc_->Verify().ok());
  for (size_t i = 0; i < objs.size(); ++i) {
    if (i % 3 == 0) continue;
    ASSERT_TRUE(Check(objs[i].first, objs[i].second, 3)) << i;
    ASSERT_TRUE(alloc_->Owns(objs[i].first));
  }
  for (size_t i = 0; i < objs.size(); ++i) {
    if (i % 3 != 0) alloc_->Free(objs[i].first);
  }
  alloc_->Collect();  // the pages are abandoned: their frees wait for Collect
  EXPECT_EQ(alloc_->Stats().bytes_live, 0u);
}

TEST(AllocatorAttachTest, RejectsForeignOrMismatchedArena) {
  TestArena arena(64 << 20, false);
  ASSERT_TRUE(arena.ok());
  Allocator a;
  EXPECT_FALSE(a.Attach(arena.base(), 4 << 20, &arena.hooks()).ok());  // too small
  ASSERT_TRUE(a.Attach(arena.base(), arena.size(), &arena.hooks()).ok());
  a.Detach();
  Allocator b;
  Status s = b.Attach(arena.base(), 32 << 20, &arena.hooks());
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  memset(arena.base(), 0x5a, 8);
  EXPECT_EQ(b.Attach(arena.base(), arena.size(), &arena.hooks()).code(), Status::Code::kCorruption);
}

class CheckingTest : public AllocatorTest {
 protected:
  void SetUp() override {
    AllocatorOptions o;
    o.checking = true;
    o.abort_on_corruption = false;
    Open(o);
  }
};

TEST_F(CheckingTest, WorksAndReportsExactUsableSize) {
  Stress(alloc_.get(), 2);
  for (size_t n : {size_t{0}, size_t{8}, size_t{16}, size_t{1000}, size_t{500000}, size_t{9} << 20}) {
    void* p = alloc_->Malloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(alloc_->UsableSize(p), n);
    if (n >= 16) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);
    }
    void* q = alloc_->Realloc(p, n + 10);
    EXPECT_EQ(alloc_->UsableSize(q), n + 10);
    alloc_->Free(q);
  }
  void* a = alloc_->AlignedAlloc(4096, 100);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 4096, 0u);
  alloc_->Free(a);
  EXPECT_EQ(alloc_->Stats().corruptions, 0u);
  EXPECT_TRUE(alloc_->Verify().ok());
}

TEST_F(CheckingTest, CatchesDoubleFree) {
  for (size_t n : {size_t{24}, size_t{3000}, size_t{1} << 20, size_t{8} << 20}) {
    void* keep = alloc_->Malloc(n);  // keeps the page or segment alive
    void* p = alloc_->Malloc(n);
    alloc_->Free(p);
    uint64_t before = alloc_->Stats().corruptions;
    alloc_->Free(p);
    EXPECT_EQ(alloc_->Stats().corruptions, before + 1) << n;
    alloc_->Free(keep);
  }
}

TEST_F(CheckingTest, CatchesWritePastTheEnd) {
  for (size_t n : {size_t{1}, size_t{20}, size_t{3000}, size_t{300000}}) {
    auto* p = static_cast<uint8_t*>(alloc_->Malloc(n));
    p[n] = 1;  // one byte too far
    uint64_t before = alloc_->Stats().corruptions;
    alloc_->Free(p);
    EXPECT_EQ(alloc_->Stats().corruptions, before + 1) << n;
  }
  // Writing over the canary itself (the last bytes of the block).
  auto* p = static_cast<uint8_t*>(alloc_->Malloc(100));
  size_t block = alloc::BinSize(alloc::BinOf(100 + 8));
  memset(p + 100, 0, block - 100);
  uint64_t before = alloc_->Stats().corruptions;
  alloc_->Free(p);
  EXPECT_EQ(alloc_->Stats().corruptions, before + 1);
}

TEST_F(CheckingTest, CatchesFreeListOverwrittenAfterFree) {
  void* keep = alloc_->Malloc(64);
  void* a = alloc_->Malloc(64);
  void* b = alloc_->Malloc(64);
  alloc_->Free(b);
  alloc_->Free(a);  // a heads the free list, its first word links to b
  *static_cast<uintptr_t*>(a) = 0x1234;  // use after free
  uint64_t before = alloc_->Stats().corruptions;
  void* x = alloc_->Malloc(64);
  EXPECT_EQ(x, a);
  EXPECT_EQ(alloc_->Stats().corruptions, before + 1);
  alloc_->Free(x);
  alloc_->Free(keep);
}

TEST(CheckingDeathTest, AbortsOnDoubleFreeByDefault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        TestArena arena(kArenaSize, false);
        Allocator a;
        AllocatorOptions o;
        o.checking = true;
        if (!a.Attach(arena.base(), arena.size(), &arena.hooks(), o).ok()) _exit(0);
        void* p = a.Malloc(32);
        a.Free(p);
        a.Free(p);
      },
      "double free");
}

}  // namespace
}  // namespace pheap
