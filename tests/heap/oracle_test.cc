// The heap crash oracle: SIGKILL the worker (oracle_worker.cc) at random
// instants and check each reopened heap through the C interface against the
// model (oracle_model.h): the list is exactly the model's list after the
// recorded number of operations, that number is never older than the last
// acknowledged commit nor newer than the last commit begun, and every
// unlocked writer's A/B pair was cut at one instant.
//
// PHEAP_CRASH_SEED replays a run; PHEAP_CRASH_KILLS overrides the count.
#include <pheap/pheap.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "tests/heap/oracle_model.h"
#include "tests/support/test_util.h"
#include "tests/support/kill_loop.h"

namespace {

using namespace pheaptest::oracle;

std::string g_worker;
int g_kills = 200;
constexpr int kMutators = 3, kWriters = 2;

// Checks the reopened heap against the model; returns the operation count.
uint64_t CheckHeap(pheap* h, uint64_t seed, int kill) {
  auto* st = static_cast<State*>(pheap_root(h, "state"));
  if (st == nullptr) return 0;  // killed before the first commit
  EXPECT_EQ(st->seed, seed);
  std::vector<uint64_t> model = Replay(seed, st->ops);
  EXPECT_EQ(st->count, model.size()) << "kill " << kill << ", ops " << st->ops;
  const Node* n = st->head;
  for (size_t i = 0; i < model.size(); ++i, n = n->next) {
    if (n == nullptr) {
      ADD_FAILURE() << "kill " << kill << ": list ends at " << i << " of " << model.size();
      return st->ops;
    }
    Op op = OpFor(seed, model[i], 0);
    EXPECT_EQ(n->k, model[i]) << "kill " << kill << ", node " << i;
    EXPECT_EQ(n->size, op.size) << "kill " << kill << ", node " << i;
    EXPECT_GE(pheap_usable_size(h, n->payload), n->size);
    for (uint64_t b = 0; b < n->size; b += 97) {
      if (n->payload[b] != PayloadByte(n->k, b)) {
        ADD_FAILURE() << "kill " << kill << ": node " << i << " (op " << n->k << ") byte " << b;
        break;
      }
    }
    if (::testing::Test::HasFailure()) return st->ops;
  }
  EXPECT_EQ(n, nullptr) << "kill " << kill << ": the list is longer than the model's";
  // The ballast, read in page order (larger than the budget: most of it
  // comes from the store, evicting what came before) and then at random.
  const uint64_t pages = st->ballast_pages;
  std::mt19937_64 rng(seed ^ static_cast<uint64_t>(kill));
  for (uint64_t j = 0; j < 2 * pages && st->ballast != nullptr; ++j) {
    const uint64_t i = j < pages ? j : rng() % pages;
    const uint64_t want = BallastAfter(st->ops, i, pages);
    const uint64_t* page = st->ballast + i * 512;
    if (page[0] != want || page[511] != want) {
      ADD_FAILURE() << "kill " << kill << ": ballast page " << i << " holds " << page[0] << "/" << page[511]
                    << " after " << st->ops << " operations, not " << want;
      break;
    }
  }
  for (int t = 0; t < kWriters; ++t) {
    uint64_t a = *st->pair_a[t], b = *st->pair_b[t];
    EXPECT_TRUE(b <= a && a <= b + 1) << "kill " << kill << ": writer " << t << " A=" << a
                                      << " B=" << b << " is a torn cut";
  }
  // The allocator works after recovery.
  void* p = pheap_malloc(h, 12345);
  EXPECT_NE(p, nullptr) << pheap_last_error();
  pheap_free(h, p);
  return st->ops;
}

// Whether a heap opens with tracking=`mode` here.
bool OpensWith(const std::string& mode) {
  pheaptest::TempDir dir;
  std::string cfg = "dir=" + dir.path() + ";size=16M;code_check=off;tracking=";
  cfg += mode;
  pheap* h = pheap_open("probe", cfg.c_str());
  if (h == nullptr) return false;
  pheap_close(h);
  return true;
}

// Under the mode the kernel picks, and under hybrid-wp, whose chunk moves
// must lose no write either. A "/budget" suffix runs under memory_max
// (kBudget) with kBallastPages of ballast, eight times that, rewritten by
// the operations: eviction and refetches go on all the time, in the worker
// and in the checks.
class HeapCrashOracle : public ::testing::TestWithParam<const char*> {};
constexpr const char* kBudget = "4M";
constexpr uint64_t kBallastPages = 8192;  // 32 MiB

TEST_P(HeapCrashOracle, SigkillAtRandomInstants) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer holds back a signal sent to a thread blocked in
  // pthread_mutex_lock until the lock returns; this worker commits while
  // holding the lock its mutators wait for, so under TSan the commit's
  // safepoint would wait forever. The release and ASan builds run this test.
  GTEST_SKIP() << "ThreadSanitizer defers signals to threads blocked on a mutex";
#endif
  std::string tracking = GetParam();
  const bool budget = tracking.ends_with("/budget");
  if (budget) tracking.resize(tracking.size() - 7);
  if (tracking != "auto" && !OpensWith(tracking))
    GTEST_SKIP() << tracking << " needs a userfaultfd this kernel or user does not have";
  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("PHEAP_CRASH_SEED")) seed = std::strtoull(s, nullptr, 0);
  // Each check reads the whole ballast back through faults: fewer kills.
  int kills = budget ? std::max(8, g_kills / 20) : g_kills;
  if (const char* s = std::getenv("PHEAP_CRASH_KILLS")) kills = std::atoi(s);
  std::printf("seed %llu, %d kills (replay: PHEAP_CRASH_SEED=%llu)\n",
              static_cast<unsigned long long>(seed), kills, static_cast<unsigned long long>(seed));
  pheaptest::TempDir dir;
  std::mt19937_64 rng(seed);
  uint64_t prev = 0, acknowledged_total = 0;
  for (int i = 0; i < kills && !HasFailure(); ++i) {
    bool early = rng() % 10 == 0;
    unsigned delay = static_cast<unsigned>(rng() % (early ? 20000 : 60000));
    std::vector<std::string> args = {
        g_worker, dir.path(), std::to_string(seed), std::to_string(kMutators), std::to_string(kWriters), tracking};
    if (budget) {
      args.push_back(kBudget);
      args.push_back(std::to_string(kBallastPages));
    }
    auto w = pheaptest::RunAndKill(args, early, delay, "durable");
    ASSERT_TRUE(w.killed()) << "kill " << i << ": the worker ended by itself (status " << w.status
                            << "): " << w.stderr_text;
    std::string cfg = "dir=" + dir.path() + ";size=512M;code_check=off;tracking=";
    cfg += tracking;
    if (budget) cfg += std::string(";memory_max=") + kBudget;
    pheap* h = pheap_open("oracle", cfg.c_str());
    ASSERT_NE(h, nullptr) << "kill " << i << ": " << pheap_last_error();
    uint64_t ops = CheckHeap(h, seed, i);
    EXPECT_GE(ops, w.get("durable")) << "kill " << i << ": lost an acknowledged commit";
    EXPECT_GE(ops, prev) << "kill " << i << ": went back past an earlier reopen";
    if (w.said("open")) {
      EXPECT_LE(ops, std::max(w.get("committing"), w.get("open")))
          << "kill " << i << ": a state no commit produced";
    }
    if (w.said("durable")) acknowledged_total++;
    prev = ops;
    ASSERT_EQ(pheap_close(h), 0) << pheap_last_error();
  }
  std::printf("%d kills, %llu operations survived, %llu runs acknowledged a commit\n", kills,
              static_cast<unsigned long long>(prev), static_cast<unsigned long long>(acknowledged_total));
  EXPECT_GT(acknowledged_total, static_cast<uint64_t>(kills / 4))
      << "too few runs committed before the kill to exercise recovery";
}

INSTANTIATE_TEST_SUITE_P(Modes, HeapCrashOracle,
                         ::testing::Values("auto", "hybrid-wp", "auto/budget", "sync-wp/budget", "mprotect/budget",
                                           "hybrid-wp/budget"),
                         [](const auto& p) {
                           std::string n;
                           for (const char* c = p.param; *c != '\0'; ++c)
                             if (std::isalnum(static_cast<unsigned char>(*c))) n += *c;
                           return n;
                         });

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: heap_oracle_test PATH-OF-oracle_worker [KILLS]\n");
    return 2;
  }
  g_worker = argv[1];
  if (argc > 2) g_kills = std::atoi(argv[2]);
  return RUN_ALL_TESTS();
}
