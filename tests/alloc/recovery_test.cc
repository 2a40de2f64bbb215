// Crash and reattach: the arena is a MAP_SHARED memfd at the same address in
// this process and in a forked child per cycle. Each child attaches (a new
// incarnation), runs threads that check, free (often another thread's or a
// dead incarnation's objects) and allocate, and is SIGKILLed at a random
// instant - the same memory a commit taken at that instant would hold. A
// table of roots outside the arena, also shared, says which objects are
// published. After 100 cycles every published object must be intact, the
// arena's structures valid, and its size bounded.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "heap/allocator.h"
#include "tests/alloc/alloc_test_util.h"

namespace pheap {
namespace {

constexpr size_t kArenaSize = size_t{2} << 30;
constexpr int kRoots = 2048;
constexpr int kThreads = 4;
constexpr int kCycles = 100;

struct Roots {
  std::atomic<uint64_t> obj[kRoots];  // address of a published object, or 0
  // Per thread: an object allocated but not yet published, the program's own
  // intent record, so the next incarnation can free it.
  std::atomic<uint64_t> pending[kThreads];
};

bool Published(Roots* roots, uint64_t p) {
  for (auto& o : roots->obj) {
    if (o.load() == p) return true;
  }
  return false;
}

// An object: its size in the first word, then bytes derived from address
// and size.
void Fill(uint8_t* p, size_t n) {
  *reinterpret_cast<uint64_t*>(p) = n;
  for (size_t i = 8; i < n; ++i) p[i] = static_cast<uint8_t>((reinterpret_cast<uintptr_t>(p) >> 4) + i + n);
}
// Checks every byte of small objects, the first and last 256 of large ones
// (a long check between unpublishing and Free would widen the window in
// which a kill loses the object).
bool Intact(const uint8_t* p) {
  size_t n = *reinterpret_cast<const uint64_t*>(p);
  if (n < 8 || n > (1u << 20)) return false;
  for (size_t i = 8; i < n; i = (i == 256 && n > 4096) ? n - 256 : i + 1) {
    if (p[i] != static_cast<uint8_t>((reinterpret_cast<uintptr_t>(p) >> 4) + i + n)) return false;
  }
  return true;
}

// The child: exit codes 0 done, 2 attach failed, 3 Verify failed, 4 a
// published object was damaged.
[[noreturn]] void Child(pheap::testing::TestArena* arena, Roots* roots, uint64_t seed) {
  Allocator a;
  if (!a.Attach(arena->base(), arena->size(), &arena->hooks()).ok()) _exit(2);
  if (!a.Verify().ok()) _exit(3);
  for (auto& p : roots->pending) {
    uint64_t v = p.exchange(0);
    if (v != 0 && !Published(roots, v)) a.Free(reinterpret_cast<void*>(v));
  }
  std::atomic<bool> damaged{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 16 + t);
      for (int i = 0; i < 20000; ++i) {
        auto& slot = roots->obj[rng() % kRoots];
        if (uint64_t old = slot.exchange(0, std::memory_order_acq_rel)) {
          if (!Intact(reinterpret_cast<uint8_t*>(old))) damaged = true;
          a.Free(reinterpret_cast<void*>(old));
        }
        size_t n = 8 + (rng() % 64 == 0 ? rng() % (600u << 10) : rng() % 3000);
        auto* p = static_cast<uint8_t*>(a.Malloc(n));
        if (p == nullptr) continue;
        roots->pending[t].store(reinterpret_cast<uint64_t>(p), std::memory_order_release);
        Fill(p, n);
        uint64_t prev = slot.exchange(reinterpret_cast<uint64_t>(p), std::memory_order_acq_rel);
        roots->pending[t].store(0, std::memory_order_release);
        if (prev != 0) {
          if (!Intact(reinterpret_cast<uint8_t*>(prev))) damaged = true;
          a.Free(reinterpret_cast<void*>(prev));
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  _exit(damaged ? 4 : 0);
}

TEST(AllocatorRecoveryTest, HundredCrashesKeepObjectsAndBoundedUsage) {
  pheap::testing::TestArena arena(kArenaSize, /*shared=*/true, /*offset=*/uint64_t{1} << 36);
  if (!arena.ok()) GTEST_SKIP() << "cannot map a memfd at the test address";
  void* r = mmap(nullptr, sizeof(Roots), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(r, MAP_FAILED);
  auto* roots = new (r) Roots();

  std::mt19937_64 rng(42);
  uint64_t reserved_at_10 = 0, incarnation_at_10 = 0;
  int killed = 0;
  for (int cycle = 1; cycle <= kCycles; ++cycle) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) Child(&arena, roots, static_cast<uint64_t>(cycle));
    usleep(static_cast<useconds_t>(2000 + rng() % 30000));
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
      ++killed;
    } else {
      ASSERT_EQ(WEXITSTATUS(status), 0) << "cycle " << cycle << " (2 attach, 3 verify, 4 damaged)";
    }
    if (cycle == 10 || cycle == kCycles) {
      Allocator a;  // this process is yet another incarnation
      ASSERT_TRUE(a.Attach(arena.base(), arena.size(), &arena.hooks()).ok());
      Status s = a.Verify();
      ASSERT_TRUE(s.ok()) << s.ToString();
      for (auto& o : roots->obj) {
        uint64_t p = o.load();
        if (p != 0) {
          ASSERT_TRUE(Intact(reinterpret_cast<uint8_t*>(p))) << cycle;
        }
      }
      AllocatorStats st = a.Stats();
      if (cycle == 10) {
        reserved_at_10 = st.bytes_reserved;
        incarnation_at_10 = st.incarnation;
      }
      if (cycle == kCycles) {
        // Live data is ~2048 objects of ~1.5 KiB plus a few large ones; a
        // leak per cycle of even one page per thread would show.
        EXPECT_LE(st.bytes_reserved, reserved_at_10 + (16u << 20))
            << "reserved grew from " << reserved_at_10 << " to " << st.bytes_reserved;
        EXPECT_GT(st.incarnation, incarnation_at_10 + kCycles / 2);
        std::printf("after %d cycles (%d killed): reserved %lu B, live %lu B, reclaimed %lu pages\n",
                    kCycles, killed, static_cast<unsigned long>(st.bytes_reserved),
                    static_cast<unsigned long>(st.bytes_live),
                    static_cast<unsigned long>(st.abandoned_reclaimed));
        // Everything published freed: what stays live is only what the
        // killed children held in flight (alloc_types.h, point 6): a block
        // inside Malloc or Free at the kill, at most two per thread per kill.
        // Most are under 3 KiB, but one allocation in 64 is up to 600 KiB,
        // and a few of those caught in flight made one CI run lose 8.6 MB:
        // hence 8 KiB per block and 16 MiB of slack for that tail. A leak of
        // one 64 KiB heap page per thread per incarnation (25.6 MB over 100
        // cycles) still exceeds it.
        for (auto& o : roots->obj) a.Free(reinterpret_cast<void*>(o.exchange(0)));
        a.Collect();
        uint64_t in_flight = a.Stats().bytes_live;
        std::printf("after freeing every root: %lu B live (lost in flight)\n",
                    static_cast<unsigned long>(in_flight));
        EXPECT_LE(in_flight, uint64_t{2} * kThreads * killed * (8u << 10) + (16u << 20));
      }
    }
  }
  EXPECT_GT(killed, kCycles / 2);
  munmap(r, sizeof(Roots));
}

}  // namespace
}  // namespace pheap
